"""Blocks and canvas, second round: unfolding on a wrapped imported layout overlaps nothing, the window opens in
Build, a folded block's ports start and end connections, Ctrl+F opens the block a layer hides in, identical blocks
are one PyTorch class, and layers only an import makes (OnnxNode) stay out of the palette but load."""
import tempfile

import pytest

from engine.graph import Graph
from engine.layers import REGISTRY
from engine.project import Project
from gui import grouping as G
from gui.mainwindow import MainWindow, default_example
from gui.palette import TYPE_ROLE


@pytest.fixture
def win(qtbot):
    w = MainWindow(autosave_dir=tempfile.mkdtemp(), training=False)
    w.maybe_save = lambda: True                 # no "save changes?" dialog in a test
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    return w


def palette_types(w):
    t = w.palette.tree
    return {t.topLevelItem(i).child(j).data(0, TYPE_ROLE) for i in range(t.topLevelItemCount())
            for j in range(t.topLevelItem(i).childCount())}


def test_onnx_node_is_not_in_the_palette_but_a_project_holding_one_loads(win, tmp_path):
    from engine.layers.onnx_node import example
    listed = palette_types(win)
    assert "OnnxNode" not in listed
    assert {t for t, c in REGISTRY.items() if c.palette} <= listed           # every other layer is offered
    assert [t for t, c in REGISTRY.items() if not c.palette] == ["OnnxNode"]
    g = Graph()
    g.add_node("Input", "x", {"shape": [6]}, {"x": 0, "y": 0})
    g.add_node("OnnxNode", "topk", {"op": "TopK", "onnx": example("TopK", (6,))}, {"x": 240, "y": 0})
    g.add_node("Dense", "fc", {"units": 3}, {"x": 480, "y": 0})
    g.connect("x", "topk")
    g.connect("topk", "fc")
    f = tmp_path / "imported.json"
    Project(g).save(f)
    assert win.open_path(f)
    assert win.doc.graph.nodes["topk"].type == "OnnxNode" and "topk" in win.scene.nodes
    assert win.doc.infos["topk"].shape == (2,) and not win.doc.infos["topk"].error
    assert win.doc.infos["fc"].shape == (3,)


def test_the_window_opens_in_build_with_the_canvas_getting_the_room(qtbot):
    w = MainWindow(autosave_dir=tempfile.mkdtemp())
    w.maybe_save = lambda: True
    qtbot.addWidget(w)
    w.open_path(default_example(), template=True)
    w.show()
    qtbot.waitExposed(w)
    assert w.modes.mode == "build" and not w.training.isVisible()
    qtbot.waitUntil(lambda: w.view.height() >= w.height() / 2)
    w.grab().save(str(tempfile.gettempdir() + "/blocks2_build.png"))
    w.doc.set_locked(True)                                     # a run starts: Train
    assert w.modes.mode == "train" and w.training.isVisible()
    w.doc.set_locked(False)
