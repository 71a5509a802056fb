"""The convolution family beyond the registry-wide checks: formulas with the node's numbers, masks of 1-D
convolutions on sequences against each sequence run alone in PyTorch, output sizes against PyTorch over a sweep,
one-click fixes that repair the graph, the fast and the general kernels agreeing, exported examples."""
import itertools

import numpy as np
import pytest

from engine import Graph
from engine.layers import REGISTRY, create
from engine.model import Model
from engine.project import Project
from engine.shapes import infer
from gradcheck import build, run
from registry_models import randomize
from resources import path


def net(*nodes):
    g = Graph()
    g.chain(*nodes)
    return g


# ---- formulas on hover ----
def test_conv1d_formulas_carry_the_nodes_numbers():
    f = create("Conv1D", "c", {"filters": 16, "kernel_size": [3], "dilation": [2], "padding": "explicit",
                               "pad": [1]}).formulas([(100, 4)])
    assert f["shape"] == ("L_out = ⌊(L + 2P − d·(K − 1) − 1)/S⌋ + 1 = ⌊(100 + 2·1 − 2·(3 − 1) − 1)/1⌋ + 1 = 98"
                          " → (98, 16)")
    assert f["params"] == "C_out·C_in·K + C_out = 16·4·3 + 16 = 208"
    assert f["macs"] == "C_out·L_out·C_in·K = 16·98·4·3 = 18,816"
    g = create("Conv2D", "g", {"filters": 8, "groups": 4, "use_bias": False}).formulas([(4, 6, 6)])
    assert g["params"] == "C_out·(C_in/g)·K_h·K_w = 8·(4/4)·3·3 = 72"
    assert g["macs"] == "C_out·H_out·W_out·(C_in/g)·K_h·K_w = 8·4·4·(4/4)·3·3 = 1,152"


def test_transpose_pool_and_upsample_formulas():
    t = create("ConvTranspose2D", "t", {"filters": 3, "kernel_size": [3], "stride": [2], "pad": [1],
                                        "output_padding": [1]}).formulas([(2, 4, 5)])
    assert "H_out = (H − 1)·S − 2P + d·(K − 1) + P_out + 1 = (4 − 1)·2 − 2·1 + 1·(3 − 1) + 1 + 1 = 8" in t["shape"]
    assert t["shape"].endswith("→ (3, 8, 10)") and t["params"] == "C_in·C_out·K_h·K_w + C_out = 2·3·3·3 + 3 = 57"
    p = create("MaxPool2D", "p", {"kernel_size": [3], "stride": [2], "ceil_mode": True}).formulas([(1, 6, 6)])
    assert "H_out = ⌈(H + 2P_h − K_h)/S_h⌉ + 1 = ⌈(6 + 2·0 − 3)/2⌉ + 1 = 3" in p["shape"]
    u = create("Upsample2D", "u", {"scale": [2, 3]}).formulas([(4, 5, 6)])
    assert u["shape"] == "H_out = S_h·H = 2·5 = 10; W_out = S_w·W = 3·6 = 18 → (4, 10, 18)"


def test_dilated_kernels_widen_the_receptive_field():
    i = infer(net(("x", "Input", {"shape": [1, 20, 20]}),
                  ("c", "Conv2D", {"filters": 2, "kernel_size": [3], "dilation": [2]}),          # 5 wide: field 5
                  ("p", "MaxPool2D", {"kernel_size": [2], "stride": [2], "dilation": [2]}),       # 3 wide, stride 2
                  ("c2", "Conv2D", {"filters": 2, "kernel_size": [3]})))
    assert i["c"].field == (5, 5) and i["c"].shape == (2, 16, 16)
    assert i["p"].field == (7, 7) and i["p"].stride == (2, 2) and i["p"].shape == (2, 7, 7)
    assert i["c2"].field == (11, 11)                                                            # 7 + (3 − 1)·2


