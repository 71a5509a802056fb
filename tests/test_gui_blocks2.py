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
from test_gui_canvas import drag_between
from test_gui_layout import isolated  # noqa: F401  (a fixture: settings of its own)


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


def test_a_run_switching_to_train_is_not_remembered_but_the_users_choice_is(isolated, qtbot):
    from PySide6.QtCore import QSettings

    def launch():
        w = MainWindow(autosave_dir=isolated / "data", remember=True)
        w.maybe_save = lambda: True
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        return w
    w = launch()
    assert w.modes.mode == "build" and not w.training.isVisible()
    qtbot.waitUntil(lambda: w.view.height() >= w.height() / 2)              # the canvas gets the room
    w.grab().save(str(tempfile.gettempdir() + "/blocks2_build.png"))
    w.doc.set_locked(True)                                                  # a run starts: Train, this session
    assert w.modes.mode == "train" and w.training.isVisible()
    w.doc.set_locked(False)
    assert QSettings().value("window/mode") is None                        # … not a choice to remember
    w.close()
    w2 = launch()                                                           # no run at launch: Build again
    assert w2.modes.mode == "build" and not w2.training.isVisible()
    w2.modes.actions["train"].trigger()                                     # the user's choice is kept
    w2.close()
    w3 = launch()
    assert w3.modes.mode == "train" and w3.training.isVisible()
    w4 = MainWindow(autosave_dir=isolated / "data")                         # a window that keeps no layout: Build
    qtbot.addWidget(w4)
    assert w4.modes.mode == "build" and w4.training.isHidden()


# ---- 1. unfolding on a wrapped imported layout overlaps nothing ----
def boxes(w):
    """(name, rect) of every node the canvas shows: layers and folded blocks, each NODE_W × NODE_H."""
    from PySide6.QtCore import QRectF

    from gui.layout import NODE_H, NODE_W
    sc = w.scene
    shown = [(n, it.pos()) for n, it in sc.nodes.items() if it.isVisible()]
    shown += [(b, it.pos()) for b, it in sc.folds.items.items()]
    return [(n, QRectF(p.x(), p.y(), NODE_W, NODE_H)) for n, p in shown]


def overlaps(w):
    b = boxes(w)
    return [(p, q) for i, (p, r) in enumerate(b) for q, s in b[i + 1:] if r.intersects(s)]


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from test_onnx_import import resnet18
    f = tmp_path_factory.mktemp("r18") / "r18.onnx"
    torch.onnx.export(resnet18(torch, width=8).eval(), (torch.randn(1, 3, 32, 32),), str(f), dynamo=False,
                      input_names=["x"], opset_version=17)
    return f


def open_folded(w, f):
    from gui.importer import load_onnx
    project, model, vertical, _ = load_onnx(f, *w.importer.canvas())
    assert w._replace(project, model)
    w.scene.set_vertical(vertical)
    return vertical


@pytest.mark.parametrize("relayout", [None, False, True])
def test_unfolding_every_block_of_an_imported_resnet_overlaps_nothing_and_undoes(win, qtbot, resnet_onnx, relayout):
    vertical = open_folded(win, resnet_onnx)
    if relayout is not None:                      # View ▸ Auto-layout left → right / top → bottom (wrapped)
        win.auto_layout(relayout)
    g, doc = win.doc.graph, win.doc
    blocks = list(g.block_names())
    assert len(blocks) == 8 and all(G.folded(doc, b) for b in blocks)
    assert not overlaps(win)
    before = {n: doc.pos(n) for n in g.nodes}
    n0 = doc.undo_stack.count()
    for k, b in enumerate(blocks):
        G.set_folded(doc, b, False)
        assert doc.undo_stack.count() == n0 + k + 1                 # one undo step each
        assert not overlaps(win), (b, overlaps(win)[:3])
    frames = win.scene.folds.frames
    assert set(frames) == set(blocks)
    for b, fr in frames.items():                                   # no frame covers another block's layer
        assert not any(fr.rect.intersects(r) for n, r in boxes(win) if g.nodes[n].meta.get("block") != b), b
    if relayout is None:
        win.view.zoom_to_fit()
        win.grab().save(str(tempfile.gettempdir() + f"/blocks2_unfolded_{'v' if vertical else 'h'}.png"))
    for _ in blocks:
        doc.undo_stack.undo()
    assert {n: doc.pos(n) for n in g.nodes} == before and all(G.folded(doc, b) for b in blocks)
    assert not overlaps(win)
    for _ in blocks:
        doc.undo_stack.redo()
    assert not any(G.folded(doc, b) for b in blocks) and not overlaps(win)


