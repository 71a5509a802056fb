"""Training in the window: results in the data's units with the baseline and wall time, a run is not an undo
step, the locked graph says so on the canvas, the PyTorch export creates a new folder."""
import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialog, QLineEdit

from engine.project import Project
from engine.report import baseline_text, regression_text
from gui.document import Document
from resources import path

TEMP = {"status": "completed", "message": "", "epochs": 27, "steps": 1500, "seconds": 13.04,
        "train_loss": 0.0122, "val_loss": 0.0159, "train_rmse": 2.039, "val_rmse": 1.459, "train_mae": 1.584,
        "val_mae": 1.05, "train_r2": 0.988, "val_r2": 0.9606, "baseline_val_rmse": 1.794}


def test_result_line_gives_units_baseline_and_what_the_time_measures():
    from gui.training.texts import result_text
    t = result_text(TEMP, 20.61)
    assert "validation RMSE 1.459, MAE 1.05, R² 0.9606" in t and "training: RMSE 2.039" in t
    assert "20.6 s from Train to result" in t and "training loop 13.0 s" in t
    assert "loss (standardised targets) train 0.0122, validation 0.0159" in t
    assert "persistence (next = last value seen) 1.794: MSE 33.9 % lower" in t
    worse = dict(TEMP, val_rmse=1306.0)
    assert "-" not in baseline_text(worse).split(":")[-1] and "worse than" in baseline_text(worse)
    cls = result_text({"status": "completed", "epochs": 2, "steps": 8, "seconds": 0.3, "train_loss": 0.5,
                       "val_loss": 0.6, "train_accuracy": 0.8, "val_accuracy": 0.75}, 3.0)
    assert "validation accuracy 0.75" in cls and "standardised" not in cls and "RMSE" not in cls
    assert regression_text({"val_rmse": float("nan")}) == ""


def test_regression_run_in_the_dock_reports_the_engines_metrics(qtbot):
    from gui.training import TrainingDock
    p = Project.load(path("examples", "wave-regression.json"))
    p.dataset = dict(p.dataset, path=str(path("examples", p.dataset["path"])))
    p.path, p.training["epochs"] = None, 1
    doc = Document(p)
    d = TrainingDock(doc)
    qtbot.addWidget(d)
    d.resize(1000, 650)
    d.show()
    d.start()
    qtbot.waitUntil(lambda: (d.drain(), d.status != "running")[1], timeout=60000)
    r = d.result
    text = d.message.text()
    assert f"validation RMSE {r['val_rmse']:.4g}, MAE {r['val_mae']:.4g}, R² {r['val_r2']:.4g}" in text, text
    assert "from Train to result" in text
    assert doc.undo_stack.count() == 0 and len(doc.project.runs) == 1 and doc.dirty
    d.shutdown()


def test_a_run_is_kept_and_saved_but_is_not_an_undo_step(qtbot, tmp_path):
    doc = Document(Project.load(path("examples", "xor.json")))
    doc.set_training("lr", 0.0123)
    seen = []
    doc.dirty_changed.connect(seen.append)
    doc.undo_stack.setClean()
    doc.add_run({"status": "completed", "label": "Run 1"})
    assert doc.undo_stack.count() == 1 and doc.undo_stack.undoText() == "Set training lr"
    assert doc.dirty and seen[-1] is True and doc.project.runs[-1]["label"] == "Run 1"
    doc.undo_stack.undo()                                   # undoing an edit keeps the run
    assert doc.project.runs[-1]["label"] == "Run 1" and doc.dirty
    doc.undo_stack.redo()
    doc.save(tmp_path / "p.json")
    assert not doc.dirty and seen[-1] is False
    assert Project.load(tmp_path / "p.json").runs[-1]["label"] == "Run 1"


def test_the_canvas_says_the_graph_is_locked_while_training(qtbot, tmp_path):
    from gui.mainwindow import MainWindow
    w = MainWindow(Document(Project.load(path("examples", "xor.json"))), training=False,
                   autosave_dir=tmp_path / "as")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    assert not w.view.lock_banner.isVisible()
    w.doc.set_locked(True)
    QApplication.processEvents()
    b = w.view.lock_banner
    assert b.isVisible() and "locked" in b.text() and "Stop" in b.text()
    vp = w.view.viewport().geometry()
    assert b.geometry().top() == vp.top() and b.width() == vp.width() and b.height() >= 16
    assert "locked while training" in w.status.text()
    w.grab().save(str(tmp_path / "locked.png"))
    w.doc.set_locked(False)
    assert not b.isVisible() and "locked" not in w.status.text()


def test_export_folder_dialog_creates_a_folder_that_does_not_exist_yet(qtbot, tmp_path):
    from gui.training.weights import FolderDialog
    new = tmp_path / "exports" / "digits-torch"
    d = FolderDialog(None, "Export PyTorch project", tmp_path)
    qtbot.addWidget(d)
    d.show()
    d.findChild(QLineEdit, "fileNameEdit").setText(str(new))          # typed, as a user does
    refused = []

    def close_modal():                                     # a refusal box would block: record and close it
        m = QApplication.activeModalWidget()
        if m is not None and m is not d:
            refused.append(m)
            m.close()
    QTimer.singleShot(500, close_modal)
    d.accept()
    assert not refused and d.result() == QDialog.DialogCode.Accepted
    assert new.is_dir() and d.selectedFiles()[0] == str(new)


def test_window_exports_pytorch_into_a_new_folder(qtbot, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from gui.mainwindow import MainWindow
    from gui.training import weights as W
    w = MainWindow(Document(Project.load(path("examples", "xor.json"))), autosave_dir=tmp_path / "as")
    qtbot.addWidget(w)
    new = tmp_path / "a" / "b"

    def fake_exec(self):                                   # the user types a new folder's path and presses Choose
        self.show()
        self.findChild(QLineEdit, "fileNameEdit").setText(str(new))
        self.accept()
        return self.result()
    monkeypatch.setattr(W.FolderDialog, "exec", fake_exec)
    said = []
    monkeypatch.setattr(W.QMessageBox, "warning", lambda *a: said.append(a[2]))
    monkeypatch.setattr(W.QMessageBox, "information", lambda *a: said.append(a[2]))
    w.export_pytorch()
    assert not said, said
    assert (new / "model.py").exists() and np.any([f.suffix == ".safetensors" for f in new.iterdir()])
    w.training.shutdown()


def test_regression_cross_validation_reports_rmse_mae_r2_over_the_folds(qtbot):
    from engine.session import fold_summary
    from gui.training import TrainingDock
    p = Project.load(path("examples", "wave-regression.json"))
    p.dataset = dict(p.dataset, path=str(path("examples", p.dataset["path"])))
    p.path, p.training["epochs"] = None, 1
    doc = Document(p)
    d = TrainingDock(doc)
    qtbot.addWidget(d)
    d.resize(1000, 650)
    d.show()
    d.start(k=3)
    qtbot.waitUntil(lambda: (d.drain(), d.status != "running")[1], timeout=90000)
    assert len(d.job.results) == 3 and set(d.kfold_summary) >= {"val_rmse", "val_mae", "val_r2"}
    m, s = fold_summary(d.job.results, "val_rmse")
    assert f"val RMSE {m:.4g} ± {s:.2g}" in d.message.text()
    d.shutdown()
