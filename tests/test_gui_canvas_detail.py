"""Big-graph canvas behaviour: text and ports only where they are legible, the minimap follows edits,
Zoom to fit frames every node, select-all is one selection change, an edit re-analyses only what changes."""
import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QColor, QImage  # noqa: E402

from engine.graph import Graph  # noqa: E402
from engine.project import Project  # noqa: E402
from gui.document import Document  # noqa: E402
from gui.items import LOD_TEXT  # noqa: E402
from gui.layout import layered  # noqa: E402
from gui.scene import GraphScene  # noqa: E402
from gui.style import theme  # noqa: E402
from gui.view import GraphView  # noqa: E402


def chain(n):
    """Input → n - 1 Dense layers, laid out in rows of 10."""
    g = Graph()
    g.add_node("Input", "x", {"shape": [8]})
    prev = "x"
    for i in range(1, n):
        g.connect(prev, g.add_node("Dense", f"d{i}", {"units": 8}).name)
        prev = f"d{i}"
    for k, (x, y) in layered(g, wrap=10).items():
        g.nodes[k].meta.update(x=x, y=y)
    return Project(graph=g)


def shown(qtbot, n, w=900, h=600):
    """(document, scene, view) of a chain of n layers, the view shown at w × h."""
    doc = Document(chain(n))
    scene = GraphScene(doc)
    view = GraphView(scene)
    view.resize(w, h)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    return doc, scene, view


@pytest.fixture
def canvas(qtbot):
    return shown(qtbot, 40)


def paint(view):
    """Paint the viewport (as on screen) into an image."""
    return view.viewport().grab().toImage()


def test_zoomed_out_nodes_are_blocks_without_text_or_ports(canvas):
    doc, scene, view = canvas
    view.resetTransform()
    view.scale(LOD_TEXT * 0.6, LOD_TEXT * 0.6)
    view.centerOn(scene.nodes["d5"])
    for it in scene.nodes.values():
        it._texts = None                                 # painted at 100 % when shown: forget those lines
    paint(view)
    node = scene.nodes["d5"]
    assert node._texts is None                         # its lines were never composed or drawn
    assert not node.out_port.isVisible() and not any(p.isVisible() for p in node.in_ports)
    assert scene._port_at(node.out_port.scenePos()) is None
    view.resetTransform()                                # 100 %: text and ports again
    view.centerOn(node)
    paint(view)
    assert node._texts and node._texts["name"] == "d5"
    assert node.out_port.isVisible() and scene._port_at(node.out_port.scenePos()) is node.out_port


def test_a_node_text_follows_its_state(canvas):
    doc, scene, view = canvas
    view.resetTransform()
    view.centerOn(scene.nodes["d3"])
    paint(view)
    assert "units 8" in scene.nodes["d3"]._texts["line"]
    doc.set_hparam("d3", "units", 5)
    paint(view)
    assert "units 5" in scene.nodes["d3"]._texts["line"] and "(5,)" in scene.nodes["d3"]._texts["shape"]


def pixel_at(mm, name):
    r = mm._drawn[name][0]
    img = mm._pix.toImage()
    dpr = mm._pix.devicePixelRatio()
    return QColor(img.pixel(int(r.center().x() * dpr), int(r.center().y() * dpr)))


def test_minimap_repaints_an_edited_node_and_redraws_after_a_new_one(canvas, qtbot):
    doc, scene, view = canvas
    mm = view.minimap
    mm.redraw()
    assert set(mm._drawn) == set(doc.graph.nodes)
    assert pixel_at(mm, "d7").name() != QColor(theme["error"]).name()
    doc.set_hparam("x", "shape", [8, 8, 8, 8])        # Dense after a rank-4 input: an error at d1 at once
    bad = [n for n, i in doc.infos.items() if i.error]
    assert bad and not mm._timer.isActive()            # repainted in place, no whole redraw
    assert pixel_at(mm, bad[0]).name() == QColor(theme["error"]).name()
    doc.undo_stack.undo()
    assert pixel_at(mm, bad[0]).name() != QColor(theme["error"]).name()
    name = doc.add_node("Dense", None, (4000, 4000))   # the layout changed: redrawn whole, after the edit
    assert name not in mm._drawn and mm._timer.isActive()
    qtbot.waitUntil(lambda: name in mm._drawn, timeout=5000)
    assert mm.bounds.contains(4000, 4000)


def test_zoom_to_fit_frames_every_node_from_their_positions(qtbot):
    doc, scene, view = shown(qtbot, 6, 1400, 900)      # one row that fits at a readable zoom
    r = view.graph_rect()
    nodes = [it.sceneBoundingRect() for it in scene.nodes.values()]
    assert all(r.adjusted(-1, -1, 1, 1).contains(b.adjusted(2, 2, -2, -2)) for b in nodes)
    view.scale(0.2, 0.2)
    view.zoom_to_fit()
    seen = view.mapToScene(view.viewport().rect()).boundingRect()
    assert all(seen.contains(b) for b in nodes)
    assert view.transform().m11() >= 0.75               # READABLE: never shrunk below legible


def test_select_all_is_one_selection_change(qtbot):
    from gui.mainwindow import MainWindow
    win = MainWindow(Document(chain(30)), training=False)
    qtbot.addWidget(win)
    changes = []
    win.scene.selectionChanged.connect(lambda: changes.append(1))
    win.select_all()
    assert len(changes) == 1 and len(win.scene.selected_names()) == 30
    win.doc.undo_stack.setClean()


def test_an_edit_keeps_the_analysis_of_nodes_whose_inputs_did_not_change():
    doc = Document(chain(30))
    before = dict(doc.infos)
    doc.set_hparam("d2", "units", 3)                   # d3's parameters change, its output (8) does not
    assert doc.infos["d2"].shape == (3,) and doc.infos["d3"].params == 3 * 8 + 8
    assert doc.infos["d3"] is not before["d3"]
    assert all(doc.infos[n] is before[n] for n in ["x", "d1"] + [f"d{i}" for i in range(4, 30)])


def test_the_grabbed_canvas_shows_text_at_100_percent_and_blocks_zoomed_out(canvas):
    doc, scene, view = canvas
    view.resetTransform()
    view.centerOn(scene.nodes["d2"])
    near = paint(view)
    view.scale(0.2, 0.2)
    far = paint(view)
    assert isinstance(near, QImage) and near.width() > 0

    def colours(img):
        return len({img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)})
    assert colours(near) > colours(far)                # anti-aliased text has many shades; blocks have few