# ---- sizes against PyTorch ----
def test_pool_output_sizes_match_torch_over_a_sweep():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for n, kk, s, p, d, ceil in itertools.product(range(1, 9), (1, 2, 3), (1, 2, 3), (0, 1), (1, 2), (False, True)):
        if 2 * p > d * (kk - 1) + 1:
            continue
        layer = create("MaxPool1D", "p", {"layout": "signal", "kernel_size": [kk], "stride": [s], "pad": [p],
                                          "dilation": [d], "ceil_mode": ceil})
        try:
            want = F.max_pool1d(torch.zeros(1, 1, n), kk, s, p, d, ceil_mode=ceil).shape[-1]
        except RuntimeError:
            want = None
        try:
            got = layer.compute_output_shape([(1, n)])[1]
        except Exception:
            got = None
        assert got == (want if want else None), (n, kk, s, p, d, ceil)


def test_conv_transpose_inverts_the_size_of_a_strided_conv():
    """A stride-2 convolution maps 7 and 8 to 4; output_padding picks which one the transpose returns."""
    for n, op in ((7, 0), (8, 1)):
        c = create("Conv2D", "c", {"filters": 2, "kernel_size": [3], "stride": [2], "padding": "same"})
        t = create("ConvTranspose2D", "t", {"filters": 1, "kernel_size": [3], "stride": [2], "pad": [1],
                                            "output_padding": [op]})
        assert t.compute_output_shape([c.compute_output_shape([(1, n, n)])]) == (1, n, n)


# ---- sequences: masks ----
def _seq_layer(config, T=7, F=3, seed=0):
    layer = build("Conv1D", config, [(T, F)], seed)
    x = np.random.default_rng(seed).normal(size=(4, T, F))
    lengths = np.array([T, 4, 1, 6])
    return layer, x, lengths, np.arange(T) < lengths[:, None]


@pytest.mark.parametrize("config", [{"filters": 2, "kernel_size": [3], "padding": "same"},
                                    {"filters": 2, "kernel_size": [5], "dilation": [2], "padding": "same", "groups": 1}])
def test_masked_conv1d_equals_each_sequence_alone_in_torch(config):
    """'same' keeps T: each row's valid steps are nn.Conv1d of that sequence alone (zero padding beyond its end),
    padded steps are 0, the mask passes on, and no gradient reaches padded input steps."""
    torch = pytest.importorskip("torch")
    layer, x, lengths, mask = _seq_layer(config)
    y = run(layer, [x], masks=[mask])
    assert layer.compute_mask([mask]) is mask
    conv = torch.nn.Conv1d(3, 2, config["kernel_size"][0], padding=layer.pads, dilation=layer.dil).double()
    conv.load_state_dict({"weight": torch.tensor(layer.p["W"]), "bias": torch.tensor(layer.p["b"])})
    for i, n in enumerate(lengths):
        want = conv(torch.tensor(x[i:i + 1, :n]).transpose(1, 2)).transpose(1, 2)[0].detach().numpy()
        np.testing.assert_allclose(y[i, :n], want, rtol=1e-12, atol=1e-12)
        assert np.all(y[i, n:] == 0)
    dx = layer.backward(np.ones_like(y))[0]
    assert np.all(dx[~mask] == 0) and np.all(dx[mask] != 0)


def test_a_strided_conv1d_ends_the_mask_and_ignores_padded_input():
    layer, x, lengths, mask = _seq_layer({"filters": 2, "kernel_size": [3], "stride": [2]})
    y = run(layer, [x], masks=[mask])
    assert y.shape == (4, 3, 2) and layer.compute_mask([mask]) is None
    x2 = x.copy()
    x2[~mask] = 99.0                                                   # whatever the padding holds
    np.testing.assert_array_equal(run(layer, [x2], masks=[mask]), y)


