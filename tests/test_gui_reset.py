"""New / Open show the new project alone; reopened projects show their curves and sequence data as saved;
shipped examples open as untitled copies and are never written (issue 21, items 6-8)."""
import json
import shutil

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QSettings, QStandardPaths
from PySide6.QtWidgets import QMessageBox

from engine.project import Project
from gui.mainwindow import MainWindow
from gui.training.views import AttentionView, CurvesView, PCAView
from resources import path


@pytest.fixture
def win(qapp, qtbot, tmp_path, monkeypatch):
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QCoreApplication.setOrganizationName("LayerboardResetTest")
    QCoreApplication.setApplicationName("LayerboardResetTest")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    w = MainWindow(autosave_dir=tmp_path / "data")
    w.warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, title, text, *a: w.warnings.append((title, text)))
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    w.modes.set("train")                            # the training panel shown (the window opens in Build)
    yield w
    w.training.shutdown()


def example(name):
    return path("examples", name)


def test_opening_a_project_resets_every_view_and_panel(win, qtbot):
    d, seq = win.training, win.training.data.sequences
    assert win.open_path(example("reviews-rnn.json"))
    assert seq.isChecked() and seq.body.isVisible()                      # a text project: the Sequences box open
    assert "fine-food-reviews" in seq.file_label.text()
    t = d.data.table
    header = [t.horizontalHeaderItem(j).text() for j in range(t.columnCount())]
    assert header == ["text", "y"]                                       # words, not a table of numeric ids
    assert any(c.isalpha() for c in t.item(0, 0).text())
    assert win.open_path(example("xor.json"))
    assert not seq.isChecked() and seq.file_label.text() == "no file chosen" and seq.path is None
    win.doc.set_training("epochs", 3)
    d.start()
    qtbot.waitUntil(lambda: d.status not in ("", "running"), timeout=30000)
    assert d.status == "completed" and d.view(PCAView).layer.count() > 0 and "pca_layer" in d.options
    assert "finished" in d.progress.format() and d.message.text()
    assert d.view(CurvesView).folds[0]["batch"].n > 0
    assert win.doc.project.runs[-1]["steps_per_epoch"] == d.job.trainer.steps_per_epoch
    old_att = d.view(AttentionView)
    old_att.hover.setText("α_{3→1} = 0.25 of the old project")
    win.show_message("training finished: you can edit again")
    win.doc.undo_stack.setClean()
    win.new()                                                            # New: nothing of the xor run remains
    assert d.progress.format() == "idle" and d.message.text() == "" and win.statusBar().currentMessage() == ""
    assert d.view(PCAView).layer.count() == 0 and "pca_layer" not in d.options
    assert d.view(CurvesView).folds[0]["batch"].n == 0 and d.view(CurvesView).folds[0]["epoch"].n == 0
    assert "old project" not in d.view(AttentionView).hover.text()
    assert d.result is None and d.job is None and d.train_btn.isEnabled()
    assert all(d.tabs.isTabEnabled(i) for i in range(d.tabs.count()))  # none disabled by the xor run's data


def test_a_reopened_run_shows_every_epoch_of_its_curves(win, qtbot, tmp_path):
    p = Project.load(example("xor.json"))
    n, per = 30, 10
    h = {"train_loss": list(np.linspace(1, 0.1, n)), "val_loss": list(np.linspace(1.1, 0.2, n)),
         "train_accuracy": [0.5] * n, "val_accuracy": [0.5] * n}
    p.runs = [{"label": "Run 1", "config": dict(p.training), "seed": 0, "steps_per_epoch": per, "history": h,
               "result": {"status": "completed", "epochs": n, "steps": n * per}}]
    p.save(tmp_path / "saved.json")
    assert win.open_path(tmp_path / "saved.json")
    c = win.training.view(CurvesView)
    e = c.folds[0]["epoch"].data
    assert len(e) == n and e[-1, 1] == n * per                          # epoch ends at their steps
    (x0, x1), _ = c.loss_plot.getViewBox().viewRange()
    assert x0 <= per and x1 >= n * per                                   # the x axis spans every epoch


def test_a_reopened_series_project_shows_its_sequences_ticked(win, tmp_path):
    src = json.loads(example("temperature-rnn.json").read_text())
    src["dataset"]["path"] = str(path("data", "ewr-weather-2013.csv.gz"))
    (tmp_path / "temps.json").write_text(json.dumps(src))
    assert win.open_path(tmp_path / "temps.json")
    seq = win.training.data.sequences
    assert seq.isChecked() and seq.kind.currentData() == "series" and seq.s_target.currentText() == "temp"
    assert win.windowTitle().startswith("temps.json")


def test_a_shipped_example_opens_untitled_and_save_never_writes_into_the_package(win, qtbot, tmp_path, monkeypatch):
    shipped = example("moons-mlp.json")
    before = shipped.read_bytes()
    assert win.open_path(shipped)                                        # File ▸ Open on the examples folder
    assert win.doc.project.path is None and win.windowTitle().startswith("untitled")
    asked = []
    target = tmp_path / "mine.json"
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName",
                        lambda *a, **k: (asked.append(a[2]) or str(target), ""))
    win.doc.set_training("epochs", 7)
    assert win.save()                                                    # Ctrl+S asks where
    assert asked and target.exists() and shipped.read_bytes() == before
    assert asked[0].endswith("moons-mlp.json") and not asked[0].startswith(str(shipped.parent))   # its name, elsewhere
    assert json.loads(target.read_text())["training"]["epochs"] == 7
    win.doc.project.path = shipped                                       # e.g. a recovered autosave of it
    win.doc.set_training("epochs", 8)
    assert win.save() and len(asked) == 2 and shipped.read_bytes() == before
    assert not win._save_to(shipped) and shipped.read_bytes() == before  # Save as into the package: refused
    assert win.warnings and "installed with Layerboard" in win.warnings[-1][1]


def test_a_users_copy_of_an_example_opens_under_its_name(win, tmp_path):
    shutil.copy(example("xor.json"), tmp_path / "xor.json")
    assert win.open_path(tmp_path / "xor.json")
    assert win.doc.project.path == tmp_path / "xor.json"
