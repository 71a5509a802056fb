"""Template gallery: one template per network kind and task, each trains (briefly here) towards what it claims."""
from pathlib import Path

import pytest

from engine.project import Project
from gui.gallery import gallery, score
from resources import path

ENTRIES = gallery()


def test_the_gallery_covers_every_kind_and_task_the_app_supports():
    kinds = {(e["network"], e["task"]) for e in ENTRIES}
    assert {("MLP", "binary"), ("MLP", "multiclass"), ("MLP", "regression"), ("CNN", "multiclass")} <= kinds
    for e in ENTRIES:
        assert e["teaches"] and e["data"] and 0 < e["reaches"] <= 1 and e["quick"]["min"] < e["reaches"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_each_template_trains_as_shipped_in_a_short_run(entry):
    q = entry["quick"]
    p = Project.load(path("examples", entry["file"]))
    assert p.dataset.get("kind") in ("builtin", "csv", "text", "series") and "epochs" in p.training
    v, r = score(p, entry["metric"], epochs=min(q["epochs"], p.training["epochs"]), samples=q.get("samples"))
    assert r["status"] in ("completed", "early_stopped") and v >= q["min"], (entry["file"], v)


def test_gallery_dialog_shows_thumbnails_and_cards(qtbot):
    from gui.templates import TemplateDialog
    d = TemplateDialog()
    qtbot.addWidget(d)
    assert d.list.count() == len(ENTRIES)
    for i in range(d.list.count()):
        it = d.list.item(i)
        img = it.icon().pixmap(168, 96).toImage()
        assert not img.isNull()
        colours = {img.pixelColor(x, y).name() for x in range(0, img.width(), 4) for y in range(0, img.height(), 4)}
        assert len(colours) >= 2                              # boxes drawn on the background
        d.list.setCurrentRow(i)
        e = d.entries[d.chosen()]
        assert e["teaches"] in d.desc.text() and "Reaches" in d.desc.text()


def test_opening_a_template_with_a_shipped_csv_finds_its_data(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from gui.mainwindow import MainWindow
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    monkeypatch.chdir(tmp_path)                               # not the examples folder
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    assert w.open_path(path("examples", "wave-regression.json"), template=True)
    assert Path(w.doc.project.dataset["path"]).is_file() and w.doc.project.path is None
    ds = w.training.data.dataset
    assert ds is not None and ds.task == "regression" and ds.x.shape[1:] == (3,)
    assert not any(i.error for i in w.doc.infos.values())
