"""Every number explained: Layer.formulas with the node's numbers, tooltips on nodes and in the summary, Help text."""
import re

import pytest

from engine.graph import Graph
from engine.layers import REGISTRY, create
from engine.project import Project
from engine.shapes import infer
from gradcheck import build


def conv_graph():
    g = Graph()
    g.chain(("img", "Input", {"shape": [1, 28, 28]}), ("conv", "Conv2D", {"filters": 16, "kernel_size": [3]}),
            ("bn", "BatchNorm", {}), ("relu", "ReLU", {}), ("pool", "MaxPool2D", {}),
            ("conv2", "Conv2D", {"filters": 8, "kernel_size": [3]}), ("flat", "Flatten", {}),
            ("fc", "Dense", {"units": 10}), ("soft", "Softmax", {}))
    return g


def test_conv2d_formulas_carry_the_nodes_numbers():
    f = create("Conv2D", "c", {"filters": 16}).formulas([(1, 28, 28)])
    assert f["params"] == "C_out·C_in·K_h·K_w + C_out = 16·1·3·3 + 16 = 160"
    assert "⌊(28 + 2·0 − 3)/1⌋ + 1 = 26" in f["shape"] and f["shape"].endswith("(16, 26, 26)")
    assert f["macs"] == "C_out·H_out·W_out·C_in·K_h·K_w = 16·26·26·1·3·3 = 97,344"
    assert create("Dense", "d", {"units": 16}).formulas([(2,)])["params"] == "F_in·units + units = 2·16 + 16 = 48"
    assert "2·C = 2·16 = 32" in create("BatchNorm", "b", {}).formulas([(16, 26, 26)])["params"]


def _arithmetic(line):
    """(value of the expression with the node's numbers, the stated result) of "… = 4·3 + 3 = 15", or None when
    the line has no numeric expression (e.g. "no trainable parameters = 0")."""
    parts = line.split(" = ")
    result = int(re.match(r"[\d,]+", parts[-1]).group().replace(",", ""))
    expr = parts[-2] if len(parts) >= 2 else ""
    if not re.fullmatch(r"[\d,·+−²() ]+", expr) or not re.search(r"[·+−²]", expr):
        return None
    return eval(expr.replace(",", "").replace("·", "*").replace("−", "-").replace("²", "**2")), result


@pytest.mark.parametrize("type", sorted(REGISTRY))
def test_every_layers_formulas_compute_their_result_and_count_the_built_weights(type):
    """The formula's arithmetic gives its stated result; the params result is the size of the trainable arrays
    the layer builds, the shape its forward output's shape."""
    for c, s, *o in REGISTRY[type].samples():
        layer = create(type, "x", c)
        f = layer.formulas(s)
        assert set(f) >= {"shape", "params", "macs"}
        for k in ("params", "macs"):
            got = _arithmetic(f[k])
            if got is not None:
                assert got[0] == got[1], (type, k, f[k])
        stated = int(re.match(r"[\d,]+", f["params"].split(" = ")[-1]).group().replace(",", ""))
        built = build(type, c, s)
        trainable = {k for k, p in built.params(built.in_shapes).items() if p.trainable}
        assert stated == sum(v.size for k, v in built.p.items() if k in trainable), (type, f["params"])
        out = tuple(layer.compute_output_shape(s))
        assert f["shape"].replace(" ", "").endswith(str(out).replace(" ", "")) or str(out).replace(" ", "") in f["shape"].replace(" ", "")


def test_rnn_formulas_match_the_spec_counts():
    """h_t = tanh(W h_{t−1} + U x_t + b): H·D + H·H + H weights (+ H for a learned h_0), T·(H·D + H·H) MACs."""
    for T, D, H, h0 in ((4, 2, 3, False), (50, 8, 64, False), (7, 5, 6, True)):
        f = create("RNN", "r", {"units": H, "learn_h0": h0}).formulas([(T, D)])
        params, macs = H * D + H * H + H + (H if h0 else 0), T * (H * D + H * H)
        assert f["params"].endswith(f"= {params:,}") and f["macs"].endswith(f"= {macs:,}"), f
        assert _arithmetic(f["params"]) == (params, params) and _arithmetic(f["macs"]) == (macs, macs)


def test_tooltips_on_the_node_and_in_the_summary_show_the_formulas(qtbot):
    from gui.mainwindow import MainWindow
    w = MainWindow(training=False)
    qtbot.addWidget(w)
    w.doc.load(Project(conv_graph()))
    tip = w.scene.nodes["conv"].tooltip_text()
    assert "C_out·C_in·K_h·K_w + C_out = 16·1·3·3 + 16 = 160" in tip
    assert "16·26·26·1·3·3 = 97,344" in tip and "⌊(28 + 2·0 − 3)/1⌋ + 1 = 26" in tip
    assert "r = r_in + (K − 1)·j_in = 1 + (3 − 1)·1 = 3" in tip
    t2 = w.scene.nodes["conv2"].tooltip_text()                    # after a 2×2 / 2 pooling: stride 2, field 4
    assert "4 + (3 − 1)·2 = 8" in t2 and "j = j_in·S = 2·1 = 2" in t2
    m = w.summary.model
    row = [m.name(r) for r in range(m.rowCount())].index("conv")
    col = m.head.index("params")
    from PySide6.QtCore import Qt
    assert m.data(m.index(row, col), Qt.ItemDataRole.ToolTipRole).endswith("16·1·3·3 + 16 = 160")
    assert "97,344" in m.data(m.index(row, m.head.index("MACs")), Qt.ItemDataRole.ToolTipRole)
    assert "= 3 (height)" in m.data(m.index(row, m.head.index("receptive field")), Qt.ItemDataRole.ToolTipRole)


def test_help_formulas_lists_them_in_the_apps_words(qtbot):
    from gui.summary import formulas_html
    h = formulas_html()
    for s in ("C_out·C_in·K_h·K_w + C_out", "r = r_in + (K − 1)·j_in", "j = j_in·S", "EVR_k", "R² = 1 −", "log p"):
        assert s in h
    assert "spec §" not in h


def test_the_infos_agree_with_the_formulas():
    infos = infer(conv_graph())
    assert infos["conv"].params == 160 and infos["conv"].macs == 97344 and infos["conv2"].field == (8, 8)


def test_no_user_visible_text_cites_the_spec():
    """Layer docs, hyperparameter docs, training setting docs, example descriptions and the GUI sources."""
    import json
    from pathlib import Path

    from engine.project import TRAINING
    root = Path(__file__).resolve().parent.parent
    texts = {f"{t} doc": cls.doc for t, cls in REGISTRY.items()}
    texts.update({f"{t}.{h.name}": h.doc for t, cls in REGISTRY.items() for h in cls.hparams})
    texts.update({f"training.{h.name}": h.doc for h in TRAINING})
    for p in (root / "resources" / "examples").glob("*.json"):
        texts[p.name] = json.loads(p.read_text(encoding="utf-8")).get("description", "")
    for p in (root / "gui").rglob("*.py"):
        texts[str(p.relative_to(root))] = p.read_text(encoding="utf-8")
    bad = [k for k, v in texts.items() if "spec §" in v.lower() or "spec's" in v.lower()]
    assert not bad, bad
