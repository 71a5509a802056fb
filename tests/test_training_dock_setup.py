"""Training dock set-up: settings form from TRAINING, §13 pairing warnings, dataset import, k-fold, run comparison."""
import numpy as np
import pytest
from test_training_dock import dock_for, finish, mlp, moons_project, xor_project  # noqa: F401

from engine.data import load
from engine.project import TRAINING
from engine.session import fold_summary
from resources import path


@pytest.mark.parametrize("loss, head, shape, bad", [
    ("bce", "Softmax", (1,), "Softmax output with binary cross-entropy"),
    ("cce", "Sigmoid", (3,), "Sigmoid output with categorical cross-entropy"),
    ("mse", "Softmax", (3,), "Mean squared error with a Softmax output"),
    ("bce", "Dense", (1,), "is linear: add a Sigmoid"),
    ("cce", "Dense", (3,), "is linear: add a Softmax"),
])
def test_pairing_warnings_name_the_mismatch(loss, head, shape, bad):
    from gui.training.settings import pairing_warnings
    w = pairing_warnings(loss, head, shape, None, 3)
    assert any(bad in m for m in w), w


def test_matching_pairs_and_task_mismatch():
    from gui.training.settings import pairing_warnings
    assert pairing_warnings("bce", "Sigmoid", (1,), "binary", 2) == []
    assert pairing_warnings("cce", "Softmax", (10,), "multiclass", 10) == []
    assert pairing_warnings("mse", "Dense", (1,), "regression", 0) == []
    assert pairing_warnings("cce", "Softmax", (2,), "binary", 2) == []          # two-way softmax is fine
    assert any("needs shape (10,)" in m for m in pairing_warnings("cce", "Softmax", (3,), "multiclass", 10))
    assert any("use mse" in m for m in pairing_warnings("bce", "Sigmoid", (1,), "regression", 0))


def test_form_is_generated_from_training_and_edits_go_through_the_document(qtbot, dock_for):
    doc, d = dock_for(xor_project(5))
    f = d.form
    assert set(f.editors) | {"validation_split"} == {h.name for h in TRAINING}
    lr = f.editors["lr"].widget
    lr.setText("0.2")
    lr.editingFinished.emit()
    assert doc.project.training["lr"] == 0.2
    lr.setText("11")                                       # above TRAINING's max of 10
    lr.editingFinished.emit()
    assert doc.project.training["lr"] == 0.2 and "≤ 10" in lr.toolTip() and f.editors["lr"].invalid
    assert "≤ 10" in f.editors["lr"].reason.text() and f.editors["lr"].reason.isVisible()
    f.editors["epochs"].widget.setValue(42)
    assert doc.project.training["epochs"] == 42
    assert not f.opt_form.isRowVisible(f.editors["beta"])   # adam: β₁ β₂ ε, no β
    assert f.opt_form.isRowVisible(f.editors["beta1"])
    doc.set_training("optimizer", "momentum")               # e.g. an undo: the form follows the document
    assert f.editors["optimizer"].widget.currentText() == "momentum"
    assert f.opt_form.isRowVisible(f.editors["beta"]) and not f.opt_form.isRowVisible(f.editors["eps"])
    f.task.setCurrentIndex(1)
    f.task.activated.emit(1)
    assert doc.project.training["loss"] == "cce"
    assert f.warning.isVisible() and "Sigmoid output with categorical" in f.warning.text()


def test_warning_for_softmax_head_with_bce(qtbot, dock_for):
    p = moons_project(1)
    p.graph = mlp(2, 4, head="Softmax", units=2)
    doc, d = dock_for(p)
    assert d.form.warning.isVisible() and "Softmax output with binary cross-entropy" in d.form.warning.text()


