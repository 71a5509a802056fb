"""ConvTranspose1D and ConvTranspose3D: the forward against the definition (each input value times the kernel, added
at i·S + k·d − P), the ONNX backend's 1-D and 3-D cases, ONNX ConvTranspose nodes imported (compared with
onnxruntime on the file and on the re-export), padded sequence steps, formulas and receptive field."""
from itertools import product

import numpy as np
import pytest

from engine import Graph
from engine.errors import ShapeError
from engine.layers import create
from engine.model import Model
from engine.shapes import infer


def scatter(x, W, b, s, p, op, d, g):
    """y (B, C_out, *out) of a transposed convolution by its definition, float64 loops (channels first)."""
    B, C, *sp = x.shape
    Og, K = W.shape[1], W.shape[2:]
    full = [(n - 1) * ss + dd * (kk - 1) + 1 + o for n, ss, dd, kk, o in zip(sp, s, d, K, op)]
    y = np.zeros((B, Og * g, *full))
    for c, i in product(range(C), product(*map(range, sp))):
        grp = c // (C // g)
        for k in product(*map(range, K)):
            at = tuple(ii * ss + kk * dd for ii, ss, kk, dd in zip(i, s, k, d))
            xi = x[(slice(None), c) + i]                            # (B,)
            y[(slice(None), slice(grp * Og, (grp + 1) * Og)) + at] += xi[:, None] * W[(c, slice(None)) + k]
    crop = tuple(slice(pp, f - pp) for pp, f in zip(p, full))
    y = y[(slice(None), slice(None)) + crop]
    return y if b is None else y + b.reshape((-1,) + (1,) * len(sp))


CASES = [   # type, config, channels-first input shape
    ("ConvTranspose1D", {"layout": "signal", "filters": 4, "kernel_size": [3], "stride": [2], "pad": [1],
                         "output_padding": [1], "groups": 2}, (2, 5)),
    ("ConvTranspose1D", {"layout": "signal", "filters": 3, "kernel_size": [2], "stride": [3], "dilation": [2],
                         "output_padding": [2]}, (3, 4)),
    ("ConvTranspose3D", {"filters": 2, "kernel_size": [2, 3, 2], "stride": [2, 1, 3], "pad": [1, 1, 0],
                         "output_padding": [1, 0, 2], "dilation": [1, 2, 1]}, (3, 2, 3, 2)),
    ("ConvTranspose3D", {"filters": 4, "kernel_size": [2], "stride": [1, 2, 2], "groups": 2, "use_bias": False},
     (2, 2, 2, 3)),
]


@pytest.mark.parametrize("type,config,shape", CASES)
def test_forward_is_the_definition(type, config, shape):
    layer = create(type, "t", config)
    layer.build([shape])
    rng = np.random.default_rng(0)
    layer.p = {k: rng.normal(size=p.shape) for k, p in layer.params([shape]).items()}
    x = rng.normal(size=(2,) + shape)
    c = layer.config
    want = scatter(x, layer.p["W"], layer.p.get("b"), layer.s, layer.pads, layer.opad, layer.dil, c["groups"])
    got = layer.forward(x)
    assert got.shape == want.shape == (2,) + layer.out_shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_sequence_layout_is_the_signal_layout_transposed_and_ignores_padded_steps():
    cfg = {"filters": 3, "kernel_size": [3], "stride": [1], "pad": [1], "output_padding": [0]}
    seq, sig = create("ConvTranspose1D", "a", cfg), create("ConvTranspose1D", "b", dict(cfg, layout="signal"))
    seq.build([(6, 2)])
    sig.build([(2, 6)])
    assert seq.out_shape == (6, 3) and sig.out_shape == (3, 6)
    rng = np.random.default_rng(1)
    seq.p = sig.p = {k: rng.normal(size=p.shape) for k, p in seq.params([(6, 2)]).items()}
    x = rng.normal(size=(2, 6, 2))
    np.testing.assert_allclose(seq.forward(x), sig.forward(x.transpose(0, 2, 1)).transpose(0, 2, 1), atol=1e-12)
    g = Graph()
    g.chain(("x", "Input", {"shape": [6, 2], "standardize": False}), ("t", "ConvTranspose1D", cfg))
    m = Model(g)
    lengths = np.array([6, 4], np.int32)
    a = x.astype(np.float32)
    b = a.copy()
    b[1, 4:] = 1e3                                               # padded steps: any value
    ya, yb = m.predict(a, lengths=lengths), m.predict(b, lengths=lengths)
    np.testing.assert_allclose(ya, yb, atol=1e-5)
    assert np.all(ya[1, 4:] == 0)                                # padded output steps are zeros


