"""ONNX models in the window: File ▸ Open and a drop import them in a thread as untitled projects with their
weights, a failure lists every unmapped node and keeps the document; layout, minimap, find-a-layer, Zoom to fit."""
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import (QCoreApplication, QMimeData, QPoint, QPointF, QSettings, QStandardPaths, Qt,  # noqa: E402
                            QUrl)
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox  # noqa: E402

from conftest import HANG_MS  # noqa: E402
from engine.graph import Graph  # noqa: E402
from engine.project import Project  # noqa: E402
from gui import importer  # noqa: E402
from gui.layout import NODE_H, NODE_W, choose, layered  # noqa: E402
from gui.mainwindow import MainWindow, default_example  # noqa: E402
from gui.view import READABLE  # noqa: E402


def cnn_model(blocks=12, c=4, hw=8, extra=None):
    """A residual CNN as ONNX (Conv/Relu/Add blocks, global pool, Gemm): 65 layers once imported with 12 blocks.
    extra="topk": a TopK after the Gemm, which nothing maps (kept as an OnnxNode); "outer": an Einsum of two
    computed tensors, which cannot be kept either."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def conv(name, x, y, cin, cout):
        W = (rng.normal(size=(cout, cin, 3, 3)) * 0.3).astype(np.float32)
        inits.append(numpy_helper.from_array(W, f"{name}.W"))
        inits.append(numpy_helper.from_array(rng.normal(size=(cout,)).astype(np.float32) * 0.1, f"{name}.b"))
        nodes.append(helper.make_node("Conv", [x, f"{name}.W", f"{name}.b"], [y], name=name, kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))

    def op(kind, ins, out, name):
        nodes.append(helper.make_node(kind, ins, [out], name=name))
    conv("stem", "x", "s0", 3, c)
    op("Relu", ["s0"], "h0", "stem_relu")
    for i in range(blocks):
        h = f"h{i}"
        conv(f"b{i}_conv1", h, f"b{i}_a", c, c)
        op("Relu", [f"b{i}_a"], f"b{i}_r", f"b{i}_relu1")
        conv(f"b{i}_conv2", f"b{i}_r", f"b{i}_c", c, c)
        op("Add", [f"b{i}_c", h], f"b{i}_s", f"b{i}_add")
        op("Relu", [f"b{i}_s"], f"h{i + 1}", f"b{i}_relu2")
    op("GlobalAveragePool", [f"h{blocks}"], "g", "pool")
    nodes.append(helper.make_node("Flatten", ["g"], ["f"], name="flat", axis=1))
    inits += [numpy_helper.from_array(rng.normal(size=(5, c)).astype(np.float32), "fc.W"),
              numpy_helper.from_array(rng.normal(size=(5,)).astype(np.float32), "fc.b")]
    nodes.append(helper.make_node("Gemm", ["f", "fc.W", "fc.b"], ["y"], name="fc", transB=1))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])
    if extra == "topk":
        inits.append(numpy_helper.from_array(np.array([2], np.int64), "k"))
        nodes.append(helper.make_node("TopK", ["y", "k"], ["top", "idx"], name="best two"))
        nodes.append(helper.make_node("Einsum", ["top", "top"], ["sq"], name="square", equation="ni,ni->ni"))
        out = helper.make_tensor_value_info("sq", TensorProto.FLOAT, ["n", 2])
    if extra == "outer":
        nodes.append(helper.make_node("Einsum", ["y", "f"], ["o"], name="outer", equation="ni,nj->nij"))
        out = helper.make_tensor_value_info("o", TensorProto.FLOAT, ["n", 5, c])
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, hw, hw])],
                          [out], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def onnx_file(tmp_path):
    onnx = pytest.importorskip("onnx")

    def make(name="cnn.onnx", **kw):
        f = tmp_path / name
        onnx.save(cnn_model(**kw), str(f))
        return f
    return make


@pytest.fixture
def isolated(qapp, tmp_path, monkeypatch):
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QCoreApplication.setOrganizationName("LayerboardOnnxTest")
    QCoreApplication.setApplicationName("LayerboardOnnxTest")
    asked = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: asked.append((title, text)))
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[1:3]) or QMessageBox.StandardButton.Discard)
    return asked


@pytest.fixture
def window(isolated, qtbot, tmp_path):
    w = MainWindow(autosave_dir=tmp_path / "data", training=False)
    qtbot.addWidget(w)
    w.resize(1360, 820)
    w.show()
    qtbot.waitExposed(w)
    assert w.open_path(default_example(), template=True)
    return w


def wait_import(qtbot, w):
    qtbot.waitUntil(lambda: w.importer.running is None, timeout=HANG_MS)


def shown(doc):
    """Positions of what the canvas shows: layers, and each folded block as one node (at its first layer)."""
    g = doc.graph
    fold = {b: ms for b, ms in g.block_names().items() if g.blocks[b]["folded"]}
    hidden = {n for ms in fold.values() for n in ms}
    return {**{n: doc.pos(n) for n in g.nodes if n not in hidden}, **{b: doc.pos(ms[0]) for b, ms in fold.items()}}


def overlaps(pos):
    items = sorted(pos.items(), key=lambda t: t[1][0])
    bad = []
    for i, (a, (xa, ya)) in enumerate(items):
        for b, (xb, yb) in items[i + 1:]:
            if xb - xa >= NODE_W:
                break
            if abs(ya - yb) < NODE_H:
                bad.append((a, b))
    return bad


def test_open_by_the_menu_imports_in_a_thread_with_the_weights(window, qtbot, onnx_file, tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    f = onnx_file()
    seen = {}
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a: seen.setdefault("filter", a[3]) and (str(f), ""))
    real = importer.load_onnx
    monkeypatch.setattr(importer, "load_onnx",
                        lambda *a: seen.setdefault("thread", threading.current_thread()) and real(*a))
    window.doc.add_node("ReLU", name="mine")
    window.open_dialog()                                  # the menu's slot, with the file dialog answered
    assert "*.onnx" in seen["filter"]
    wait_import(qtbot, window)
    assert seen["thread"] is not threading.main_thread()
    doc = window.doc
    assert len(doc.graph.nodes) == 65 and "mine" not in doc.graph.nodes
    assert doc.project.path is None and window.windowTitle().startswith("untitled") and not doc.dirty
    assert doc.undo_stack.count() == 0 and window.untitled_name == "cnn.json"
    assert doc.trained is not None and doc.trained_fits()
    assert not any(i.error for n, i in doc.infos.items() if doc.graph.nodes[n].type != "Input")
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8)).astype(np.float32)
    s = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    want = s.run(None, {"x": x})[0]
    assert np.abs(doc.trained.predict(x) - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    g = doc.graph
    assert g.block_names() and all(g.blocks[b]["folded"] for b in g.block_names())      # residual blocks folded
    assert not overlaps(shown(doc))
    assert all((it.pos().x(), it.pos().y()) == doc.pos(n) for n, it in window.scene.nodes.items())
    assert all("pos" not in v.meta for v in doc.graph.nodes.values())
    assert window.view.transform().m11() >= READABLE - 1e-9       # never shrunk below readable
    inp = window.scene.nodes["x"].sceneBoundingRect()
    assert window.view.mapToScene(window.view.viewport().rect()).boundingRect().contains(inp)   # starts at the input
    assert str(f.resolve()) == window.recent()[0]
    assert window._save_to(tmp_path / "cnn.json")                  # Save writes the weights beside the project
    assert (tmp_path / "cnn.weights.safetensors").exists()
    assert window.open_path(tmp_path / "cnn.json")
    assert np.abs(window.doc.trained.predict(x) - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_undo_and_redo_after_an_import(window, qtbot, onnx_file):
    assert window.open_path(onnx_file())
    wait_import(qtbot, window)
    doc, st = window.doc, window.doc.undo_stack
    st.undo()                                           # nothing to undo: the import is no edit
    before = doc.graph.to_dict()
    conv = next(n for n, v in doc.graph.nodes.items() if v.type == "Conv2D")
    doc.set_hparam(conv, "filters", 7)
    window.auto_layout(True)
    assert st.count() == 2
    for _ in range(2):
        st.undo()
    assert doc.graph.to_dict() == before and not doc.dirty
    st.redo()
    st.redo()
    assert doc.graph.nodes[conv].config["filters"] == 7 and window.scene.vertical
    assert all((it.pos().x(), it.pos().y()) == doc.pos(n) for n, it in window.scene.nodes.items())
    assert not overlaps(shown(doc))
    st.undo()
    st.undo()
    assert doc.graph.to_dict() == before


def test_a_drop_of_an_onnx_or_json_file_opens_it(window, qtbot, onnx_file, tmp_path):
    f = onnx_file()
    view = window.view.viewport()

    def drag(path):
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(view, enter)               # over the canvas: it passes the file to the window
        drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                          Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(window, drop)
        return enter.isAccepted(), drop.isAccepted(), mime

    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    ok, dropped, _ = drag(txt)
    assert not ok and not dropped
    ok, dropped, _ = drag(f)
    assert ok and dropped
    qtbot.waitUntil(lambda: len(window.doc.graph.nodes) == 65 and window.importer.running is None, timeout=HANG_MS)
    assert window.doc.trained is not None and window.doc.project.path is None
    p = Project(graph=Graph.from_dict({"nodes": [{"name": "inp", "type": "Input", "config": {"shape": [3]}}],
                                       "edges": []}))
    p.save(tmp_path / "small.json")
    assert drag(tmp_path / "small.json")[:2] == (True, True)
    qtbot.waitUntil(lambda: list(window.doc.graph.nodes) == ["inp"], timeout=HANG_MS)
    assert window.doc.project.path == tmp_path / "small.json"


def test_a_failed_import_lists_every_node_and_keeps_the_document(window, qtbot, onnx_file, tmp_path):
    doc = window.doc
    doc.add_node("ReLU", name="kept")
    before, count = doc.graph.to_dict(), doc.undo_stack.count()
    assert window.open_path(onnx_file("outer.onnx", extra="outer"))
    wait_import(qtbot, window)
    d = window.importer.dialog
    assert d is not None and d.isVisible() and "outer.onnx" in d.windowTitle()
    why = ("Layerboard has no layer for this operator yet; it cannot be kept as an ONNX node either: it reads 2 "
           "tensors computed by the model (a kept ONNX node reads one)")
    assert d.rows() == [("Einsum", "outer", why)]
    assert "1 node(s)" in d.label.text() and "unchanged" in d.label.text()
    d.copy()
    first = QApplication.clipboard().text().splitlines()[0]
    assert first == f"Einsum\touter\t{why}"
    d.reject()
    assert doc.graph.to_dict() == before and doc.undo_stack.count() == count and doc.dirty
    doc.undo_stack.undo()                               # the edit before the import still undoes
    assert "kept" not in doc.graph.nodes
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    assert window.open_path(bad)
    wait_import(qtbot, window)
    d = window.importer.dialog
    assert not d.rows() and d.table.isHidden() and "bad.onnx" in d.label.text() and "\n" not in d.label.text()
    assert window.statusBar().currentMessage() == "" and window.importer.busy.isHidden()


def test_an_edit_made_while_importing_is_not_lost(window, qtbot, onnx_file, isolated, monkeypatch):
    gate = threading.Event()
    real = importer.load_onnx
    monkeypatch.setattr(importer, "load_onnx", lambda *a: gate.wait(HANG_MS / 1000) and real(*a))
    window.doc.undo_stack.setClean()
    assert window.open_path(onnx_file())
    assert window.importer.busy.isVisible() and "importing cnn.onnx" in window.statusBar().currentMessage()
    window.doc.add_node("ReLU", name="typed meanwhile")          # the window stays usable while it imports
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Cancel)
    gate.set()
    wait_import(qtbot, window)
    assert "typed meanwhile" in window.doc.graph.nodes            # the user cancelled: the import is dropped
    assert "edited while it was imported" in window.statusBar().currentMessage()


def test_layout_lines_nodes_up_and_never_overlaps():
    rng = np.random.default_rng(3)
    for trial in range(20):                               # random DAGs with merges and branches
        g = Graph()
        g.add_node("Input", "x", {"shape": [4]})
        names = ["x"]
        for i in range(int(rng.integers(5, 80))):
            if rng.random() < 0.3 and len(names) > 2:
                n = g.add_node("Add", f"a{i}").name
                for s in rng.choice(names, 2, replace=False):
                    g.connect(str(s), n)
            else:
                n = g.add_node("ReLU", f"r{i}").name
                g.connect(str(names[int(rng.integers(max(0, len(names) - 4), len(names)))]), n)
            names.append(n)
        for vertical in (False, True):
            for wrap in (None, 3):
                pos = layered(g, vertical, wrap=wrap)
                assert set(pos) == set(g.nodes) and not overlaps(pos), (trial, vertical, wrap)
    g = Graph()
    g.add_node("Input", "x", {"shape": [4]})
    prev = "x"
    for i in range(30):
        g.add_node("ReLU", f"r{i}")
        g.connect(prev, f"r{i}")
        prev = f"r{i}"
    pos = layered(g, False)
    assert len({y for _, y in pos.values()}) == 1                      # a chain is one straight row
    vertical, wrap, _ = choose(g, 900, 400, READABLE)
    assert not vertical and wrap * (NODE_W + 60) * READABLE <= 900 + 60    # rows as wide as the canvas shows
    wide = Graph()
    wide.add_node("Input", "x", {"shape": [4]})
    wide.add_node("Concatenate", "cat")
    for i in range(16):
        wide.add_node("ReLU", f"r{i}")
        wide.connect("x", f"r{i}")
        wide.connect(f"r{i}", "cat", i)
    assert choose(wide, 1400, 500, READABLE)[0]                        # wide and shallow: flows downwards


def test_the_layout_is_qt_free():
    code = ("import sys; from engine.graph import Graph; from gui.layout import choose, layered; "
            "g = Graph(); g.add_node('Input', 'x', {'shape': [2]}); layered(g); choose(g, 800, 600, 0.75); "
            "print([m for m in sys.modules if m.startswith('PySide6')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_minimap_find_and_zoom_to_fit_on_a_big_graph(window, qtbot, onnx_file, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "fold_and_place", importer.place)    # every layer shown: a graph bigger than the view
    view = window.view
    view.zoom_to_fit()                                   # the small example: whole, no minimap
    qtbot.waitUntil(lambda: view.minimap.bounds.width() > 0, timeout=HANG_MS)
    assert not view.minimap.isVisible()
    assert window.open_path(onnx_file())
    wait_import(qtbot, window)
    mm = view.minimap
    qtbot.waitUntil(lambda: mm.isVisible(), timeout=HANG_MS)
    assert abs(view.transform().m11() - READABLE) < 1e-9
    vp = view.viewport().geometry()
    assert vp.contains(mm.geometry()) and mm.width() <= vp.width() * 0.3
    before = mm.visible_rect().center()
    hs, vs = view.horizontalScrollBar(), view.verticalScrollBar()
    across = hs.maximum() - hs.value() > vs.maximum() - vs.value()      # the graph goes on to the right, else down
    target = QPointF(mm.width() - 10, mm.height() / 2) if across else QPointF(mm.width() / 2, mm.height() - 10)
    QTest.mouseClick(mm, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, target.toPoint())
    after = mm.visible_rect().center()
    moved = after - before
    assert (moved.x() if across else moved.y()) > 100    # the canvas moved towards the clicked place
    window.minimap_action.trigger()                      # View ▸ Minimap off
    assert not mm.isVisible()
    window.minimap_action.trigger()
    assert mm.isVisible()
    img = window.grab()
    assert img.save(str(tmp_path / "imported.png"))
    # find a layer: Ctrl+F lists, filters as one types, Enter centres and selects
    act = next(a for a in window.findChildren(type(window.minimap_action)) if a.text() == "&Find a layer…")
    assert act.shortcut().toString() == "Ctrl+F"
    act.trigger()
    finder = view.finder
    assert finder.isVisible() and finder.model.rowCount() == len(window.doc.graph.nodes)
    nodes = window.doc.graph.nodes
    assert finder.matches("B3_") == ["b3_conv1", "b3_relu1", "b3_conv2", "b3_add", "b3_relu2"]   # any case
    assert finder.matches("conv2d") == [n for n, v in nodes.items() if v.type == "Conv2D"]      # by type too
    assert finder.matches("no such layer") == []
    view.zoom(0.3)
    QTest.keyClicks(finder, "b11_conv1")
    QTest.keyClick(finder, Qt.Key.Key_Return)
    assert window.scene.selected_names() == ["b11_conv1"] and not finder.isVisible()
    assert view.transform().m11() >= READABLE - 1e-9
    shown = view.mapToScene(view.viewport().rect()).boundingRect()
    assert shown.contains(window.scene.nodes["b11_conv1"].sceneBoundingRect().center())
    finder.open()
    QTest.keyClick(finder, Qt.Key.Key_Escape)
    assert not finder.isVisible()


def test_no_import_while_training_locks_the_model(window, qtbot, onnx_file):
    before = window.doc.graph.to_dict()
    window.doc.set_locked(True)
    assert not window.open_path(onnx_file())
    assert window.importer.running is None and "stop the training run" in window.statusBar().currentMessage()
    window.doc.set_locked(False)
    assert window.doc.graph.to_dict() == before


def test_a_project_written_by_layerboard_import_opens_laid_out(window, onnx_file, tmp_path):
    from engine.cli import main as cli
    assert cli(["import", str(onnx_file()), "-o", str(tmp_path / "p.json")]) == 0
    assert window.open_path(tmp_path / "p.json")
    doc = window.doc
    pos = shown(doc)                                      # repeated residual blocks are folded
    assert len(doc.graph.nodes) == 65 and not overlaps(pos) and len(set(pos.values())) == len(pos)
    assert doc.trained is not None and doc.trained_fits() and doc.project.path == tmp_path / "p.json"
    assert all((it.pos().x(), it.pos().y()) == doc.pos(n) for n, it in window.scene.nodes.items())


def test_an_imported_model_asks_for_data_and_its_input_shows_no_error(isolated, qtbot, onnx_file, tmp_path):
    """Not the default xor set (whose (2,) samples would mark the Input): a placeholder naming the Input's shape."""
    w = MainWindow(autosave_dir=tmp_path / "data", training=True)
    qtbot.addWidget(w)
    w.show()
    assert w.open_path(default_example(), template=True)
    assert w.open_path(onnx_file())
    wait_import(qtbot, w)
    doc = w.doc
    assert doc.project.dataset == {"kind": "none", "input": [3, 8, 8]}
    panel = w.training.data
    assert panel.dataset is None
    assert "Choose data for a (3, 8, 8) input" in panel.info.text() and "#b00" not in panel.info.text()
    assert not any(i.error for i in doc.infos.values())
    msg = w.training.message.text()                         # imported weights: no run made them
    assert "no run recorded yet" in msg and "last run" not in msg
    panel.use_builtin("moons")                              # choosing data then checks the model against it
    qtbot.waitUntil(lambda: panel.dataset is not None, timeout=HANG_MS)
    assert doc.infos["x"].error and "(2,)" in doc.infos["x"].error
    doc.undo_stack.undo()
    qtbot.waitUntil(lambda: not doc.infos["x"].error, timeout=HANG_MS)
    assert "Choose data for a (3, 8, 8) input" in panel.info.text()


