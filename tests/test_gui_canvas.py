"""Canvas gestures: palette drop, port-to-port connection, refusal, live shape errors and the one-click fix."""
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.project import Project  # noqa: E402
from gui.document import Document, LockedError  # noqa: E402
from gui.inspector import Inspector  # noqa: E402
from gui.items import NoteItem  # noqa: E402
from gui.palette import PaletteTree, mime_for  # noqa: E402
from gui.scene import GraphScene  # noqa: E402
from gui.view import MIME, GraphView  # noqa: E402


@pytest.fixture
def canvas(qtbot):
    doc = Document(Project())
    scene = GraphScene(doc)
    view = GraphView(scene)
    view.resize(900, 600)
    view.setSceneRect(-100, -100, 1200, 800)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    messages = []
    scene.message.connect(messages.append)
    return doc, scene, view, messages


def drop(view, type, at):
    """Send the real drag-enter, drag-move and drop events a palette drag produces."""
    vp = view.viewport()
    data = mime_for(type)
    acts, btn, mod = Qt.DropAction.CopyAction, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(at, acts, data, btn, mod)                 # Qt 6 takes a QPoint here
    QApplication.sendEvent(vp, enter)
    assert enter.isAccepted()
    move = QDragMoveEvent(at, acts, data, btn, mod)
    QApplication.sendEvent(vp, move)
    assert move.isAccepted()
    ev = QDropEvent(QPointF(at), acts, data, btn, mod, QEvent.Type.Drop)
    QApplication.sendEvent(vp, ev)
    return ev


def drag_between(view, a, b):
    """Press at scene point a, move, release at scene point b (real mouse events on the viewport)."""
    vp = view.viewport()
    pa, pb = view.mapFromScene(a), view.mapFromScene(b)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pa)
    QTest.mouseMove(vp, (pa + pb) / 2)
    QTest.mouseMove(vp, pb)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pb)


def test_palette_lists_every_registered_type_with_its_doc_and_the_mime_type(qapp):
    from engine.layers import REGISTRY
    tree = PaletteTree()
    seen = {}
    for i in range(tree.topLevelItemCount()):
        g = tree.topLevelItem(i)
        for j in range(g.childCount() if g.text(0) != "Blocks" else 0):     # Blocks: sub-graphs, not types
            seen[g.child(j).text(0)] = g.child(j).toolTip(0)
    assert set(seen) == {t for t, c in REGISTRY.items() if c.palette}           # OnnxNode: only an import makes it
    assert all(REGISTRY[t].doc in tip for t, tip in seen.items())
    tree.filter("pool")
    visible = [tree.topLevelItem(i).child(j).text(0) for i in range(tree.topLevelItemCount())
               for j in range(tree.topLevelItem(i).childCount()) if not tree.topLevelItem(i).child(j).isHidden()]
    assert visible and all("pool" in (t + REGISTRY[t].doc).lower() for t in visible)
    assert tree.mimeData([tree.topLevelItem(0).child(0)]).hasFormat(MIME)


def test_dropping_a_palette_item_creates_a_node_where_it_was_dropped(canvas):
    doc, scene, view, _ = canvas
    ev = drop(view, "Dense", QPoint(300, 200))
    assert ev.isAccepted()
    assert [n.type for n in doc.graph.nodes.values()] == ["Dense"]
    name = next(iter(doc.graph.nodes))
    item = scene.nodes[name]
    assert item.sceneBoundingRect().contains(view.mapToScene(QPoint(300, 200)))
    assert item.isSelected()
    doc.undo_stack.undo()
    assert not doc.graph.nodes and not scene.nodes


def test_dragging_from_an_output_port_to_an_input_port_connects(canvas):
    doc, scene, view, messages = canvas
    a = doc.add_node("Input", {"shape": [4]}, pos=(0, 0))
    b = doc.add_node("Dense", {"units": 3}, pos=(300, 120))
    drag_between(view, scene.nodes[a].out_port.scenePos(), scene.nodes[b].in_ports[0].scenePos())
    assert [(e.src, e.dst, e.port) for e in doc.graph.edges] == [(a, b, 0)]
    assert len(scene.edges) == 1
    assert doc.infos[b].shape == (3,)
    # and the reverse direction: from an input port back to an output port
    c = doc.add_node("ReLU", pos=(600, 0))
    drag_between(view, scene.nodes[c].in_ports[0].scenePos(), scene.nodes[b].out_port.scenePos())
    assert (b, c) in [(e.src, e.dst) for e in doc.graph.edges]


