"""Weights in the window: File ▸ Export weights writes the trained model; File ▸ Load weights seeds the next run."""
import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox
from test_training_dock import dock_for, finish, xor_project  # noqa: F401

from engine.errors import LayerboardError
from engine.model import Model
from engine.session import prepare
from engine.weights import load_into


def trained_xor(qtbot, dock_for, epochs=500):
    doc, d = dock_for(xor_project(epochs))
    d.start()
    finish(qtbot, d)
    assert d.weights.model is d.job.model
    return doc, d


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_export_writes_the_trained_model_and_it_loads_back_identically(qtbot, dock_for, tmp_path, ext):
    doc, d = trained_xor(qtbot, dock_for)
    f = tmp_path / f"xor.{ext}"
    d.weights.export(f)
    m = Model(doc.graph.copy())
    load_into(m, f)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    assert np.array_equal(m.predict(x), d.weights.model.predict(x))


def test_loaded_weights_seed_the_next_run_and_a_graph_edit_forgets_them(qtbot, dock_for, tmp_path):
    doc, d = trained_xor(qtbot, dock_for)
    f = tmp_path / "xor.npz"
    d.weights.export(f)
    trained = d.weights.model.weights()
    doc2, d2 = dock_for(xor_project(1))
    d2.weights.load(f, doc2.graph)
    d2.loaded_weights(d2.weights.name)
    assert "xor.npz" in d2.message.text() and d2.weights.start is not None
    model, _ = prepare(doc2.project, weights=d2.weights.start)          # what the run's worker builds
    assert all(np.array_equal(model.weights()[k], v) for k, v in trained.items())
    d2.start()
    assert d2.job.weights is d2.weights.start
    finish(qtbot, d2)
    assert d2.status == "completed" and d2.result["train_accuracy"] == 1.0      # one epoch from trained weights
    doc2.set_hparam("hidden", "units", 3)
    assert d2.weights.start is None and "fresh weights" in d2.message.text()


def test_weights_of_another_graph_are_refused_with_the_tensor_named(qtbot, dock_for, tmp_path):
    doc, d = trained_xor(qtbot, dock_for)
    f = tmp_path / "xor.npz"
    d.weights.export(f)
    doc.set_hparam("hidden", "units", 4)
    with pytest.raises(LayerboardError, match=r"hidden/W.*\(2, 2\).*\(4, 2\)"):
        d.weights.load(f, doc.graph)


def test_menu_actions_export_onnx_and_refuse_a_bad_file(qtbot, tmp_path, monkeypatch):
    from onnx import checker, load
    from gui.mainwindow import MainWindow
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: shown.append(text))
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text, *a: shown.append(text))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    w.export_weights()                                                 # nothing trained yet
    assert shown and "Nothing to export" in shown[-1]
    w.doc.load(xor_project(30))
    w.training.start()
    finish(qtbot, w.training)
    out = tmp_path / "xor.onnx"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    w.export_weights()
    checker.check_model(load(str(out)))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    w.load_weights()
    assert "bad.npz" in shown[-1] and w.training.weights.start is None
    w.training.shutdown()


def test_the_trained_model_and_its_curves_come_back_when_the_project_is_reopened(qtbot, tmp_path, monkeypatch):
    from gui.mainwindow import MainWindow
    from gui.training.views import CurvesView
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    w.doc.load(xor_project(40))
    w.training.start()
    finish(qtbot, w.training)
    f = tmp_path / "xor.json"
    assert w._save_to(f)
    side = tmp_path / "xor.weights.safetensors"
    assert side.exists()
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    want = w.training.weights.model.predict(x)
    w.training.shutdown()

    w2 = MainWindow(autosave_dir=tmp_path / "data2")                  # a new window, as after a restart
    qtbot.addWidget(w2)
    assert w2.open_path(f)
    d = w2.training
    assert d.weights.model is not None and np.array_equal(d.weights.model.predict(x), want)
    out = tmp_path / "again.npz"
    d.weights.export(out)                                              # Export works without training again
    m = Model(w2.doc.graph.copy())
    load_into(m, out)
    assert np.array_equal(m.predict(x), want)
    ex, ey = d.view(CurvesView).epoch_curve(0, "train_loss").getData()
    assert len(ex) == 40 and np.allclose(ey, w2.doc.project.runs[-1]["history"]["train_loss"])
    w2.doc.set_hparam("hidden", "units", 3)                             # the graph no longer fits the weights
    assert w2._save_to(f) and side.exists()                            # kept, but not rewritten for another graph
    w3 = MainWindow(autosave_dir=tmp_path / "data3")
    qtbot.addWidget(w3)
    assert w3.open_path(f) and w3.training.weights.model is None
    assert "not loaded" in w3.training.message.text() and "hidden" in w3.training.message.text()
    for win in (w2, w3):
        win.training.shutdown()
