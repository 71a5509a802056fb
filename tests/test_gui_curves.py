"""Curves (legends beside, never over, the curves; regression RMSE / MAE / R²), Compare runs, the scatter view."""
import numpy as np
from PySide6.QtWidgets import QApplication

from gui.training.views import CompareView, CurvesView, ScatterView
from gui.training.views.compare import describe
from gui.training.views.scatter import fit_numbers

REG = {"train_loss": [4.0, 2.0, 1.0], "val_loss": [5.0, 3.0, 2.0], "train_rmse": [2e4, 1.4e4, 1e4],
       "val_rmse": [2.2e4, 1.7e4, 1.4e4], "train_mae": [1.5e4, 1e4, 8e3], "val_mae": [1.6e4, 1.2e4, 9e3],
       "train_r2": [0.2, 0.6, 0.8], "val_r2": [0.1, 0.5, 0.7]}


def feed(v, hist, classify):
    v.begin({"folds": 1, "n_val": 10, "epochs": 3, "per_epoch": 2, "classify": classify,
             "task": "multiclass" if classify else "regression"})
    for e in range(len(hist["train_loss"])):
        v.batches(0, np.array([[e + 1, 2 * e + 1, hist["train_loss"][e], np.nan]]))
        v.epoch(0, e + 1, 2 * e + 2, {k: h[e] for k, h in hist.items()})
    v.refresh()
    QApplication.processEvents()


def rect(item):
    return item.mapRectToScene(item.boundingRect())


def test_regression_history_fills_rmse_mae_r2_panels(qtbot):
    v = CurvesView()
    qtbot.addWidget(v)
    v.resize(900, 500)
    v.show()
    feed(v, REG, classify=False)
    assert not v.panels["acc"].shown and v.panels["err"].shown and v.panels["r2"].shown
    x, y = v.epoch_curve(0, "val_rmse").getData()
    assert list(y) == REG["val_rmse"] and list(x) == [2, 4, 6]
    assert list(v.epoch_curve(0, "train_r2").getData()[1]) == REG["train_r2"]
    assert list(v.epoch_curve(0, "val_mae").getData()[1]) == REG["val_mae"]
    shown = [p for p in v.panels.values() if p.shown]
    h = v.canvas.viewport().height()
    top = rect(v.legend).top()
    assert max(rect(p.plot).bottom() for p in shown) - top > 0.8 * h            # no blank half


def test_legends_sit_beside_the_plot_area(qtbot):
    v = CurvesView()
    qtbot.addWidget(v)
    v.resize(600, 700)
    v.show()
    feed(v, {"train_loss": [1, .5, .3], "val_loss": [1, .6, .4], "train_accuracy": [.5, .7, .9],
             "val_accuracy": [.5, .6, .8]}, classify=True)
    assert [label.text for _, label in v.legend.items] == ["per batch", "train", "validation"]
    for k in ("loss", "acc"):
        assert not rect(v.legend).intersects(rect(v.panels[k].plot.vb))


def feed_folds(v, hist, classify, folds):
    v.begin({"folds": folds, "n_val": 10, "epochs": 3, "per_epoch": 2, "classify": classify})
    for f in range(folds):
        if f:
            v.fold(f, v.ctx)
        for e in range(len(hist["train_loss"])):
            v.batches(f, np.array([[e + 1, 2 * e + 1, hist["train_loss"][e], np.nan]]))
            v.epoch(f, e + 1, 2 * e + 2, {k: h[e] * (1 + 0.05 * f) for k, h in hist.items()})
    v.refresh()
    for _ in range(3):
        QApplication.processEvents()


def test_at_the_docks_default_size_every_plot_is_whole_and_the_legend_covers_none(qtbot, tmp_path):
    """The Curves tab of the window's default layout is about 640 × 250: regression's three panels (R²
    included) and a 5-fold run's plots must all fit, readable, below one short legend."""
    cls = {"train_loss": [1, .5, .3], "val_loss": [1, .6, .4], "train_accuracy": [.5, .7, .9],
           "val_accuracy": [.5, .6, .8]}
    for name, hist, classify, folds in (("reg", REG, False, 1), ("kfold", cls, True, 5), ("kfold-reg", REG, False, 5)):
        v = CurvesView()
        qtbot.addWidget(v)
        v.resize(640, 250)
        v.show()
        feed_folds(v, hist, classify, folds)
        v.grab().save(str(tmp_path / f"{name}.png"))
        vp = v.canvas.mapToScene(v.canvas.viewport().rect()).boundingRect()
        shown = [p for p in v.panels.values() if p.shown]
        assert len(shown) == (3 if not classify else 2)
        for p in shown:
            box = rect(p.plot.vb)
            assert vp.contains(box), (name, p.plot.titleLabel.text, box, vp)            # nothing clipped
            assert box.width() >= 100 and box.height() >= 60, (name, p.plot.titleLabel.text, box)
            assert not rect(v.legend).intersects(box)
        labels = [label.text for _, label in v.legend.items]
        if folds > 1:
            assert labels[:folds] == [f"fold {i + 1}" for i in range(folds)] and len(labels) <= folds + 4


def test_compare_runs_have_room_and_kfold_reads_consistently(qtbot):
    v = CompareView()
    qtbot.addWidget(v)
    v.resize(900, 330)
    v.show()
    runs = [{"label": f"Run {i + 1} (5-fold): a rather long dataset name, 20:3{i}:00",
             "config": {"optimizer": "adam", "lr": 0.01}, "result": {"val_accuracy": 0.75},
             "summary": {"val_accuracy": [0.625, 0.11]}, "folds": [{}] * 5,
             "history": {"train_loss": [1, .5], "val_loss": [1, .7], "train_accuracy": [.5, .9],
                         "val_accuracy": [.5, .6]}} for i in range(2)]
    v.show_runs(runs)
    QApplication.processEvents()
    assert rect(v.loss_plot.vb).height() >= 100 and rect(v.acc_plot.vb).height() >= 100
    assert not rect(v.loss_legend).intersects(rect(v.loss_plot.vb))
    d = describe(runs[0])
    assert "0.625 ± 0.11 over 5 folds" in d and "0.75" not in d


def test_scatter_shows_predictions_against_targets_with_the_fit_numbers(qtbot):
    class Probe:
        task = "regression"
        eval_x = np.arange(6, dtype=np.float32).reshape(6, 1)
        eval_y = np.array([[10.0], [20.0], [30.0], [40.0], [50.0], [60.0]])

    class Model:                         # predict returns the target's original units (COMMON.md)
        def predict(self, x):
            return 10 * x + 12
    p = ScatterView.compute(Model(), Probe(), {})
    assert np.allclose(p["pred"], [12, 22, 32, 42, 52, 62]) and np.allclose(p["true"], Probe.eval_y[:, 0])
    v = ScatterView()
    qtbot.addWidget(v)
    v.begin({"task": "regression"})
    assert v.applies({"task": "regression"}) and not v.applies({"task": "binary"})
    v.snapshot(0, p)
    v.refresh()
    assert np.allclose(v.points.getData()[0], Probe.eval_y[:, 0])
    n = fit_numbers(p["pred"], p["true"])
    assert np.isclose(n["rmse"], 2) and np.isclose(n["mae"], 2) and np.isclose(n["r2"], 1 - 24 / 1750)
    assert "RMSE = √(Σ(ŷ−y)²/n) = √(24/6) = 2" in v.note.text()
