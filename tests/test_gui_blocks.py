"""Blocks in the window: group (Edit menu, context menu), fold / unfold (double-click), ungroup, rename, move,
delete, save to the palette's My blocks and insert from it; every step undoes and redoes, and the scene mirrors
the Document (members of a folded block hidden, crossing edges drawn to the block's ports)."""
import json
import tempfile

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from engine.project import Project
from gui import grouping as G
from gui import my_blocks
from gui.block_item import BlockItem
from gui.mainwindow import MainWindow, default_example

STAGE = ["conv2", "bn2", "relu2", "pool2"]


@pytest.fixture
def win(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(my_blocks, "default_path", lambda: tmp_path / "my-blocks.json")
    w = MainWindow(autosave_dir=tempfile.mkdtemp(), training=False)
    w.maybe_save = lambda: True                 # no "save changes?" dialog in a test
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.open_path(default_example(), template=True)
    w.show()
    qtbot.waitExposed(w)
    return w


def state(w):
    return json.dumps(w.doc.project.graph.to_dict(), sort_keys=True)


def check_mirror(w):
    """Folded blocks: one BlockItem, members hidden, inner edges hidden, crossing edges end at the block's ports;
    everything else shown as a layer."""
    sc, g = w.scene, w.doc.graph
    fold = {b: ms for b, ms in g.block_names().items() if g.blocks[b]["folded"]}
    assert set(sc.folds.items) == set(fold)
    hidden = {n for ms in fold.values() for n in ms}
    for n, it in sc.nodes.items():
        assert it.isVisible() == (n not in hidden), n
    unit = {n: b for b, ms in fold.items() for n in ms}
    for e, it in sc.edges.items():
        inner = e.src in unit and unit[e.src] == unit.get(e.dst)
        assert it.isVisible() == (not inner), e
        if inner:
            continue
        path = it.path()
        if e.src in unit:
            assert (path.pointAtPercent(0) - sc.folds.items[unit[e.src]].out_anchor(e.src)).manhattanLength() < 1
        if e.dst in unit:
            assert (path.pointAtPercent(1) - sc.folds.items[unit[e.dst]].in_anchor(e.src)).manhattanLength() < 1
    assert set(sc.folds.frames) == set(g.block_names()) - set(fold)


def test_group_by_menu_folds_to_one_node_and_undo_redo_restore(win, qtbot):
    before = state(win)
    win.scene.select(STAGE)
    act = next(a for a in win.menuBar().actions() if a.text() == "&Edit").menu()
    group = next(a for a in act.actions() if a.text() == "&Group as block")
    assert group.shortcut().toString() == "Ctrl+G"
    group.trigger()
    g = win.doc.graph
    assert g.block_names() == {"block1": STAGE} and g.blocks["block1"]["folded"]
    check_mirror(win)
    it = win.scene.folds.items["block1"]
    assert it.isSelected() and it.inputs == ("pool1",) and it.outputs == ("pool2",)
    infos = win.doc.infos
    assert it.summary.params == sum(infos[n].params for n in STAGE) == 4640 + 64
    assert it.summary.shapes == (infos["pool2"].shape,)
    assert win.doc.undo_stack.count() == 1
    win.doc.undo_stack.undo()
    assert state(win) == before and not win.scene.folds.items
    check_mirror(win)
    win.doc.undo_stack.redo()
    assert win.doc.graph.block_names() == {"block1": STAGE}
    check_mirror(win)


def test_double_click_unfolds_in_place_and_folds_again(win, qtbot):
    G.group(win.doc, STAGE, "stage2")
    win.view.zoom_to_fit()
    it = win.scene.folds.items["stage2"]
    at = win.view.mapFromScene(it.mapToScene(QPointF(60, 50)))
    QTest.mouseDClick(win.view.viewport(), Qt.MouseButton.LeftButton, pos=at)
    assert not win.doc.graph.blocks["stage2"]["folded"]
    check_mirror(win)
    frame = win.scene.folds.frames["stage2"]
    for n in STAGE:                       # the frame surrounds the opened layers
        assert frame.rect.contains(win.scene.nodes[n].sceneBoundingRect())
    others = [n for n in win.doc.graph.nodes if n not in STAGE]
    for n in STAGE:                       # unfolded in place: no other layer under them
        r = win.scene.nodes[n].sceneBoundingRect()
        assert not any(r.intersects(win.scene.nodes[o].sceneBoundingRect()) for o in others)
    title = win.view.mapFromScene(frame.title_rect().center())
    QTest.mouseDClick(win.view.viewport(), Qt.MouseButton.LeftButton, pos=title)
    assert win.doc.graph.blocks["stage2"]["folded"]
    check_mirror(win)
    win.doc.undo_stack.undo()
    win.doc.undo_stack.undo()
    assert win.doc.graph.blocks["stage2"]["folded"]
    check_mirror(win)
    win.doc.undo_stack.redo()
    assert not win.doc.graph.blocks["stage2"]["folded"]


def test_unfolding_moves_covering_layers_aside_in_the_same_undo_step(win):
    G.group(win.doc, STAGE, "stage2")
    pos = dict((n, win.doc.pos(n)) for n in win.doc.graph.nodes)
    x, y = win.doc.pos("conv2")
    win.doc.move_nodes({"flatten": (x + 200, y)})          # a layer now sits where bn2 will open
    n = win.doc.undo_stack.count()
    G.set_folded(win.doc, "stage2", False)
    assert win.doc.undo_stack.count() == n + 1
    r = {m: win.scene.nodes[m].sceneBoundingRect() for m in win.doc.graph.nodes}
    assert not any(r["flatten"].intersects(r[m]) for m in STAGE)
    win.doc.undo_stack.undo()
    assert win.doc.pos("flatten") == (x + 200, y) and win.doc.graph.blocks["stage2"]["folded"]
    assert win.doc.pos("conv2") == pos["conv2"]


def test_ungroup_rename_and_their_refusals(win):
    G.group(win.doc, STAGE, "stage2")
    n = win.doc.undo_stack.count()
    with pytest.raises(Exception, match="a layer is named 'conv1'"):
        G.rename_block(win.doc, "stage2", "conv1")
    with pytest.raises(Exception, match="already in block"):
        G.group(win.doc, ["relu2", "flatten"])
    assert win.doc.undo_stack.count() == n
    G.rename_block(win.doc, "stage2", "features")
    assert win.doc.graph.block_names() == {"features": STAGE} and "features" in win.scene.folds.items
    assert win.doc.graph.blocks["features"]["folded"]
    check_mirror(win)
    G.ungroup(win.doc, "features")
    assert win.doc.graph.block_names() == {} and not win.scene.folds.items
    check_mirror(win)
    win.doc.undo_stack.undo()
    assert win.doc.graph.block_names() == {"features": STAGE}
    win.doc.undo_stack.undo()
    assert win.doc.graph.block_names() == {"stage2": STAGE}
    check_mirror(win)


def menu_texts(scene, item):
    menu = scene.context_menu(item)                     # kept while its actions are read
    return [a.text() for a in menu.actions()]


def test_context_menus_offer_the_block_actions(win):
    win.scene.select(STAGE)
    texts = menu_texts(win.scene, win.scene.nodes["conv2"])
    assert "Group as block" in texts
    G.group(win.doc, STAGE, "stage2")
    texts = menu_texts(win.scene, win.scene.folds.items["stage2"])
    assert texts[:4] == ["Unfold", "Rename block…", "Ungroup", "Save block to palette…"]
    G.set_folded(win.doc, "stage2", False)
    texts = menu_texts(win.scene, win.scene.nodes["bn2"])
    assert "Fold block 'stage2'" in texts and "Ungroup 'stage2'" in texts


def test_dragging_a_folded_block_moves_its_layers_in_one_step(win, qtbot):
    G.group(win.doc, STAGE, "stage2")
    before = {n: win.doc.pos(n) for n in STAGE}
    it = win.scene.folds.items["stage2"]
    it.setPos(it.pos() + QPointF(50, 120))
    win.scene.commit_moves()
    assert all(win.doc.pos(n) == (x + 50, y + 120) for n, (x, y) in before.items())
    check_mirror(win)
    win.doc.undo_stack.undo()
    assert {n: win.doc.pos(n) for n in STAGE} == before
    assert it.pos() == it.origin
    check_mirror(win)


def test_deleting_a_folded_block_deletes_its_layers_and_undo_brings_it_back_folded(win):
    G.group(win.doc, STAGE, "stage2")
    win.scene.select(["conv2"])                         # a hidden layer: its block is selected
    assert win.scene.folds.items["stage2"].isSelected()
    assert sorted(win.scene.selected_names()) == sorted(STAGE)
    win.scene.delete_selected()
    assert not any(n in win.doc.graph.nodes for n in STAGE) and not win.scene.folds.items
    win.doc.undo_stack.undo()
    assert win.doc.graph.block_names() == {"stage2": STAGE} and "stage2" in win.scene.folds.items
    check_mirror(win)


def test_save_block_to_palette_then_insert_it_as_one_step(win, tmp_path):
    G.group(win.doc, STAGE, "stage2")
    my_blocks.save_block(win.doc, "stage2", "Conv stage")
    saved = json.loads((tmp_path / "my-blocks.json").read_text())
    assert saved["format"] == "layerboard-blocks" and saved["blocks"][0]["title"] == "Conv stage"
    assert [n["type"] for n in saved["blocks"][0]["nodes"]] == ["Conv2D", "BatchNorm", "ReLU", "MaxPool2D"]
    win.palette.tree.populate()
    tree = win.palette.tree
    group = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount())
                 if tree.topLevelItem(i).text(0) == "My blocks")
    assert group.child(0).text(0) == "Conv stage"
    before, n = state(win), win.doc.undo_stack.count()
    win.scene.select(["pool1"])                         # feeds the inserted block
    win.palette.add_requested.emit(group.child(0).data(0, Qt.ItemDataRole.UserRole))
    assert win.doc.undo_stack.count() == n + 1
    g = win.doc.graph
    new = [b for b in g.block_names() if b != "stage2"]
    assert new == ["Conv_stage"] and g.blocks["Conv_stage"]["folded"]
    members = g.members("Conv_stage")
    assert [g.nodes[m].type for m in members] == ["Conv2D", "BatchNorm", "ReLU", "MaxPool2D"]
    assert g.inputs_of(members[0]) == ["pool1"]
    assert win.doc.infos[members[-1]].shape == win.doc.infos["pool2"].shape
    check_mirror(win)
    win.doc.undo_stack.undo()
    assert state(win) == before
    check_mirror(win)
    win.doc.undo_stack.redo()
    assert "Conv_stage" in win.doc.graph.block_names()