def test_formulas_with_the_nodes_numbers():
    f = create("ConvTranspose3D", "t", {"filters": 4, "kernel_size": [2, 3, 2], "stride": [2], "groups": 2}).formulas(
        [(2, 3, 4, 5)])
    assert f["shape"].endswith("W_out = (W − 1)·S − 2P + d·(K − 1) + P_out + 1 = (5 − 1)·2 − 2·0 + 1·(2 − 1) + 0 + 1 "
                               "= 10 → (4, 6, 9, 10)")
    assert f["params"] == "C_in·(C_out/g)·K_d·K_h·K_w + C_out = 2·(4/2)·2·3·2 + 4 = 52"
    assert f["macs"] == "C_in·D·H·W·(C_out/g)·K_d·K_h·K_w = 2·3·4·5·(4/2)·2·3·2 = 2,880"
    f = create("ConvTranspose1D", "t", {"filters": 3, "kernel_size": [4], "stride": [2], "pad": [1]}).formulas([(8, 5)])
    assert f["shape"] == ("L_out = (L − 1)·S − 2P + d·(K − 1) + P_out + 1 = (8 − 1)·2 − 2·1 + 1·(4 − 1) + 0 + 1 = 16"
                          " → (16, 3)")
    assert f["params"] == "C_in·C_out·K + C_out = 5·3·4 + 3 = 63"


def test_bad_shapes_name_the_fix():
    with pytest.raises(ShapeError, match="must be smaller than the stride S = 2"):
        layer = create("ConvTranspose3D", "t", {"stride": [2], "output_padding": [0, 2, 0]})
        layer.compute_output_shape([(1, 2, 2, 2)])
    with pytest.raises(ShapeError, match="needs a volume") as e:
        create("ConvTranspose3D", "t", {}).compute_output_shape([(2, 3, 4)])
    assert e.value.fix.config == (("shape", (1, 2, 3, 4)),)
    with pytest.raises(ShapeError, match="needs a sequence"):
        create("ConvTranspose1D", "t", {}).compute_output_shape([(2, 3, 4)])


def test_receptive_field_divides_the_stride():
    g = Graph()
    g.chain(("x", "Input", {"shape": [1, 8, 8, 8]}),
            ("c", "Conv3D", {"filters": 2, "kernel_size": [3], "stride": [2]}),
            ("t", "ConvTranspose3D", {"filters": 2, "kernel_size": [4], "stride": [2]}))   # E = ⌊3/2⌋ + 1 = 2
    i = infer(g)
    assert (i["t"].field, i["t"].stride) == ((5, 5, 5), (1, 1, 1))                     # 3 + (2 − 1)·2
    g = Graph()
    g.chain(("x", "Input", {"shape": [16, 2]}),
            ("c", "Conv1D", {"filters": 2, "kernel_size": [3], "stride": [2]}),
            ("t", "ConvTranspose1D", {"filters": 2, "kernel_size": [2], "stride": [2]}))   # E = ⌊1/2⌋ + 1 = 1
    i = infer(g)
    assert (i["t"].field, i["t"].stride) == ((3,), (1,))