def test_sequence_and_signal_layouts_are_transposes():
    seq = build("Conv1D", {"filters": 3, "kernel_size": [3], "groups": 1, "stride": [2]}, [(9, 2)])
    sig = build("Conv1D", {"layout": "signal", "filters": 3, "kernel_size": [3], "stride": [2]}, [(2, 9)])
    sig.p = {k: v.copy() for k, v in seq.p.items()}
    x = np.random.default_rng(1).normal(size=(3, 9, 2))
    np.testing.assert_allclose(run(seq, [x]), run(sig, [x.transpose(0, 2, 1)]).transpose(0, 2, 1), rtol=1e-13)


# ---- read-only input (memory-mapped data): the same outputs and gradients, nothing written into it ----
FAMILY = ("Conv1D", "Conv2D", "Conv3D", "ConvTranspose1D", "ConvTranspose2D", "ConvTranspose3D", "MaxPool1D",
          "MaxPool2D", "MaxPool3D", "AveragePool1D", "AveragePool2D", "AveragePool3D", "GlobalMaxPool",
          "GlobalAveragePool", "Upsample2D", "ZeroPad")


@pytest.mark.parametrize("type", FAMILY)
def test_read_only_input_gives_the_same_results(type):
    for config, shapes, *_ in REGISTRY[type].samples():
        for need_dx, training in itertools.product((True, False), (True, False)):
            a, b = build(type, config, shapes), build(type, config, shapes)
            a.need_dx = b.need_dx = need_dx
            x = np.random.default_rng(0).normal(size=(3,) + tuple(shapes[0]))
            ro = x.copy()
            ro.flags.writeable = False
            y = run(a, [x], training)
            np.testing.assert_allclose(run(b, [ro], training), y, rtol=1e-13, atol=1e-13)
            u = np.random.default_rng(1).normal(size=y.shape)
            da, db = a.backward(u.copy())[0], b.backward(u.copy())[0]
            if need_dx:                                   # (sums may round differently in the last bit)
                np.testing.assert_allclose(db, da, rtol=1e-13, atol=1e-13)
            for k in a.g:
                np.testing.assert_allclose(b.g[k], a.g[k], rtol=1e-13, atol=1e-13)
            np.testing.assert_array_equal(ro, x)


# ---- fast and general kernels agree ----
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_general_conv_path_equals_the_fast_one(dtype):
    """Conv2D's own kernels (groups 1, dilation 1) and ConvND's im2col3 path give the same output and gradients;
    so do the depthwise loops and the grouped GEMMs."""
    rng = np.random.default_rng(0)
    for config, shape, flag in [({"filters": 4, "kernel_size": [3], "stride": [2, 1], "padding": "same"}, (3, 7, 6), "fast"),
                                ({"filters": 6, "kernel_size": [3], "groups": 3, "padding": "same"}, (3, 6, 5), "depthwise"),
                                ({"filters": 4, "kernel_size": [2], "groups": 2, "stride": [2]}, (2, 5, 5), "depthwise")]:
        a = build("Conv2D", config, [shape], dtype=dtype)
        b = build("Conv2D", config, [shape], dtype=dtype)
        assert getattr(a, flag)
        setattr(b, flag, False)
        x = rng.normal(size=(5,) + shape).astype(dtype)
        u = rng.normal(size=(5,) + a.out_shape).astype(dtype)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(run(a, [x]), run(b, [x]), rtol=tol, atol=tol)
        np.testing.assert_allclose(a.backward(u.copy())[0], b.backward(u.copy())[0], rtol=tol, atol=tol)
        for k in a.g:
            np.testing.assert_allclose(a.g[k], b.g[k], rtol=tol, atol=tol * 10)