def test_a_block_saves_and_opens_with_the_project(win, tmp_path):
    G.group(win.doc, STAGE, "stage2")
    G.group(win.doc, ["fc", "relu3"], "head", fold=False)
    win.doc.save(tmp_path / "p.json")
    w2 = MainWindow(autosave_dir=tempfile.mkdtemp(), training=False)
    w2.maybe_save = lambda: True
    try:
        w2.open_path(tmp_path / "p.json")
        assert w2.doc.graph.block_names() == {"stage2": STAGE, "head": ["fc", "relu3"]}
        assert w2.doc.graph.blocks["stage2"]["folded"] and not w2.doc.graph.blocks["head"]["folded"]
        check_mirror(w2)
        assert Project.load(tmp_path / "p.json").to_dict() == win.doc.project.to_dict()
    finally:
        w2.close()


def test_undo_of_a_block_edit_whose_layers_are_gone_does_not_raise(win):
    cmd = G.BlockEdit(win.doc, "x", ({"nope": None}, {"b": None}), ({"nope": "b"}, {"b": {"folded": True}}))
    errors = []
    win.doc.error.connect(errors.append)
    win.doc.undo_stack.push(cmd)
    win.doc.undo_stack.undo()
    assert errors == [] and win.doc.graph.block_names() == {}


def test_screenshot_folded_and_open(win, tmp_path):
    G.group(win.doc, STAGE, "stage2")
    win.view.zoom_to_fit()
    folded = win.view.grab()
    folded.save(str(tmp_path / "folded.png"))
    G.set_folded(win.doc, "stage2", False)
    opened = win.view.grab()
    opened.save(str(tmp_path / "open.png"))
    assert folded.toImage() != opened.toImage()
    assert isinstance(win.scene.folds.items.get("stage2"), (BlockItem, type(None)))