# ---- ONNX import, checked by onnxruntime ----
def _model(tmp_path, x_shape, W, b=None, **attrs):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(W.astype(np.float32), "W")]
    if b is not None:
        inits.append(numpy_helper.from_array(b.astype(np.float32), "b"))
    node = helper.make_node("ConvTranspose", ["x", "W"] + (["b"] if b is not None else []), ["y"], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *x_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    f = tmp_path / "ct.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), f)
    return f


def _types(m):
    return [v.type for v in m.graph.nodes.values()][1:]


def test_onnx_backend_1d_and_3d_cases(tmp_path):
    """node/test_convtranspose_1d and _3d (the onnx package's generator values): the shipped outputs."""
    pytest.importorskip("onnxruntime")
    from test_onnx_import import check_round_trip
    f = _model(tmp_path, (1, 3), np.ones((1, 2, 3)))
    m = check_round_trip(f, np.array([[[0.0, 1.0, 2.0]]], np.float32))
    assert _types(m) == ["ConvTranspose1D"]
    np.testing.assert_allclose(m.predict(np.array([[[0.0, 1.0, 2.0]]], np.float32)),
                               [[[0.0, 1.0, 3.0, 3.0, 2.0], [0.0, 1.0, 3.0, 3.0, 2.0]]])
    x = np.arange(60, dtype=np.float32).reshape(1, 1, 3, 4, 5)
    f = _model(tmp_path, (1, 3, 4, 5), np.ones((1, 2, 3, 3, 3)))
    m = check_round_trip(f, x)
    assert _types(m) == ["ConvTranspose3D"]
    y = m.predict(x)
    assert y.shape == (1, 2, 5, 6, 7)
    assert y[0, 1, 2, 2, 2] == x[0, 0, :3, :3, :3].sum() and y[0, 0, 0, 0, 0] == 0 and y[0, 0, 4, 5, 6] == 59


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((4, 6), (4, 2, 3), dict(strides=[2], pads=[1, 1], output_padding=[1], group=2)),
    ((3, 5), (3, 2, 2), dict(strides=[3], dilations=[2])),
    ((2, 3, 2, 4), (2, 3, 2, 3, 2), dict(strides=[2, 1, 2], pads=[1, 0, 1, 1, 0, 1], output_padding=[1, 0, 0])),
    ((4, 2, 3, 2), (4, 1, 2, 2, 3), dict(strides=[1, 2, 1], dilations=[2, 1, 1], group=4)),
])
def test_onnx_conv_transpose_imports(x_shape, w_shape, attrs, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_onnx_import import check_round_trip
    rng = np.random.default_rng(3)
    W = rng.normal(size=w_shape)
    f = _model(tmp_path, x_shape, W, rng.normal(size=w_shape[1] * attrs.get("group", 1)), **attrs)
    m = check_round_trip(f, rng.normal(size=(3,) + x_shape).astype(np.float32))
    rank = len(x_shape) - 1
    assert _types(m) == [f"ConvTranspose{rank}D"]
    cfg = m.graph.nodes[list(m.graph.nodes)[1]].config
    assert cfg.get("layout", "signal") == "signal" and cfg["filters"] == w_shape[1] * attrs.get("group", 1)


def test_onnx_coverage_maps_1d_and_3d_transposed_convolution():
    import importlib.util
    from pathlib import Path

    from onnx import TensorProto, helper
    tool = Path(__file__).parents[1] / "tools" / "onnx_coverage.py"
    spec = importlib.util.spec_from_file_location("onnx_coverage", tool)
    cov = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cov)
    for x, w, y, t in [((1, 1, 3), (1, 2, 3), (1, 2, 5), "ConvTranspose1D"),
                       ((1, 1, 3, 4, 5), (1, 2, 3, 3, 3), (1, 2, 5, 6, 7), "ConvTranspose3D")]:
        ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x)),
               helper.make_tensor_value_info("W", TensorProto.FLOAT, list(w))]
        r = len(x) - 2
        node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[2] * r, output_padding=[1] * r, group=1)
        g = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y))])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        assert cov.classify(m) == ("layer", [], [t])