def test_padded_pool_is_not_fused_and_equals_the_layers_one_by_one():
    g = net(("x", "Input", {"shape": [2, 5, 5]}), ("c", "Conv2D", {"filters": 3, "padding": "same"}),
            ("bn", "BatchNorm", {}), ("r", "ReLU", {}), ("p", "MaxPool2D", {"pad": [1]}), ("f", "Flatten", {}),
            ("d", "Dense", {"units": 2}))
    m = Model(g, dtype=np.float64, seed=1)
    assert m.groups == {}
    plain = Model(net(("x", "Input", {"shape": [2, 6, 6]}), ("c", "Conv2D", {"filters": 3, "padding": "same"}),
                      ("bn", "BatchNorm", {}), ("r", "ReLU", {}), ("p", "MaxPool2D", {}), ("f", "Flatten", {}),
                      ("d", "Dense", {"units": 2})), dtype=np.float64)
    assert list(plain.groups) == ["c"]               # the unpadded 2×2 pool still fuses (Conv2D → … → MaxPool2D)
    x = np.random.default_rng(0).normal(size=(4, 2, 5, 5))
    np.testing.assert_allclose(m.forward(x, training=True), m.forward(x, training=True, every=True), rtol=1e-12)


# ---- one-click fixes ----
def _apply(g, name, fix):
    """What the window's Fix button does, on a plain Graph."""
    if fix.action == "set":
        g.nodes[name].config.update({k: list(v) if isinstance(v, tuple) else v for k, v in fix.config})
        return
    e = next(e for e in g.edges if e.dst == name)
    g.disconnect(e)
    g.add_node(fix.type, "fixed", {k: list(v) if isinstance(v, tuple) else v for k, v in fix.config})
    g.connect(e.src, "fixed")
    g.connect("fixed", name, e.port)


@pytest.mark.parametrize("shape,type,config,words", [
    ([6, 8, 8], "Conv2D", {"filters": 4, "groups": 4}, "groups g = 4 must divide both C_in = 6 and C_out = 4"),
    ([4, 8, 8], "Conv2D", {"kernel_size": [4], "padding": "same"}, "(K_h − 1)/2 = (4 − 1)/2 = 1.5"),
    ([4, 3, 3], "Conv2D", {"kernel_size": [3], "dilation": [2]}, "⌊(3 + 2·0 − 2·(3 − 1) − 1)/1⌋ + 1 = -1 is empty"),
    ([2, 8, 8], "MaxPool2D", {"kernel_size": [2], "pad": [2]}, "padding P_h = 2 is as wide as the 2-tap window"),
    ([2, 4, 4], "ConvTranspose2D", {"stride": [2], "output_padding": [2]}, "must be smaller than the stride S = 2"),
    ([12], "Conv1D", {"kernel_size": [3]}, "needs a sequence (steps T, features F) but got (12,)"),
    ([12], "Conv1D", {"layout": "signal", "kernel_size": [3]}, "insert a Reshape to (1, 12)"),
    ([3, 5, 5], "Conv3D", {"kernel_size": [1]}, "needs a volume (channels, depth, height, width)"),
    ([2, 3], "MaxPool1D", {"kernel_size": [3], "stride": [1], "layout": "signal", "pad": [3]}, "as wide as"),
])
def test_shape_errors_say_why_and_their_fix_repairs_the_graph(shape, type, config, words):
    g = net(("x", "Input", {"shape": shape}), ("n", type, config))
    info = infer(g)["n"]
    assert info.shape is None and words in info.error and f"{type} 'n'" in info.error, info.error
    assert info.fix is not None
    _apply(g, "n", info.fix)
    assert infer(g)["n"].ok, infer(g)["n"].error


def test_pool_padding_as_wide_as_the_window_needs_no_guessing():
    """The fix keeps each side's padding below its window's K taps (so every window sees an input)."""
    layer = create("MaxPool2D", "p", {"kernel_size": [2, 3], "pad": [2, 3], "dilation": [1, 2]})
    with pytest.raises(Exception) as e:
        layer.compute_output_shape([(1, 9, 9)])
    assert dict(e.value.fix.config)["pad"] == (1, 2)
    layer = create("AveragePool2D", "p", {"kernel_size": [2, 3], "pad": [0, 2, 3, 1]})
    with pytest.raises(Exception) as e:
        layer.compute_output_shape([(1, 9, 9)])
    assert dict(e.value.fix.config)["pad"] == (0, 1, 2, 1)