def test_an_invalid_connection_is_refused_with_the_reason(canvas):
    doc, scene, view, messages = canvas
    a = doc.add_node("Input", {"shape": [4]}, pos=(0, 0))
    b = doc.add_node("Dense", pos=(300, 0))
    c = doc.add_node("Input", {"shape": [4]}, pos=(0, 200))
    doc.connect(a, b)
    before = list(doc.graph.edges)
    drag_between(view, scene.nodes[c].out_port.scenePos(), scene.nodes[b].in_ports[0].scenePos())
    assert doc.graph.edges == before and len(scene.edges) == 1
    assert any("already connected" in m for m in messages)
    messages.clear()
    drag_between(view, scene.nodes[b].out_port.scenePos(), scene.nodes[a].out_port.scenePos())
    assert doc.graph.edges == before
    assert messages and "output" in messages[-1]


def test_merge_layers_offer_one_more_input_port(canvas):
    doc, scene, view, _ = canvas
    x = doc.add_node("Input", {"shape": [4]}, pos=(0, 0))
    y = doc.add_node("Input", {"shape": [4]}, pos=(0, 200))
    m = doc.add_node("Add", pos=(300, 100))
    assert len(scene.nodes[m].in_ports) == 1 and scene.nodes[m].in_ports[0].extra
    drag_between(view, scene.nodes[x].out_port.scenePos(), scene.nodes[m].in_ports[-1].scenePos())
    assert len(scene.nodes[m].in_ports) == 2
    drag_between(view, scene.nodes[y].out_port.scenePos(), scene.nodes[m].in_ports[-1].scenePos())
    assert len(scene.nodes[m].in_ports) == 3
    assert doc.infos[m].shape == (4,) and not doc.infos[m].error


def test_a_shape_error_shows_on_the_right_node_and_the_fix_removes_it(canvas, qtbot):
    doc, scene, view, _ = canvas
    img = doc.add_node("Input", {"shape": [1, 8, 8]}, pos=(0, 0))
    fc = doc.add_node("Dense", {"units": 5}, pos=(250, 0))
    out = doc.add_node("Softmax", pos=(500, 0))
    doc.connect(img, fc)
    doc.connect(fc, out)
    assert scene.nodes[fc].has_error and not scene.nodes[img].has_error and not scene.nodes[out].has_error
    assert "(1, 8, 8)" in scene.nodes[fc].tooltip_text() and "Flatten" in scene.nodes[fc].tooltip_text()
    assert scene.nodes[out].info.blocked == fc
    insp = Inspector(doc)
    qtbot.addWidget(insp)
    insp.show()                                             # a click lands on a laid-out, visible button
    insp.show_node(fc)
    qtbot.waitUntil(lambda: insp.fix_button.height() > 0)
    assert not insp.error.isHidden() and "(1, 8, 8)" in insp.error.text()
    assert not insp.fix_button.isHidden() and "Flatten" in insp.fix_button.text()
    QTest.mouseClick(insp.fix_button, Qt.MouseButton.LeftButton)
    assert not scene.nodes[fc].has_error
    assert doc.infos[fc].shape == (5,) and doc.infos[out].shape == (5,)
    flat = next(n for n, v in doc.graph.nodes.items() if v.type == "Flatten")
    assert doc.graph.inputs_of(flat) == [img] and doc.graph.inputs_of(fc) == [flat]
    assert insp.error.isHidden() and insp.fix_button.isHidden()
    doc.undo_stack.undo()                                   # one step undoes the whole fix
    assert scene.nodes[fc].has_error and flat not in scene.nodes


def test_a_set_fix_changes_the_hyperparameter(canvas):
    doc, scene, _, _ = canvas
    img = doc.add_node("Input", {"shape": [1, 8, 8]})
    conv = doc.add_node("Conv2D", {"kernel_size": [4], "padding": "same"}, pos=(250, 0))
    doc.connect(img, conv)
    fix = doc.infos[conv].fix
    assert scene.nodes[conv].has_error and fix.action == "set"
    doc.apply_fix(conv, fix)
    assert not scene.nodes[conv].has_error and doc.graph.nodes[conv].config["kernel_size"] == [5, 5]