# ---- 4. Ctrl+F on a layer hidden in a folded block opens the block ----
STAGE = ["conv2", "bn2", "relu2", "pool2"]


def test_find_a_layer_hidden_in_a_folded_block_unfolds_it_and_selects_the_layer(win, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QAction
    from PySide6.QtTest import QTest
    win.open_path(default_example(), template=True)
    doc, sc, view = win.doc, win.scene, win.view
    G.group(doc, STAGE, "stage2")
    assert not sc.nodes["bn2"].isVisible()
    n = doc.undo_stack.index()
    act = next(a for a in win.findChildren(QAction) if a.text() == "&Find a layer…")
    assert act.shortcut().toString() == "Ctrl+F"
    act.trigger()
    QTest.keyClicks(view.finder, "bn2")
    QTest.keyClick(view.finder, Qt.Key.Key_Return)
    assert not G.folded(doc, "stage2") and "stage2" not in sc.folds.items
    it = sc.nodes["bn2"]
    assert it.isVisible() and it.isSelected() and sc.selected_names() == ["bn2"]
    assert view.mapToScene(view.viewport().rect()).boundingRect().contains(it.sceneBoundingRect().center())
    assert doc.undo_stack.index() == n + 1 and doc.undo_stack.undoText() == "Unfold stage2"
    doc.undo_stack.undo()                                  # the block folds again
    assert G.folded(doc, "stage2") and not sc.nodes["bn2"].isVisible()
    act.trigger()                                          # a shown layer: nothing to open, no undo step
    QTest.keyClicks(view.finder, "conv1")
    QTest.keyClick(view.finder, Qt.Key.Key_Return)
    assert sc.selected_names() == ["conv1"] and doc.undo_stack.index() == n and doc.undo_stack.canRedo()


# ---- 3. a folded block's ports start and end connections ----
def residual():
    """x → d0 → r0 → [d1 → a1(r0, d1) → r1] → out, and a spare Dense 'side' fed by x."""
    g = Graph()
    g.chain(("x", "Input", {"shape": [8]}), ("d0", "Dense", {"units": 8}), ("r0", "ReLU", {}))
    g.chain(("d1", "Dense", {"units": 8}), after="r0")
    g.add_node("Add", "a1")
    g.connect("r0", "a1")
    g.connect("d1", "a1")
    g.chain(("r1", "ReLU", {}), ("out", "Dense", {"units": 2}), after="a1")
    g.chain(("side", "Dense", {"units": 8}), after="x")
    g.add_node("Dense", "free", {"units": 3})
    for k, n in enumerate(["x", "d0", "r0", "d1", "a1", "r1", "out"]):
        g.nodes[n].meta.update(x=40 + 240 * k, y=40)
    g.nodes["side"].meta.update(x=40, y=400)
    g.nodes["free"].meta.update(x=1500, y=400)
    return g


def test_a_folded_blocks_ports_start_and_end_connections_of_its_inner_layers(win, qtbot):
    from gui.block_item import BlockPort
    win.doc.load(Project(residual()))
    doc, sc, view = win.doc, win.scene, win.view
    G.group(doc, ["d1", "a1", "r1"], "unit")
    view.zoom_to_fit()
    it = sc.folds.items["unit"]
    ports = {(p.is_output, p.node.name): p for p in it.childItems() if isinstance(p, BlockPort)}
    assert set(ports) == {(False, "a1"), (True, "r1")}           # r0 feeds d1 and the Add: the Add can take more
    n = doc.undo_stack.index()
    # from the block's output port to a layer's input: the edge leaves the inner output layer
    drag_between(view, ports[True, "r1"].scenePos(), sc.nodes["free"].in_ports[0].scenePos())
    assert doc.graph.inputs_of("free") == ["r1"] and doc.undo_stack.index() == n + 1
    assert doc.undo_stack.undoText().startswith("Connect") and G.folded(doc, "unit")
    assert doc.infos["free"].shape == (3,) and "exactly one output" in doc.infos["free"].error   # it, side, out: ends
    # from a layer's output to the block's input port: the inner Add gets one more input
    drag_between(view, sc.nodes["side"].out_port.scenePos(), ports[False, "a1"].scenePos())
    assert doc.graph.inputs_of("a1") == ["r0", "d1", "side"] and doc.undo_stack.index() == n + 2
    assert it.inputs == ("r0", "side")                             # a port for the new edge
    ports = {(p.is_output, p.node.name, p.src): p for p in it.childItems() if isinstance(p, BlockPort)}
    assert (False, "a1", "side") in ports
    # starting at the block's input port, ending at a layer's output works too; a refusal says why
    doc.undo_stack.undo()
    assert doc.graph.inputs_of("a1") == ["r0", "d1"] and it.inputs == ("r0",)
    inp = next(p for p in it.childItems() if isinstance(p, BlockPort) and not p.is_output)
    drag_between(view, inp.scenePos(), sc.nodes["side"].out_port.scenePos())
    assert doc.graph.inputs_of("a1") == ["r0", "d1", "side"]
    before = doc.undo_stack.index()
    drag_between(view, sc.nodes["out"].out_port.scenePos(), inp.scenePos() if inp.scene() else
                 next(p for p in it.childItems() if isinstance(p, BlockPort) and not p.is_output).scenePos())
    assert doc.undo_stack.index() == before and "cycle" in win.statusBar().currentMessage()
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.graph.inputs_of("a1") == ["r0", "d1"] and doc.graph.inputs_of("free") == []
    doc.undo_stack.redo()
    assert doc.graph.inputs_of("free") == ["r1"]
    win.grab().save(str(tempfile.gettempdir() + "/blocks2_ports.png"))


# ---- 5. identical blocks are one nn.Module class in the PyTorch export ----
def load_module(src, tmp_path, name="Net"):
    import importlib.util
    f = tmp_path / "model.py"
    f.write_text(src)
    spec = importlib.util.spec_from_file_location(f"gen_blocks2_{abs(hash(str(tmp_path)))}", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def test_identical_blocks_of_an_imported_resnet_are_one_pytorch_class_with_weights_per_instance(resnet_onnx, tmp_path):
    import numpy as np
    torch = pytest.importorskip("torch")
    from engine.blocks import fold_repeated
    from engine.model import Model
    from engine.onnx_import import import_project
    from engine.shapes import infer
    from engine.torch_export import from_state_dict, model_source, state_dict
    g = import_project(resnet_onnx)[0].graph
    assert fold_repeated(g, infer(g)) == [f"block{k}" for k in range(1, 9)]
    m = Model(g, seed=5)
    src = model_source(m, "Net")
    classes = [line for line in src.splitlines() if line.startswith("class ") and "(nn.Module)" in line]
    # stage 1's two units are alike; each later stage opens with a downsampling unit, and its second unit has
    # other channel counts than any other stage's: 7 classes for 8 blocks
    assert len([c for c in classes if c.startswith("class Block")]) == 7
    assert src.count("self.block1 = Block1()") == 1 and src.count("self.block2 = Block1()") == 1
    assert "class Block2(" not in src and "Blocks 'block1', 'block2'" in src
    sd = state_dict(m)
    assert {"block1.c1_Conv.weight", "block2.c1_Conv.weight", "block2.c2_Conv.bias"} <= set(sd)   # per instance
    assert not np.array_equal(sd["block1.c1_Conv.weight"], sd["block2.c1_Conv.weight"])
    net = load_module(src, tmp_path)()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=True)
    net.eval()
    assert type(net.block1) is type(net.block2) and type(net.block3) is not type(net.block1)
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    want = m.predict(x)
    assert np.max(np.abs(got - want)) < 1e-4 * max(1.0, np.max(np.abs(want)))
    back = from_state_dict(m, sd)                                   # the shared class's names map back
    assert all(np.array_equal(back[k], v) for k, v in m.weights().items() if k in back)
    assert set(back) == {k for k in m.weights() if not k.startswith("__")}


def test_three_alike_dense_units_are_one_class_and_a_different_one_its_own():
    from engine.model import Model
    from engine.torch_export import model_source
    from engine.torch_export.codegen import paths
    from test_blocks import residual_net
    g = residual_net(units=4, width=8)
    g.nodes["d4"].config["units"] = 8
    g.nodes["d4"].config["use_bias"] = False                        # unit 4 differs in a setting
    for k in range(1, 5):
        for n in (f"d{k}", f"a{k}", f"r{k}"):
            g.nodes[n].meta["block"] = f"unit{k}"
        g.blocks[f"unit{k}"] = {"folded": True}
    m = Model(g)
    src = model_source(m, "Net")
    assert "class Unit1(nn.Module)" in src and "class Unit4(nn.Module)" in src
    assert "class Unit2(" not in src and "class Unit3(" not in src
    assert [src.count(f"self.unit{k} = Unit1()") for k in (1, 2, 3)] == [1, 1, 1]
    p = paths(m)
    assert p["d2"] == "unit2.dense" and p["d3"] == "unit3.dense" and p["d4"] == "unit4.d4"   # d2, d3: no common part
