"""Loader notes (skipped images, unlabelled rows, filled cells) are shown in the dataset panel."""
import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from engine import DataError
from engine.data import load
from engine.project import Project
from gui.mainwindow import MainWindow
from resources import path


@pytest.fixture(autouse=True)
def no_dialogs(monkeypatch, tmp_path):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    monkeypatch.setenv("LAYERBOARD_CACHE", str(tmp_path / "cache"))


def window(qtbot, tmp_path):
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    p = Project.load(path("examples", "xor.json"))
    p.path = None
    w.doc.load(p)
    return w


def test_table_fill_and_drop_notes(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,y\n1,x,0\n,y,1\n3,x,\n4,,1\n5,y,0\n")
    ds = load({"kind": "csv", "path": str(p), "target": "y"})
    assert "1 rows left out: column 'y' is missing there (the target)" in ds.notes
    assert "column 'a': 1 missing cells filled with the training rows' median" in ds.notes
    assert "column 'b': 1 missing cells filled with a 'missing' level" in ds.notes


def test_panel_shows_image_and_text_notes(qtbot, tmp_path):
    from PIL import Image
    w = window(qtbot, tmp_path)
    panel = w.training.data
    assert panel.notes.isHidden()                                       # the built-in set: nothing to note
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "pics" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((rng.random((6, 5)) * 255).astype(np.uint8)).save(tmp_path / "pics" / c / f"{i}.png")
    (tmp_path / "pics" / "dog" / "2.png").write_bytes(b"")
    panel.import_folder(tmp_path / "pics")
    assert not panel.notes.isHidden()
    assert "1 of 6 images skipped: dog/2.png" in panel.notes.text()
    t = tmp_path / "t.csv"
    t.write_text("a,b,y\n1,x,0\n,y,1\n3,x,\n4,x,1\n5,y,0\n")
    panel.import_file(t)
    assert "column 'a': 1 missing cells filled" in panel.notes.text()
    assert "1 rows left out" in panel.notes.text()
    panel.use_builtin("moons")
    assert panel.notes.isHidden() and panel.notes.text() == ""
    w.doc.set_dataset({"kind": "csv", "path": str(tmp_path / "gone.csv")})   # a failed read: no stale notes
    assert panel.notes.isHidden()
    w.training.grab().save(str(tmp_path / "panel.png"))