def test_inspector_edits_are_undoable_and_invalid_values_refused(canvas, qtbot):
    doc, scene, _, _ = canvas
    inp = doc.add_node("Input", {"shape": [4]})
    fc = doc.add_node("Dense", {"units": 3}, pos=(250, 0))
    doc.connect(inp, fc)
    insp = Inspector(doc)
    qtbot.addWidget(insp)
    insp.show_node(fc)
    n = doc.undo_stack.count()
    insp.editors["units"].widget.setValue(7)
    insp.editors["units"].widget.setValue(9)
    assert doc.infos[fc].shape == (9,) and doc.undo_stack.count() == n + 1
    shape = Inspector(doc)
    qtbot.addWidget(shape)
    shape.show_node(inp)
    ed = shape.editors["shape"].widget
    ed.setText("2, two")
    ed.editingFinished.emit()
    assert doc.graph.nodes[inp].config["shape"] == [4] and not shape.editors["shape"].reason.isHidden()
    ed.setText("2, 2")
    ed.editingFinished.emit()
    assert doc.graph.nodes[inp].config["shape"] == [2, 2]
    insp.name_edit.setText("head")
    insp.name_edit.editingFinished.emit()
    assert "head" in doc.graph.nodes and "head" in scene.nodes and insp.name == "head"
    doc.undo_stack.undo()
    assert fc in scene.nodes


def test_dragging_nodes_is_one_undo_step_and_the_scene_follows_undo(canvas):
    doc, scene, view, _ = canvas
    a = doc.add_node("Input", {"shape": [4]}, pos=(0, 0))
    b = doc.add_node("Dense", pos=(300, 0))
    doc.connect(a, b)
    n = doc.undo_stack.count()
    start = scene.nodes[b].sceneBoundingRect().center()
    drag_between(view, start, start + QPointF(40, 90))
    assert doc.undo_stack.count() == n + 1
    x, y = doc.pos(b)
    assert (x, y) != (300, 0) and (scene.nodes[b].pos().x(), scene.nodes[b].pos().y()) == (x, y)
    edge = scene.edges[doc.graph.edges[0]]
    assert edge.path().pointAtPercent(1) == scene.nodes[b].in_ports[0].scenePos()
    doc.undo_stack.undo()
    assert doc.pos(b) == (300, 0) and scene.nodes[b].pos() == QPointF(300, 0)
    assert edge.path().pointAtPercent(1) == scene.nodes[b].in_ports[0].scenePos()


def test_node_context_menu_offers_the_fix_and_edges_delete(canvas):
    doc, scene, view, _ = canvas
    img = doc.add_node("Input", {"shape": [16]}, pos=(0, 0))
    conv = doc.add_node("Conv2D", pos=(250, 0))
    doc.connect(img, conv)
    menu = scene.context_menu(scene.nodes[conv])
    fixes = [a for a in menu.actions() if a.text().startswith("Fix:")]
    assert len(fixes) == 1 and "Reshape" in fixes[0].text()
    fixes[0].trigger()
    assert not doc.infos[conv].error and doc.infos[conv].shape == (8, 2, 2)
    edge = next(e for e in doc.graph.edges if e.dst == conv)
    scene.clearSelection()
    scene.edges[edge].setSelected(True)
    scene.delete_selected()
    assert edge not in doc.graph.edges and edge not in scene.edges and doc.infos[conv].error
    doc.undo_stack.undo()
    assert edge in scene.edges and not doc.infos[conv].error


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_nan_in_a_float_field_is_refused_not_stored(canvas, qtbot, text):
    doc, scene, _, _ = canvas
    fc = doc.add_node("Dense", {"units": 3})
    insp = Inspector(doc)
    qtbot.addWidget(insp)
    insp.show()
    insp.show_node(fc)
    ed = insp.editors["bias_init"]
    n = doc.undo_stack.count()
    ed.widget.setText(text)
    ed.widget.editingFinished.emit()
    assert "bias_init" not in doc.graph.nodes[fc].config and doc.undo_stack.count() == n
    assert ed.invalid and ed.reason.isVisible() and "finite" in ed.reason.text()
    ed.widget.setText("0.5")
    ed.widget.editingFinished.emit()
    assert doc.graph.nodes[fc].config["bias_init"] == 0.5 and not ed.reason.isVisible()


def test_inspector_and_training_form_share_one_widget_generator():
    from gui.editors import HPEditor
    from gui.training.settings import Editor
    assert issubclass(Editor, HPEditor)
    import gui.inspector as insp
    assert not hasattr(insp, "make_editor") and not hasattr(insp, "FloatBox")