def test_an_unmapped_node_opens_as_a_marked_onnx_node(window, qtbot, onnx_file, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    f = onnx_file("topk.onnx", extra="topk")
    assert window.open_path(f)
    wait_import(qtbot, window)
    doc = window.doc
    assert window.importer.dialog is None
    kept = [n for n, v in doc.graph.nodes.items() if v.type == "OnnxNode"]
    assert kept == ["best two"] and doc.graph.nodes["best two"].config["op"] == "TopK → Einsum"
    msg = window.statusBar().currentMessage()
    assert "1 ONNX node(s) kept as they are (TopK 'best two')" in msg or "2 ONNX node(s) kept" in msg
    assert "not trainable" in msg
    assert not any(i.error for i in doc.infos.values())
    item = window.scene.nodes["best two"]
    assert item.tooltip_text().startswith("ONNX TopK → Einsum, runs in onnxruntime, not trainable")
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8)).astype(np.float32)
    s = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    want = s.run(None, {"x": x})[0]
    assert np.abs(doc.trained.predict(x) - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    window.view.centerOn(item)
    window.view.viewport().grab().save(str(tmp_path / "onnx_node.png"))
    import shutil
    shutil.copy(tmp_path / "onnx_node.png", "/tmp/import2_onnx_node.png")


def test_training_an_imported_model_says_which_layers_are_frozen(isolated, qtbot, onnx_file, tmp_path):
    w = MainWindow(autosave_dir=tmp_path / "data", training=True)
    qtbot.addWidget(w)
    w.show()
    assert w.open_path(onnx_file("topk.onnx", extra="topk"))
    wait_import(qtbot, w)
    w.training.start()                                   # no data yet: the run ends with the placeholder's line
    assert "layers before 'best two' are frozen: an ONNX node has no gradient" in w.training.message.text()
    qtbot.waitUntil(lambda: not w.training.running, timeout=HANG_MS)
    qtbot.waitUntil(lambda: "choose data for a (3, 8, 8) input" in w.training.message.text(), timeout=HANG_MS)
