"""Template gallery: one template per network kind and task, each trains (briefly here) towards what it claims."""
from pathlib import Path

import pytest

from engine.project import Project
from gui.gallery import LOWER, examples, gallery, meets, reaches_text, score
from resources import path

ENTRIES = gallery()


def test_the_gallery_covers_every_kind_and_task_the_app_supports():
    kinds = {(e["network"], e["task"]) for e in ENTRIES}
    assert {("MLP", "binary"), ("MLP", "multiclass"), ("MLP", "regression"), ("CNN", "multiclass"),
            ("RNN", "binary"), ("RNN", "regression"), ("Transformer", "binary"), ("Transformer", "multiclass")} <= kinds
    for e in ENTRIES:
        assert e["teaches"] and e["data"] and e["reaches"] > 0
        if e["metric"] in LOWER:                              # an error: the quick run's bound is looser (higher)
            assert e["quick"]["max"] > e["reaches"] and "≤" in reaches_text(e)
        else:
            assert e["reaches"] <= 1 and e["quick"]["min"] < e["reaches"]


def test_every_shipped_example_is_in_the_gallery_with_its_measured_score():
    """resources/examples/*.json all appear; the README's measured figures are within what the cards claim."""
    files = {f.name for f in path("examples").glob("*.json")}
    assert files == {f.name for f, _ in examples()} == {e["file"] for e in ENTRIES}
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    measured = {"temperature-rnn.json": 1.459, "temperature-seq2seq-rnn.json": 1.627, "reviews-rnn.json": 0.778}
    for f, v in measured.items():                             # the README's table of measured results
        assert (f"{100 * v:.1f} %" if v < 1 else f"{v:.3f} °F") in readme
        assert meets(next(e for e in ENTRIES if e["file"] == f), v)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_each_template_trains_as_shipped_in_a_short_run(entry):
    q = entry["quick"]
    p = Project.load(path("examples", entry["file"]))
    assert p.dataset.get("kind") in ("builtin", "csv", "text", "series", "pairs") and "epochs" in p.training
    v, r = score(p, entry["metric"], epochs=min(q["epochs"], p.training["epochs"]), samples=q.get("samples"))
    assert r["status"] in ("completed", "early_stopped") and meets(entry, v, q.get("min", q.get("max"))), \
        (entry["file"], v)


@pytest.mark.parametrize("task", ["binary", "multi-class", "regression"])
def test_which_model_proposes_the_shipped_text_and_sequence_templates(task):
    from gui.templates import advise
    for kind in ("text", "sequences"):
        pick, text, _ = advise(kind, task)
        assert pick is not None and path("examples", pick).is_file() and "No " not in text, (kind, task, text)
    assert advise("text", task)[0] in ("reviews-rnn.json", "reviews-transformer.json")
    assert "reviews-transformer.json" in advise("text", "binary")[1] or task != "binary"
    assert advise("sequences", "regression")[0] == "temperature-rnn.json"


def test_gallery_dialog_shows_thumbnails_and_cards(qtbot):
    from gui.templates import TemplateDialog
    d = TemplateDialog()
    qtbot.addWidget(d)
    assert d.list.count() == len(ENTRIES) == len(list(path("examples").glob("*.json")))
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
