"""An Input with "shape": "auto" takes the window's dataset shape; until a dataset is known it shows
"auto: from the dataset" without an error."""
import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from engine.project import Project
from engine.shapes import AUTO
from gui.editors import HPEditor
from gui.mainwindow import MainWindow
from engine.layers import REGISTRY
from resources import path


@pytest.fixture(autouse=True)
def no_dialogs(monkeypatch, tmp_path):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    monkeypatch.setenv("LAYERBOARD_CACHE", str(tmp_path / "cache"))


def write_csv(p, n=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    isl = ["a", "b"]
    lines = ["u,v,w,island,label"] + [",".join(f"{v:.3f}" for v in r) + f",{isl[i % 2]},{int(r[0] > 0)}"
                                      for i, r in enumerate(x)]
    p.write_text("\n".join(lines) + "\n")
    return p


def window(qtbot, tmp_path):
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    p = Project.load(path("examples", "xor.json"))
    p.path = None
    w.doc.load(p)
    return w


def test_auto_input_is_pending_then_takes_the_dataset_shape(qtbot, tmp_path):
    w = window(qtbot, tmp_path)
    inp = next(n for n, v in w.doc.graph.nodes.items() if v.type == "Input")
    w.training.data.import_file(tmp_path / "not-there.csv")             # no usable dataset
    assert w.doc.auto_shape is None
    w.doc.set_hparam(inp, "shape", "auto")
    i = w.doc.infos[inp]
    assert i.error is None and i.pending == AUTO
    assert not any(v.error for v in w.doc.infos.values())
    qtbot.waitUntil(lambda: w.scene.nodes[inp].info is w.doc.infos[inp])
    assert "from the dataset" in w.scene.nodes[inp].tooltip_text()
    w.training.data.import_file(write_csv(tmp_path / "t.csv"))        # 3 numbers + a 2-level category
    i = w.doc.infos[inp]
    assert i.shape == (5,) and i.error is None and i.pending is None
    assert not any("Input" in (v.error or "") for v in w.doc.infos.values())
    w.doc.undo_stack.undo()                              # the dataset back: none usable, pending again
    assert w.doc.infos[inp].pending == AUTO and not w.doc.infos[inp].error
    w.doc.undo_stack.undo()                              # the shape back to [2]
    assert w.doc.graph.nodes[inp].config["shape"] == [2]


def test_pending_without_dataset_in_engine_and_item(qtbot):
    from engine.graph import Graph
    from engine.shapes import infer
    g = Graph()
    g.chain(("x", "Input", {"shape": "auto"}), ("d", "Dense", {"units": 2}))
    infos = infer(g)
    assert infos["x"].pending == AUTO and infos["x"].error is None
    assert infos["d"].pending == AUTO and infos["d"].error is None and infos["d"].blocked == "x"
    assert infer(g, auto=(7,))["d"].shape == (2,) and infer(g, auto=(7,))["d"].params == 16


def test_shape_editor_takes_auto(qtbot):
    ed = HPEditor(REGISTRY["Input"].hparams[0], [2])
    qtbot.addWidget(ed)
    got = []
    ed.committed.connect(lambda k, v: got.append(v))
    ed.set_value("auto")
    assert ed.widget.text() == "auto"
    ed.widget.setText("auto")
    ed._text()
    assert got == ["auto"] and not ed.invalid