# ---- examples and exports ----
def test_new_layers_sit_under_their_family_in_the_palette(qtbot, tmp_path):
    from gui.palette import PaletteTree
    tree = PaletteTree()
    qtbot.addWidget(tree)
    groups = {tree.topLevelItem(i).text(0): [tree.topLevelItem(i).child(j).text(0)
                                             for j in range(tree.topLevelItem(i).childCount())]
              for i in range(tree.topLevelItemCount())}
    assert {"Conv1D", "Conv2D", "Conv3D", "ConvTranspose1D", "ConvTranspose2D", "ConvTranspose3D"} <= set(
        groups["Convolution"])
    assert {"MaxPool1D", "AveragePool1D", "MaxPool3D", "AveragePool3D", "GlobalMaxPool"} <= set(groups["Pooling"])
    assert {"Upsample2D", "ZeroPad"} <= set(groups["Reshape"])
    tree.resize(260, 900)
    tree.grab().save(str(tmp_path / "palette.png"))


@pytest.mark.parametrize("name", ["reviews-cnn.json", "digits-resnet.json"])
def test_examples_analyse_and_export_to_onnx_like_predict(name):
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx_export import to_onnx
    p = Project.load(path("examples", name))
    assert not [i.error for i in infer(p.graph).values() if i.error]
    model = randomize(Model(p.graph))
    rng = np.random.default_rng(0)
    if name.startswith("reviews"):
        x = rng.integers(2, 8000, (5, 120)).astype(np.float32)
        lengths = np.array([120, 7, 60, 1, 33], np.int32)
        x[np.arange(120) >= lengths[:, None]] = 0
    else:
        x, lengths = rng.normal(size=(5, 1, 28, 28)).astype(np.float32), None
    want = model.predict(x, lengths=lengths)
    sess = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x} | ({"lengths": lengths} if lengths is not None else {})
    np.testing.assert_allclose(sess.run(None, feed)[0], want, rtol=1e-4, atol=1e-5)
    if lengths is not None:                                          # the lengths matter: padding is masked out
        assert not np.allclose(model.predict(x), want, atol=1e-4)


def test_every_new_type_is_registered_under_a_family():
    new = {"Conv1D": "convolution", "Conv3D": "convolution", "ConvTranspose2D": "convolution",
           "ConvTranspose1D": "convolution", "ConvTranspose3D": "convolution",
           "MaxPool1D": "pooling", "AveragePool1D": "pooling", "MaxPool3D": "pooling", "AveragePool3D": "pooling",
           "GlobalMaxPool": "pooling", "Upsample2D": "reshape", "ZeroPad": "reshape"}
    assert {t: REGISTRY[t].category for t in new} == new


