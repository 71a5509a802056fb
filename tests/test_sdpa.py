"""ScaledDotProductAttention (the registry tests check gradients, parity, exports for its samples): shape errors,
masks against PyTorch's F.scaled_dot_product_attention, the attention tap, and ONNX's Attention operator: every
backend node case either imports and gives the case's expected output or is refused in one line, exactly as
tools/onnx_coverage.py counts it; a torch opset-23 export imports as one layer."""
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from engine import Graph
from engine.errors import ShapeError
from engine.layers import create
from engine.model import Model
from engine.onnx_import import ImportFailed, read
from gradcheck import build, run

T = "ScaledDotProductAttention"


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("config,shapes,words", [
    ({"heads": 4}, [(3, 6), (5, 6), (5, 6)], "the queries' width 6 (input 1 (3, 6)) is not divisible by heads = 4"),
    ({"heads": 2}, [(3, 6), (5, 6), (4, 6)], "need the same number of steps, got 5 and 4"),
    ({"heads": 2}, [(3, 6), (5, 4), (5, 6)], "the keys' width 4 (input 2 (5, 4)) must be kv_heads·d_k = 2·3 = 6"),
    ({"heads": 4, "kv_heads": 3}, [(3, 8), (5, 6), (5, 6)], "heads = 4 is not a multiple of kv_heads = 3"),
    ({"heads": 4, "kv_heads": 2}, [(3, 8), (5, 4), (5, 5)], "the values' width 5 (input 3 (5, 5)) is not divisible"),
    ({"heads": 1}, [(3, 6, 2), (5, 6), (5, 6)], "needs a sequence (steps, features) of queries at input 1"),
])
def test_shape_errors_are_one_line_naming_the_layer_and_input(config, shapes, words):
    with pytest.raises(ShapeError) as e:
        create(T, "sdpa", config).compute_output_shape(shapes)
    msg = str(e.value)
    assert words in msg and "ScaledDotProductAttention 'sdpa'" in msg and "\n" not in msg


def test_output_shape_and_formulas():
    layer = create(T, "a", {"heads": 4, "kv_heads": 2})
    shapes = [(7, 8), (5, 4), (5, 6)]                 # d_k = 2, d_v = 3
    assert layer.compute_output_shape(shapes) == (7, 12)
    f = layer.formulas(shapes)
    assert f["shape"].endswith("= (7, 12)") and f["params"] == "no trainable parameters = 0"
    assert f["macs"].startswith("h·T·S·(d_k + d_v) = 4·7·5·(2 + 3) = 700") and layer.macs(shapes) == 700


@pytest.mark.parametrize("config", [{"heads": 2}, {"heads": 4, "kv_heads": 2, "causal": True},
                                    {"heads": 2, "kv_heads": 1, "softcap": 0.7, "scale": 0.9}])