def test_a_refused_connection_is_explained_on_the_canvas_beside_the_target(canvas, tmp_path):
    doc, scene, view, messages = canvas
    a = doc.add_node("Input", {"shape": [4]}, pos=(0, 0))
    b = doc.add_node("Dense", pos=(300, 0))
    c = doc.add_node("Input", {"shape": [4]}, pos=(0, 200))
    doc.connect(a, b)
    target = scene.nodes[b].in_ports[0].scenePos()
    drag_between(view, scene.nodes[c].out_port.scenePos(), target)
    note = scene.note
    assert note is not None and note.scene() is scene and "already connected" in note.text
    r = note.sceneBoundingRect()
    assert (r.center() - target).manhattanLength() < 300                  # beside the port, not somewhere else
    assert r.width() <= NoteItem.WIDTH + 20                               # wrapped, not one endless line
    view.grab().save(str(tmp_path / "refused.png"))
    QTest.mousePress(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     view.mapFromScene(QPointF(900, 600)))                 # the next press clears it
    assert scene.note is None and note.scene() is None


def test_paste_offsets_the_copy_and_repeated_pastes_cascade(canvas):
    doc, scene, _, _ = canvas
    a = doc.add_node("Dense", pos=(0, 0))
    b = doc.add_node("ReLU", pos=(220, 0))
    doc.connect(a, b)
    data = doc.copy_data([a, b])
    seen = [doc.pos(a)]
    for _ in range(3):
        new = doc.paste(data)
        first = doc.pos(new[0])
        for n in doc.graph.nodes:                                       # the copy covers no other node
            if n not in new:
                for m in new:
                    (x0, y0), (x1, y1) = doc.pos(n), doc.pos(m)
                    assert abs(x0 - x1) >= 168 or abs(y0 - y1) >= 92, (n, m)
        assert first not in seen and first[0] > seen[-1][0] and first[1] > seen[-1][1]
        seen.append(first)
        assert (scene.nodes[new[0]].pos().x(), scene.nodes[new[0]].pos().y()) == first


def test_dragging_a_node_is_allowed_while_training_and_undoable(canvas):
    doc, scene, view, messages = canvas
    a = doc.add_node("Dense", pos=(0, 0))
    doc.set_locked(True)
    it = scene.nodes[a]
    start = it.sceneBoundingRect().center()
    drag_between(view, start, start + QPointF(100, 100))
    moved = doc.pos(a)
    assert moved != (0.0, 0.0) and (it.pos().x(), it.pos().y()) == moved and doc.locked
    assert not any("training" in m for m in messages)
    doc.undo_stack.undo()
    assert doc.pos(a) == (0.0, 0.0) and (it.pos().x(), it.pos().y()) == (0.0, 0.0)
    with pytest.raises(LockedError):                                     # structure still refused
        doc.add_node("ReLU")


def test_a_long_error_wraps_in_the_inspector_and_the_fix_button_stays_in_view(canvas, qtbot, tmp_path):
    from engine.layers import Fix
    from gui.style import apply_theme
    apply_theme(QApplication.instance(), "light")
    doc, _, _, _ = canvas
    fc = doc.add_node("Dense", {"units": 3})
    insp = Inspector(doc)
    qtbot.addWidget(insp)
    insp.resize(290, 700)
    insp.show()
    insp.show_node(fc)
    info = doc.infos[fc]
    info.error = ("Dense 'fc' expects a flat (features,) input but gets (16, 14, 14) from 'pool1': insert a "
                  "Flatten layer before it; the weights in /a/very/long/path/without/any/spaces/at_all/"
                  "weights_of_the_previous_model_trained_yesterday.npz do not fit")
    info.fix = Fix("insert_before", "insert a Flatten layer before fc so that its (16, 14, 14) input becomes "
                   "(3136,) features", "Flatten", ())
    insp.refresh()
    qtbot.waitUntil(lambda: insp.fix_button.isVisible())
    QApplication.processEvents()
    vp = insp.area.viewport()
    assert insp.area.horizontalScrollBar().maximum() == 0              # nothing to scroll sideways
    assert insp.area.widget().width() <= vp.width()
    for w in (insp.fix_button, insp.error, insp.editors["units"]):
        r = w.geometry()
        assert r.right() < vp.width(), w                                # fully inside the viewport
    assert insp.fix_button.height() > insp.fix_button.label.fontMetrics().height() * 2   # wrapped
    assert "Flatten" in insp.fix_button.text()
    insp.grab().save(str(tmp_path / "inspector-long-error.png"))
