"""Blocks, third round: a folded block's free inner inputs get ports, a connection dropped on a folded block's body
goes to its one input (or says why not), a block port's right-click menu is the block's, and block ports follow a
theme switch."""
import tempfile

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QContextMenuEvent
from PySide6.QtWidgets import QApplication

from engine.graph import Graph
from engine.project import Project
from gui import grouping as G
from gui.block_item import BlockPort
from gui.layout import NODE_H, NODE_W
from gui.style import THEMES
from test_gui_blocks2 import win  # noqa: F401  (a fixture: the main window, shown)
from test_gui_canvas import drag_between
from test_gui_layout import isolated  # noqa: F401  (a fixture: settings of its own)


def chains():
    """x → d0, and a → b (a's input free), with a lone Dense 'c' under a and a lone Dense 'z' after b."""
    g = Graph()
    g.chain(("x", "Input", {"shape": [8]}), ("d0", "Dense", {"units": 8}))
    g.chain(("a", "Dense", {"units": 6}), ("b", "ReLU", {}))
    g.add_node("Dense", "c", {"units": 4})
    g.add_node("Dense", "z", {"units": 2})
    for n, (x, y) in {"x": (40, 40), "d0": (280, 40), "a": (560, 40), "b": (800, 40), "c": (560, 300),
                      "z": (1000, 300)}.items():
        g.nodes[n].meta.update(x=x, y=y)
    return g


def load(w, members, name="blk"):
    w.doc.load(Project(chains()))
    G.group(w.doc, members, name)
    w.view.zoom_to_fit()
    return w.scene.folds.items[name]


def ports(it):
    return {(p.is_output, p.node.name, p.src): p for p in it.childItems() if isinstance(p, BlockPort)}


def body(it):
    return it.mapToScene(QPointF(NODE_W / 2, NODE_H / 2 + 10))


# ---- 1. a port for each inner input nothing feeds ----
def test_a_folded_block_with_a_free_first_input_has_a_port_an_outside_output_connects_to(win):
    doc, sc, view = win.doc, win.scene, win.view
    it = load(win, ["a", "b"])
    assert it.inputs == () and set(ports(it)) == {(False, "a", None), (True, "b", None)}
    free = ports(it)[False, "a", None]
    assert free.free and free.end() == ("a", 0) and free.isVisible()
    assert free.brush().color() == QColor(THEMES["light"]["node"])          # hollow: nothing feeds it yet
    n = doc.undo_stack.index()
    drag_between(view, sc.nodes["d0"].out_port.scenePos(), free.scenePos())
    assert doc.graph.inputs_of("a") == ["d0"] and doc.undo_stack.index() == n + 1
    assert doc.undo_stack.undoText().startswith("Connect") and G.folded(doc, "blk")
    assert doc.infos["a"].shape == (6,) and not doc.infos["a"].error
    assert set(ports(it)) == {(False, "a", "d0"), (True, "b", None)}       # now a crossing input, filled
    edge = sc.edges[next(e for e in doc.graph.edges if e.dst == "a")]
    assert edge.isVisible() and (edge.path().currentPosition() - it.in_anchor("d0")).manhattanLength() < 1
    doc.undo_stack.undo()
    assert doc.graph.inputs_of("a") == [] and set(ports(it)) == {(False, "a", None), (True, "b", None)}
    doc.undo_stack.redo()
    assert doc.graph.inputs_of("a") == ["d0"] and it.inputs == ("d0",)
    win.grab().save(tempfile.gettempdir() + "/blocks3_free_port.png")


def test_free_ports_are_one_per_open_input_and_none_where_the_layer_is_fed():
    from engine.blocks import free_inputs
    g = chains()
    g.add_node("Add", "m")
    g.add_node("Concatenate", "cat")
    g.connect("b", "cat")
    assert free_inputs(g, ["a", "b", "c", "m", "cat"]) == (("a", 0), ("c", 0), ("m", None), ("cat", None))
    g.connect("d0", "a")
    g.connect("c", "cat")
    assert free_inputs(g, ["a", "b"]) == () and free_inputs(g, ["b", "c", "cat"]) == (("c", 0),)
    assert free_inputs(g, ["x", "d0"]) == ()                              # an Input takes nothing


# ---- 2. dropping on the block's body ----
def test_a_drag_dropped_on_a_blocks_body_connects_its_one_free_input_or_its_one_output(win):
    doc, sc, view = win.doc, win.scene, win.view
    it = load(win, ["a", "b"])
    n = doc.undo_stack.index()
    drag_between(view, sc.nodes["d0"].out_port.scenePos(), body(it))
    assert doc.graph.inputs_of("a") == ["d0"] and doc.undo_stack.index() == n + 1
    assert "connected d0 → a" in win.statusBar().currentMessage()
    # from a layer's input onto the body: the block's one output feeds it
    drag_between(view, sc.nodes["z"].in_ports[0].scenePos(), body(it))
    assert doc.graph.inputs_of("z") == ["b"] and doc.undo_stack.index() == n + 2
    # the one input is taken now: the drop says why, on the canvas too, and changes nothing
    drag_between(view, sc.nodes["x"].out_port.scenePos(), body(it))
    msg = win.statusBar().currentMessage()
    assert msg.startswith("cannot connect") and "'a' takes 1 input" in msg and doc.undo_stack.index() == n + 2
    assert sc.note is not None
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.graph.inputs_of("a") == [] and doc.graph.inputs_of("z") == []
    doc.undo_stack.redo()
    assert doc.graph.inputs_of("a") == ["d0"]