def test_reviews_cnn_exports_to_pytorch_with_its_masks(tmp_path):
    """model.py's ChannelsLast Conv1d modules and TimePool get forward's mask and reproduce predict with lengths."""
    torch = pytest.importorskip("torch")
    import importlib.util

    from engine.torch_export import model_source, state_dict
    model = randomize(Model(Project.load(path("examples", "reviews-cnn.json")).graph))
    src = model_source(model, "Net")
    assert "ChannelsLast(nn.Conv1d(32, 64, kernel_size=5, padding=2))" in src and "dilation=2" in src
    f = tmp_path / "model.py"
    f.write_text(src)
    spec = importlib.util.spec_from_file_location("reviews_cnn_model", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.Net()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict(model).items()}, strict=True)
    rng = np.random.default_rng(1)
    lengths = np.array([120, 3, 50, 1])
    x = rng.integers(2, 8000, (4, 120)).astype(np.float32)
    x[np.arange(120) >= lengths[:, None]] = 0
    mask = np.arange(120) < lengths[:, None]
    with torch.no_grad():
        got = net.eval()(torch.from_numpy(x), mask=torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(got, model.predict(x, lengths=lengths), rtol=1e-5, atol=1e-6)


# ---- the ONNX backend's PyTorch-converted convolution, pooling and padding cases, run by our layers ----
def _backend_cases():
    try:
        import onnx
    except ImportError:
        return []
    from pathlib import Path
    root = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
    return sorted(p for p in root.glob("test_*") if any(w in p.name for w in ("Conv", "Pool", "Pad")))


def _as_layer(model):
    """(type, config, weights) of our layer for a one-operator ONNX model, or None when we have none."""
    from onnx import helper, numpy_helper
    nodes = [n for n in model.graph.node if n.op_type not in ("Unsqueeze", "Squeeze")]
    (node,) = nodes
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    w = [numpy_helper.to_array(t) for t in model.graph.initializer]
    unsqueezed = len(nodes) < len(model.graph.node)                          # 1-D pools run as 2-D with W = 1
    k = a.get("kernel_shape", [])[:1] if unsqueezed else a.get("kernel_shape")
    r = len(k or [])
    pads = a.get("pads", [0] * 2 * r)
    if node.op_type == "Pad":
        p, mode = a["pads"], a["mode"].decode()
        return "ZeroPad", {"pad": [p[2], p[6], p[3], p[7]], "mode": mode, "value": float(a.get("value", 0.0))}, {}
    assert pads[:len(pads) // 2] == pads[len(pads) // 2:]                   # symmetric: ours
    base = {"kernel_size": list(k), "stride": list(a["strides"][:r]), "pad": list(pads[:r])}
    if node.op_type in ("Conv", "ConvTranspose"):
        out = w[0].shape[0] if node.op_type == "Conv" else w[0].shape[1] * a["group"]   # (C_in, C_out/g, …) transposed
        cfg = dict(base, filters=out, groups=a["group"], dilation=list(a["dilations"]), use_bias=len(w) > 1)
        weights = {"W": w[0]} | ({"b": w[1]} if len(w) > 1 else {})
        if node.op_type == "ConvTranspose":
            return "ConvTranspose2D", dict(cfg, output_padding=list(a["output_padding"])), weights
        cfg = dict(cfg, padding="explicit")
        return f"Conv{r}D", dict(cfg, layout="signal") if r == 1 else cfg, weights
    t = {"MaxPool": "MaxPool", "AveragePool": "AveragePool"}[node.op_type] + f"{r}D"
    cfg = dict(base, ceil_mode=bool(a.get("ceil_mode", 0)))
    if node.op_type == "MaxPool":
        cfg["dilation"] = list(a.get("dilations", [1] * r))
    else:
        cfg["count_include_pad"] = bool(a.get("count_include_pad", 0))
    return t, dict(cfg, layout="signal") if r == 1 else cfg, {}


def test_onnx_backend_convolution_cases_run_on_our_layers():
    """Every PyTorch-converted Conv / ConvTranspose / MaxPool / AveragePool / Pad (constant with its value, reflect,
    edge) case of the onnx package's backend tests gives the shipped output with our layers."""
    cases = _backend_cases()
    if not cases:
        pytest.skip("the onnx package (with its backend test data) is not installed")
    import onnx
    from onnx import numpy_helper
    missing = []
    for case in cases:
        spec = _as_layer(onnx.load(str(case / "model.onnx")))
        if spec is None:
            missing.append(case.name)
            continue
        type, config, weights = spec
        x = numpy_helper.to_array(onnx.load_tensor(str(case / "test_data_set_0" / "input_0.pb"))).astype(np.float64)
        want = numpy_helper.to_array(onnx.load_tensor(str(case / "test_data_set_0" / "output_0.pb")))
        layer = create(type, "n", config)
        layer.build([x.shape[1:]])
        layer.p = {k: v.astype(np.float64) for k, v in weights.items()}
        got = layer.forward(x)
        assert got.shape == want.shape, case.name
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=case.name)
    assert missing == []
    assert len(cases) - len(missing) >= 40
