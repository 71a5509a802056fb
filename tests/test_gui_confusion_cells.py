"""Clicking a confusion-matrix cell lists its samples: the engine picks the samples of true class i predicted
as j; the dialog shows images as thumbnails, texts as text and table rows as values."""
import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from engine import confusion as cm
from engine.data import Dataset
from engine.project import Project
from engine.session import prepare
from gui.training.job import make_probe
from gui.training.views import ConfusionView
from gui.training.views.cell_samples import CellSamples
from resources import path


def test_each_cell_holds_exactly_its_samples():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    m = cm.confusion(y, pred, 4)
    for i in range(4):
        for j in range(4):
            idx = cm.cell(y, pred, i, j)
            assert len(idx) == m[i, j] and np.all(y[idx] == i) and np.all(pred[idx] == j)
    assert sum(len(cm.cell(y, pred, i, j)) for i in range(4) for j in range(4)) == 500


def test_how_samples_are_shown():
    assert cm.kind(np.zeros((2, 64))) == "image" and cm.kind(np.zeros((2, 1, 8, 8))) == "image"
    assert cm.kind(np.zeros((2, 64)), features=[f"f{k}" for k in range(64)]) == "table"
    assert cm.kind(np.zeros((2, 4))) == "table" and cm.kind(np.zeros((2, 9, 3))) == "sequence"
    assert cm.kind(np.zeros((2, 9)), vocab=["<pad>", "<unk>", "a"]) == "text"
    img = cm.image(np.arange(64.0))
    assert img.shape == (8, 8) and img.min() == 0 and img.max() == 1
    vocab = ["<pad>", "<unk>", "good", "film"]
    assert cm.text([2, 3, 0, 0], vocab, 2) == "good film"
    assert cm.row([1.5, 2], ["age", "fare"]) == [("age", 1.5), ("fare", 2.0)]


def test_clicking_a_cell_lists_its_digits_as_images(qtbot):
    p = Project.load(str(path("examples", "digits-mlp.json")))
    p.training["epochs"] = 1
    model, tr = prepare(p)
    tr.run()
    probe = make_probe(tr.train, tr.val, 0)
    view = ConfusionView()
    qtbot.addWidget(view)
    view.resize(520, 520)
    view.show()
    qtbot.waitExposed(view)
    view.begin({"classify": True, "classes": probe.classes, "n_val": len(tr.val)})
    view.snapshot(0, ConfusionView.compute(model, probe, {}))
    view.refresh()
    m = view.matrix
    off = [(i, j) for i in range(10) for j in range(10) if i != j and m[i, j]]
    i, j = off[0] if off else (0, 0)
    plot = view.plot
    plot.getPlotItem().vb.autoRange()
    qtbot.wait(50)
    at = plot.mapFromScene(plot.getPlotItem().vb.mapViewToScene(QPointF(j, i)))     # the cell's centre
    QTest.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=at)
    qtbot.waitUntil(lambda: view.dialog is not None)
    d = view.dialog
    assert d.kind == "image" and d.list.count() == m[i, j] > 0
    assert f"true class {probe.classes[i]} predicted as {probe.classes[j]}" in d.head.text()
    assert not d.list.item(0).icon().isNull()
    rows = d.samples
    assert np.all(probe.eval_y[rows] == i)
    out = model.predict(probe.eval_x[rows])
    assert np.all(cm.predictions(out, 10) == j)                     # each listed digit really was predicted j


def test_text_and_table_cells(qtbot):
    vocab = ["<pad>", "<unk>", "good", "bad", "film"]
    x = np.array([[2, 4, 0], [3, 4, 0], [3, 0, 0]], np.float32)
    payload = {"y": np.array([1, 0, 0]), "pred": np.array([0, 0, 1]), "x": x, "vocab": vocab,
               "lengths": np.array([2, 2, 1]), "where": None}
    d = CellSamples(payload, 1, 0, ["neg", "pos"])
    qtbot.addWidget(d)
    assert d.kind == "text" and [d.list.item(k).text() for k in range(d.list.count())] == ["#0: good film"]
    table = {"y": np.array([0, 1, 1]), "pred": np.array([1, 1, 1]), "x": np.array([[1, 2], [3, 4], [5, 6]], float),
             "features": ["age", "fare"], "where": None}
    d = CellSamples(table, 1, 1, ["died", "lived"])
    qtbot.addWidget(d)
    assert d.kind == "table" and d.list.rowCount() == 2
    assert [d.list.horizontalHeaderItem(c).text() for c in range(3)] == ["sample", "age", "fare"]
    assert [d.list.item(r, 2).text() for r in range(2)] == ["4", "6"]


def test_cli_lists_a_cells_samples(tmp_path, capsys):
    import json

    from engine.cli import main as cli
    from engine.weights import save
    p = Project.load(str(path("examples", "digits-mlp.json")))
    p.training["epochs"] = 1
    p.save(tmp_path / "digits.json")
    model, tr = prepare(p)
    tr.run()
    save(tmp_path / "w.safetensors", model)
    assert cli(["confusion", str(tmp_path / "digits.json"), "--weights", str(tmp_path / "w.safetensors"), "--json"]) == 0
    m = np.array(json.loads(capsys.readouterr().out)["matrix"])
    assert m.shape == (10, 10) and m.sum() == len(tr.val)
    m0 = m.copy()
    np.fill_diagonal(m0, 0)
    i, j = np.unravel_index(np.argmax(m0), m0.shape) if m0.any() else (3, 3)
    assert cli(["confusion", str(tmp_path / "digits.json"), "--weights", str(tmp_path / "w.safetensors"),
                "--cell", str(i), str(j), "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["cell"]
    assert c["count"] == m[i, j] == len(c["samples"])
    s = np.array(c["samples"], int)
    assert np.all(tr.val.y[s] == i) and np.all(cm.predictions(model.predict(tr.val.x[s]), 10) == j)
    assert all(t == "image 8×8" for t in c["shown"])
    assert cli(["confusion", str(tmp_path / "digits.json"), "--weights", str(tmp_path / "w.safetensors"),
                "--cell", str(i), str(j)]) == 0
    assert f"true {i}, predicted {j}: {m[i, j]} sample(s)" in capsys.readouterr().out