def test_a_drop_on_a_block_with_two_free_inputs_asks_for_a_port(win):
    doc, sc, view = win.doc, win.scene, win.view
    it = load(win, ["a", "b", "c"])
    assert sum(p.free for p in ports(it).values()) == 2
    n = doc.undo_stack.index()
    drag_between(view, sc.nodes["d0"].out_port.scenePos(), body(it))
    msg = win.statusBar().currentMessage()
    assert "2 inputs" in msg and "a input 1, c input 1" in msg and "drop on one of its ports" in msg
    assert doc.undo_stack.index() == n and doc.graph.inputs_of("a") == doc.graph.inputs_of("c") == []
    assert sc.note is not None
    drag_between(view, sc.nodes["z"].in_ports[0].scenePos(), body(it))     # outputs b and c: which one?
    assert "2 outputs" in win.statusBar().currentMessage() and doc.undo_stack.index() == n
    # its own output dropped back on itself: nothing happens
    drag_between(view, ports(it)[True, "b", None].scenePos(), body(it))
    assert doc.undo_stack.index() == n
    win.view.grab().save(tempfile.gettempdir() + "/blocks3_two_free.png")


# ---- 3. a block port's right-click menu ----
def test_right_click_on_a_folded_blocks_port_shows_the_blocks_menu(win, monkeypatch):
    doc, sc, view = win.doc, win.scene, win.view
    it = load(win, ["a", "b"])
    shown, real = [], sc.context_menu

    class Shown:                                  # the menu the right-click makes, recorded instead of run
        def __init__(self, it):
            shown.append(real(it))

        def exec(self, *a):
            pass
    monkeypatch.setattr(sc, "context_menu", Shown)
    for p in ports(it).values():
        at = view.mapFromScene(p.scenePos())
        QApplication.sendEvent(view.viewport(), QContextMenuEvent(QContextMenuEvent.Reason.Mouse, at,
                                                                  view.viewport().mapToGlobal(at)))
    assert len(shown) == 2
    for menu in shown:
        texts = [a.text() for a in menu.actions() if a.text()]
        assert texts[:4] == ["Unfold", "Rename block…", "Ungroup", "Save block to palette…"]
        assert not any(t.startswith("Fold") for t in texts)
    n = doc.undo_stack.index()
    next(a for a in shown[0].actions() if a.text() == "Unfold").trigger()
    assert not G.folded(doc, "blk") and doc.undo_stack.index() == n + 1
    doc.undo_stack.undo()
    assert G.folded(doc, "blk")
    next(a for a in shown[1].actions() if a.text() == "Ungroup").trigger()
    assert G.block_of(doc, "a") is None
    doc.undo_stack.undo()
    assert G.block_of(doc, "a") == "blk" and G.folded(doc, "blk")


# ---- 4. block ports follow a theme switch ----
def test_block_ports_take_the_new_themes_colours_without_a_hover(isolated, win):
    it = load(win, ["a", "b"])
    free = ports(it)[False, "a", None]
    assert free.brush().color() == QColor(THEMES["light"]["node"])
    light_rim = ports(it)[True, "b", None].pen().color()
    try:
        win.dark_action.setChecked(True)
        win.toggle_theme()
        free = ports(it)[False, "a", None]
        assert not free.hot and free.brush().color() == QColor(THEMES["dark"]["node"])
        rim = ports(it)[True, "b", None].pen().color()
        assert rim.lightness() > light_rim.lightness() + 40                  # a lighter rim on dark nodes
        free.set_hot(True)
        assert free.pen().color() == QColor(THEMES["dark"]["accent"])
        free.set_hot(False)
        win.view.grab().save(tempfile.gettempdir() + "/blocks3_dark.png")
    finally:
        win.dark_action.setChecked(False)
        win.toggle_theme()
    assert ports(it)[False, "a", None].brush().color() == QColor(THEMES["light"]["node"])



def test_a_blocks_summary_counts_its_free_inputs_and_names_them(win):
    it = load(win, ["a", "b", "c"])
    tip = it.toolTip()
    assert "Not connected: a input 1, c input 1" in tip and "Inputs: none" in tip
    win.doc.connect("d0", "a")
    assert "Not connected: c input 1" in it.toolTip() and "Inputs: d0" in it.toolTip()