def test_masks_match_torch_sdpa_with_a_key_padding_mask(config):
    """Padded keys get no weight (and no gradient), padded queries give 0 and pass no gradient; the valid rows and
    every gradient equal torch's F.scaled_dot_product_attention with attn_mask = valid keys (float64, 1e-10)."""
    torch = _torch()
    from engine.layers.sdpa import _torch_sdpa
    shapes = [(5, 8), (6, 8 // config["heads"] * config.get("kv_heads", config["heads"])), (6, 6)]
    layer = build(T, config, shapes)
    rng = np.random.default_rng(0)
    xs = [rng.normal(0, 1, (3,) + s) for s in shapes]
    qlen, klen = np.array([5, 3, 1]), np.array([6, 2, 4])
    mq, mk = np.arange(5) < qlen[:, None], np.arange(6) < klen[:, None]
    y = run(layer, xs, masks=[mq, mk, mk])
    A = layer.taps["attention"]
    assert np.all(A[:, :, :, :][~np.broadcast_to(mk[:, None, None, :], A.shape)] == 0)     # padded keys: 0
    assert np.all(A.transpose(0, 2, 1, 3)[~mq] == 0) and np.all(y[~mq] == 0)            # padded queries: 0
    np.testing.assert_allclose(A.sum(-1).transpose(0, 2, 1)[mq], 1, rtol=1e-12)
    u = rng.normal(0, 1, y.shape) * mq[..., None]
    dq, dk, dv = layer.backward(u)
    assert np.all(dq[~mq] == 0) and np.all(dk[~mk] == 0) and np.all(dv[~mk] == 0)
    h, hkv = layer._heads()
    txs = [torch.tensor(x, requires_grad=True) for x in xs]
    ty = _torch_sdpa(torch, *txs, h, hkv, config.get("causal", False), layer._scale(8 // h), config.get("softcap", 0),
                     key_mask=torch.tensor(mk))
    np.testing.assert_allclose(y[mq], ty.detach().numpy()[mq], rtol=1e-10, atol=1e-12)
    (ty * torch.tensor(u)).sum().backward()
    for d, t in zip((dq, dk, dv), txs):
        np.testing.assert_allclose(d, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_padded_key_values_change_nothing():
    layer = build(T, {"heads": 2, "causal": True}, [(4, 4), (4, 4), (4, 6)])
    rng = np.random.default_rng(1)
    xs = [rng.normal(0, 1, (2, 4, d)) for d in (4, 4, 6)]
    mk = np.arange(4) < np.array([[4], [2]])
    y = run(layer, xs, masks=[None, mk, mk])
    for i in (1, 2):
        xs[i][1, 2:] = 1e3
    np.testing.assert_array_equal(run(layer, xs, masks=[None, mk, mk]), y)


@pytest.mark.parametrize("config", [{"heads": 2}, {"heads": 4, "kv_heads": 2, "causal": True}])
def test_long_sequences_in_key_blocks_equal_the_tiles(config, monkeypatch):
    """Beyond TILE_MAX_T steps the layer runs in key blocks (O(T + S) memory; grouped heads repeated): output,
    gradients and the attention tap (computed when read) equal the whole-tile path, masks included."""
    from engine.layers import attention as att
    kv = (24, 8 // config["heads"] * config.get("kv_heads", config["heads"]))      # d_v = d_k: key blocks apply
    shapes = [(20, 8), kv, kv]
    rng = np.random.default_rng(5)
    xs = [rng.normal(0, 1, (3,) + s) for s in shapes]
    mq, mk = np.arange(20) < np.array([[20], [7], [1]]), np.arange(24) < np.array([[24], [3], [11]])
    u = rng.normal(0, 1, (3, 20, 8)) * mq[..., None]
    got = {}
    for tile_max in (128, 16):                           # whole tiles, then key blocks (max(T, S) > 16)
        monkeypatch.setattr(att, "TILE_MAX_T", tile_max)
        layer = build(T, config, shapes)
        y = run(layer, xs, masks=[mq, mk, mk])
        assert (layer.A is None) == (tile_max == 16)
        got[tile_max] = (y, *[d.copy() for d in layer.backward(u)], np.array(layer.taps["attention"]),
                         layer.attention_maps([2, 0]))
    for a, b in zip(got[128], got[16]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def self_attention_graph(Tn=6, F=4):
    """x → three Dense (q, k, v) → ScaledDotProductAttention → Dense 3: self-attention written with the layer."""
    g = Graph()
    g.add_node("Input", "x", {"shape": [Tn, F]})
    for k in "qkv":
        g.chain((k, "Dense", {"units": 8}), after="x")
    g.add_node(T, "att", {"heads": 2, "causal": True})
    for i, k in enumerate("qkv"):
        g.connect(k, "att", i)
    g.chain(("out", "Dense", {"units": 3}), after="att")
    return g


def test_predict_attention_finds_the_layer_and_its_maps_have_the_padding():
    from engine.cli_predict import _predict_attention
    model = Model(self_attention_graph(), seed=0)
    x = np.random.default_rng(2).normal(0, 1, (5, 6, 4)).astype(np.float32)
    lengths = np.array([6, 3, 1, 6, 2])
    y, maps = _predict_attention(model, x, lengths, True)
    assert y.shape == (5, 6, 3) and set(maps) == {"att"}
    A = maps["att"]                                   # (N, heads, T, S)
    assert A.shape == (5, 2, 6, 6)
    assert np.all(A[1, :, :, 3:] == 0) and np.all(A[1, :, 3:, :] == 0) and np.all(np.triu(A[0, 0], 1) == 0)


def test_attention_view_draws_the_layer_with_its_padding_and_causal_mask(qtbot, tmp_path):
    from gui.training.job import Probe
    from gui.training.views import AttentionView
    rng = np.random.default_rng(6)
    x = rng.normal(size=(6, 7, 2)).astype(np.float32)
    probe = Probe("regression", [], x, x[:, :1, 0], x, x[:, :1, 0])
    probe.lengths = np.array([7, 4, 2, 7, 5, 3])
    model = Model(self_attention_graph(7, 2), seed=0)
    p = AttentionView.compute(model, probe, {"attention_sample": 1})
    assert p["layers"] == ["att"] and p["causal"]["att"] and p["length"] == 4
    A = p["maps"]["att"]                                                  # (heads, T, S)
    assert A.shape == (2, 7, 7) and np.all(A[:, :, 4:] == 0) and np.all(A[:, 4:] == 0)
    assert np.all(np.triu(A[0], 1) == 0) and np.allclose(A[:, :4].sum(-1), 1, rtol=1e-5)
    v = AttentionView()
    qtbot.addWidget(v)
    v.resize(800, 400)
    v.begin({"layers": p["layers"], "types": p["types"], "n_val": len(x)})
    v.show_maps(p)
    v.choose("att", 1)
    assert v.alpha.shape == (4, 4)
    v.grab().save(str(tmp_path / "sdpa_attention.png"))


def test_onnx_export_with_lengths_matches_predict():
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx_export import to_onnx
    model = Model(self_attention_graph(), seed=0)
    x = np.random.default_rng(3).normal(0, 1, (4, 6, 4)).astype(np.float32)
    lengths = np.array([6, 2, 5, 1], np.int32)
    want = model.predict(x, lengths=lengths)
    s = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    got = s.run(None, {s.get_inputs()[0].name: x, "lengths": lengths})[0]
    valid = np.arange(6) < lengths[:, None]
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-4, atol=1e-5)


# ---- ONNX's Attention operator: the backend node cases ----
def _coverage():
    spec = importlib.util.spec_from_file_location("onnx_coverage",
                                                  Path(__file__).parents[1] / "tools" / "onnx_coverage.py")
    cov = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cov)
    return cov


def _cases():
    try:
        from onnx.backend.test.case import node  # noqa: F401
    except ImportError:                                  # an onnx wheel without its backend test generators
        return []
    return sorted((c for c in COV.node_testcases("Attention") if "_expanded" not in c.name), key=lambda c: c.name)


COV = _coverage()
CASES = _cases()
TOL = {1: 1e-5, 10: 2e-3, 16: 2e-2}                       # float32, float16, bfloat16 (relative to the output scale)


def test_the_backend_has_attention_cases():
    assert len(CASES) >= 60, "onnx's backend test generators for Attention were not found"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_backend_attention_case_imports_exactly_when_counted_and_gives_its_output(case):
    status, why, _ = COV.classify(case.model)
    try:
        g, w, _ = read(case.model, strict=True)
    except ImportFailed as e:
        msg = str(e)
        assert status != "layer", f"tools/onnx_coverage.py counts it as a layer but the import says: {msg}"
        assert "\n" not in msg and ("Attention '" in msg or "attn_mask" in msg or "nonpad_kv_seqlen" in msg), msg
        return
    assert status == "layer", f"it imports but tools/onnx_coverage.py counts it as {status}: {why}"
    m = Model(g)
    m.set_weights({**m.weights(), **w})
    assert [m.layers[n].type for n in m.order].count(T) == 1
    ins, outs = case.data_sets[0]
    names = [i.name for i in case.model.graph.input]
    feed = {n: np.asarray(x, np.float32) for n, x in zip(names, ins)}
    y = m.predict({n: feed[n] for n in m.inputs})
    want = np.asarray(outs[0], np.float64)
    elem = case.model.graph.input[0].type.tensor_type.elem_type
    assert y.shape == want.shape
    assert np.abs(y - want).max() <= TOL[elem] * max(1.0, np.abs(want).max())


def test_refusals_name_the_node_and_what_it_uses():
    by = {c.name: c for c in CASES}
    if not by:
        pytest.skip("onnx's backend test generators for Attention are not installed")
    for name, words in [("test_attention_4d_causal_with_past_and_present", "input past_key ('past_key'): a KV cache"),
                        ("test_attention_4d_with_qk_matmul", "'qk_matmul_output'"),
                        ("test_attention_4d_with_qk_matmul_bias", "qk_matmul_output_mode = 2 is not supported"),
                        ("test_attention_4d_attn_mask", "input attn_mask ('attn_mask'): a mask or bias per query"),
                        ("test_attention_local_window", "left_window_size = 2: a sliding window")]:
        with pytest.raises(ImportFailed) as e:
            read(by[name].model, strict=True)
        node = by[name].model.graph.node[0]
        assert f"Attention '{node.name or node.output[0]}'" in str(e.value) and words in str(e.value), \
            (name, str(e.value))


def test_torch_sdpa_exported_at_opset_23_imports_as_one_layer(tmp_path):
    """torch.onnx (dynamo) writes F.scaled_dot_product_attention as Reshape/Transpose → Attention → Transpose/Reshape:
    the import is the one layer (GQA, causal), equal to onnxruntime on the file."""
    torch = _torch()
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    F = torch.nn.functional

    class Net(torch.nn.Module):
        def forward(self, q, k, v):
            B, Tq, S = q.shape[0], q.shape[1], k.shape[1]
            q = q.reshape(B, Tq, 4, 8).transpose(1, 2)
            k, v = k.reshape(B, S, 2, 8).transpose(1, 2), v.reshape(B, S, 2, 6).transpose(1, 2)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2).reshape(
                B, Tq, -1)

    args = (torch.randn(2, 5, 32), torch.randn(2, 5, 16), torch.randn(2, 5, 12))
    f = tmp_path / "sdpa.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net(), args, str(f), dynamo=True, opset_version=23, input_names=["q", "k", "v"])
    g, w, _ = read(f, strict=True)
    assert sorted(node.type for node in g.nodes.values()) == ["Input"] * 3 + [T]
    assert next(node.config for node in g.nodes.values() if node.type == T) == \
        {"heads": 4, "kv_heads": 2, "causal": True, "scale": 0.0, "softcap": 0.0}
    m = Model(g)
    rng = np.random.default_rng(4)
    feed = {n: rng.normal(0, 1, a.shape).astype(np.float32) for n, a in zip("qkv", args)}
    want = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(m.predict(feed), want, rtol=1e-5, atol=1e-5)


def _export_masked(torch, tmp_path, mask_of_queries=False):
    """F.scaled_dot_product_attention with attn_mask = a boolean (B, steps) input (True = valid) broadcast as key
    padding (B, 1, 1, S), or over the query steps (B, 1, T, 1), exported at opset 23."""
    F = torch.nn.functional

    class Net(torch.nn.Module):
        def forward(self, q, k, v, valid):
            B, Tq, S = q.shape[0], q.shape[1], k.shape[1]
            q, k, v = (x.reshape(B, x.shape[1], 2, 4).transpose(1, 2) for x in (q, k, v))
            m = valid[:, None, :, None] if mask_of_queries else valid[:, None, None, :]
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m).transpose(1, 2).reshape(B, Tq, -1)

    names = ["q", "k", "v", "query_valid" if mask_of_queries else "key_valid"]
    args = (torch.randn(2, 6, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8), torch.ones(2, 6, dtype=torch.bool))
    f = tmp_path / "masked.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net(), args, str(f), dynamo=True, opset_version=23, input_names=names)
    return Net(), f


def test_a_key_padding_attn_mask_becomes_the_key_inputs_mask(tmp_path):
    """torch's attn_mask=key_valid[:, None, None, :] (a boolean graph input, True = attend) imports as the mask of
    Input 'k': predict with the keys' lengths equals the torch module with that mask."""
    torch = _torch()
    pytest.importorskip("onnxscript")
    net, f = _export_masked(torch, tmp_path)
    g, w, _ = read(f, strict=True)
    assert sorted(node.type for node in g.nodes.values()) == ["Input"] * 3 + [T]
    assert g.nodes["k"].meta["onnx_masks"] == {"key_valid": "valid"}
    m = Model(g)
    rng = np.random.default_rng(7)
    feed = {n: rng.normal(0, 1, (3, 6, 8)).astype(np.float32) for n in "qkv"}
    lengths = np.array([6, 2, 4])
    got = m.predict(feed, lengths={"k": lengths})
    with torch.no_grad():
        want = net(*(torch.from_numpy(feed[n]) for n in "qkv"), torch.from_numpy(np.arange(6) < lengths[:, None]))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_an_attn_mask_over_the_queries_is_refused_in_one_line(tmp_path):
    torch = _torch()
    pytest.importorskip("onnxscript")
    _, f = _export_masked(torch, tmp_path, mask_of_queries=True)
    with pytest.raises(ImportFailed) as e:
        read(f, strict=True)
    assert "Attention 'node_scaled_dot_product_attention': input attn_mask" in str(e.value), str(e.value)

