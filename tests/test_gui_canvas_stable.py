"""The canvas does not jump: a node stays where it is on screen when an edge or a node added elsewhere grows the
scene (the view centred a scene smaller than itself, so the whole graph moved by half the growth)."""
import pytest

from engine.project import Project
from gui.document import Document
from gui.scene import GraphScene
from gui.view import GraphView


@pytest.fixture
def canvas(qtbot):
    doc = Document(Project())
    scene = GraphScene(doc)
    view = GraphView(scene)
    view.resize(900, 600)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    doc.add_node("Input", {"shape": [4]}, pos=(0, 0), name="x")
    doc.add_node("Dense", {"units": 3}, pos=(260, 0), name="d")
    doc.connect("x", "d")
    view.zoom_to_fit()
    qtbot.wait(20)
    return doc, scene, view


def at(view, scene, name):
    """The node's top-left corner in viewport pixels."""
    return view.mapFromScene(scene.nodes[name].pos())


@pytest.mark.parametrize("edit", ["node", "back_edge", "far_node"])
def test_a_node_keeps_its_place_on_screen_when_the_scene_grows_elsewhere(canvas, qtbot, tmp_path, edit):
    doc, scene, view = canvas
    before = at(view, scene, "x"), at(view, scene, "d")
    if edit == "node":
        doc.add_node("ReLU", pos=(260, 200), name="r")
    elif edit == "back_edge":                    # a reader placed left of its source: the edge loops around below
        doc.add_node("ReLU", pos=(-120, 160), name="r")
        doc.connect("d", "r")
    else:
        doc.add_node("ReLU", pos=(1400, 900), name="r")
    qtbot.wait(50)
    view.grab().save(str(tmp_path / f"{edit}.png"))
    assert (at(view, scene, "x"), at(view, scene, "d")) == before
    assert view.sceneRect().contains(scene.nodes["r"].sceneBoundingRect().adjusted(1, 1, -1, -1))   # can scroll there


def test_zooming_out_and_resizing_keep_the_graph_put(canvas, qtbot):
    doc, scene, view = canvas
    assert not view.horizontalScrollBar().isVisible() and not view.verticalScrollBar().isVisible()   # it all fits
    view.zoom(0.5)
    qtbot.wait(20)
    before = at(view, scene, "x")
    doc.add_node("ReLU", pos=(260, 300), name="r")
    qtbot.wait(50)
    assert at(view, scene, "x") == before
    view.resize(1100, 700)
    qtbot.wait(50)
    view.resize(700, 500)                       # smaller again: no scroll bars for space the graph does not use
    qtbot.wait(50)
    assert not view.horizontalScrollBar().isVisible() and not view.verticalScrollBar().isVisible()
    before = at(view, scene, "x")
    doc.add_node("ReLU", pos=(-300, -200), name="r2")
    qtbot.wait(50)
    assert at(view, scene, "x") == before