def test_csv_import_preview_and_target_column(qtbot, dock_for, tmp_path):
    rows = ["x,kind,y"] + [f"{i / 10},{'ab'[i % 2]},{i % 3}" for i in range(30)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    doc, d = dock_for(xor_project(5))
    panel = d.data
    panel.import_file(tmp_path / "d.csv")
    assert doc.project.dataset == {"kind": "csv", "path": str((tmp_path / "d.csv").resolve())}
    assert "30 samples of shape (3,)" in panel.info.text()  # x, and 'kind' a category: one-hot a, b
    t = panel.table
    assert [t.horizontalHeaderItem(j).text() for j in range(3)] == ["x", "kind", "y"]
    assert t.rowCount() == 12 and t.item(0, 1).text() == "a"
    assert panel.target.isEnabled() and panel.target.currentText() == "y"
    panel.target.setCurrentText("kind")
    panel.target.activated.emit(1)
    assert doc.project.dataset["target"] == "kind"
    assert panel.dataset is not None and panel.dataset.classes == ["a", "b"]     # text labels become classes
    assert panel.dataset.x.shape == (30, 2) and "binary classification" in panel.info.text()


def test_npz_and_npy_import(qtbot, dock_for, tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "Y.npy", y)
    doc, d = dock_for(xor_project(5))
    d.data.import_file(tmp_path / "a.npz")
    assert d.data.dataset is not None and len(d.data.dataset) == 40 and d.data.dataset.task == "binary"
    assert d.data.table.columnCount() == 4 and d.data.table.item(0, 0).text() == f"{x[0, 0]:.4g}"
    d.data.import_file(tmp_path / "X.npy", tmp_path / "Y.npy")
    assert doc.project.dataset["kind"] == "npy" and doc.project.dataset["y"] == "Y.npy"
    assert np.array_equal(d.data.dataset.y, y)
    assert not d.data.target.isEnabled()


def test_builtin_choice_updates_the_dataset(qtbot, dock_for):
    doc, d = dock_for(xor_project(5))
    i = d.data.choice.findText("spirals")
    d.data.choice.setCurrentIndex(i)
    d.data.choice.activated.emit(i)
    assert doc.project.dataset == {"kind": "builtin", "name": "spirals"}
    assert "3 classes" in d.data.info.text()
    assert any("multi-class" in m for m in d.form.update_warnings())   # XOR's bce on a 3-class set


def test_kfold_overlays_folds_and_reports_mean_and_std(qtbot, dock_for):
    from gui.training.views import CurvesView
    doc, d = dock_for(moons_project(3))
    d.k_spin.setValue(3)
    d.kfold_btn.click()
    finish(qtbot, d)
    assert d.status == "completed" and len(d.job.results) == 3
    mean, std = fold_summary(d.job.results, "val_accuracy")
    assert d.kfold_summary["val_accuracy"] == (mean, std)
    assert f"{mean:.4g} ± {std:.2g}" in d.message.text()
    curves = d.view(CurvesView)
    assert sorted(curves.folds) == [0, 1, 2]
    for i in range(3):
        assert len(curves.epoch_curve(i, "val_loss").getData()[0]) == 3
    assert d.progress.value() == d.progress.maximum()
    (rec,) = doc.project.runs
    assert len(rec["folds"]) == 3 and rec["summary"]["val_accuracy"] == [mean, std]
    n = len(load(doc.project.dataset))
    assert sum(len(f["history"]["val_loss"]) for f in rec["folds"]) == 9 and n == 200


def test_two_runs_overlay_in_compare_view(qtbot, dock_for):
    from gui.training.views import CompareView
    doc, d = dock_for(xor_project(30))
    d.start()
    finish(qtbot, d)
    doc.set_training("lr", 0.01)
    d.start()
    finish(qtbot, d)
    assert len(doc.project.runs) == 2
    assert d.runs.list.count() == 2 and "lr 0.01" in d.runs.list.item(1).text()
    d.runs.select([0, 1])
    cmp = d.view(CompareView)
    assert cmp.shown == doc.project.runs and d.runs.isVisibleTo(cmp)
    curves = cmp.loss_plot.listDataItems()
    assert len(curves) == 2 and all(len(c.getData()[0]) == 30 for c in curves)
    assert not np.allclose(curves[0].getData()[1], curves[1].getData()[1])


def test_image_folder_import_previews_thumbnails_and_classes(qtbot, dock_for, tmp_path):
    from PIL import Image
    for c, shade in (("cat", 40), ("dog", 200)):
        (tmp_path / "pics" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (4, 3), shade + i).save(tmp_path / "pics" / c / f"{i}.png")
    doc, d = dock_for(xor_project(5))
    d.data.import_folder(tmp_path / "pics")
    assert doc.project.dataset["kind"] == "folder"
    ds = d.data.dataset
    assert ds is not None and ds.x.shape[1:] == (1, 3, 4) and ds.classes == ["cat", "dog"]
    assert "6 samples of shape (1, 3, 4)" in d.data.info.text()
    t = d.data.table
    assert t.rowCount() == 6 and t.columnCount() == 2 and t.item(5, 1).text() == "dog"
    px = t.item(0, 0).icon().pixmap(t.iconSize()).toImage()                 # the thumbnail, not pixel columns
    assert not px.isNull() and px.width() > 4


def test_settings_edits_are_undoable_and_the_form_follows(qtbot, dock_for):
    doc, d = dock_for(xor_project(5))
    lr = d.form.editors["lr"].widget
    lr.setText("0.125")
    lr.editingFinished.emit()
    assert doc.project.training["lr"] == 0.125
    doc.undo_stack.undo()
    assert doc.project.training["lr"] == 0.05 and lr.text() == "0.05"
    d.data.import_file(path("examples", "xor.json").with_name("nope.npz"))   # a missing file: message, no crash
    assert "cannot read" in d.data.info.text() and d.data.dataset is None
    doc.undo_stack.undo()
    assert doc.project.dataset == {"kind": "builtin", "name": "xor"} and d.data.dataset is not None


def test_regression_run_hides_class_views(qtbot, dock_for, tmp_path):
    from gui.training.views import BoundaryView, ConfusionView, CurvesView, PCAView
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(120, 2)).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=(x[:, 0] ** 2 + 0.5 * x[:, 1]).astype(np.float32))
    p = xor_project(8)
    p.graph = mlp(2, 16, head="Dense", units=8)
    p.graph.nodes["head"].config["units"] = 1
    p.dataset = {"kind": "npz", "path": str(tmp_path / "r.npz")}
    p.training.update(loss="mse", lr=0.01, batch_size=16, validation_split=0.25)
    doc, d = dock_for(p)
    assert not d.form.warning.isVisible()                  # linear output with MSE on a regression set
    d.start()
    finish(qtbot, d)
    assert d.status == "completed" and "loss (standardised targets)" in d.message.text()
    assert f"validation RMSE {d.result['val_rmse']:.4g}" in d.message.text()
    tab = d.tabs.indexOf
    assert not d.tabs.isTabEnabled(tab(d.view(ConfusionView))) and d.tabs.isTabEnabled(tab(d.view(BoundaryView)))
    assert d.view(CurvesView).acc_plot.isVisible() is False
    assert d.view(PCAView).evr is not None and d.view(BoundaryView).image.image is not None


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_nan_or_inf_learning_rate_is_refused_with_a_red_border_and_a_reason(qtbot, dock_for, text):
    doc, d = dock_for(xor_project(5))
    ed = d.form.editors["lr"]
    before = doc.project.training["lr"]
    ed.widget.setText(text)
    ed.widget.editingFinished.emit()
    assert doc.project.training["lr"] == before and doc.undo_stack.count() == 0
    assert ed.invalid and "d32f2f" in ed.widget.styleSheet()
    assert ed.reason.isVisible() and "finite" in ed.reason.text() and "\n" not in ed.reason.text()
    ed.widget.setText("0.01")
    ed.widget.editingFinished.emit()
    assert doc.project.training["lr"] == 0.01 and not ed.invalid and not ed.reason.isVisible()
