"""Self-attention, LayerNorm, GELU and positions: masked gradients, PyTorch parity, spec formulas, shape errors."""
import math

import numpy as np
import pytest

from engine import ShapeError
from engine.layers import REGISTRY, create
from engine.layers.position import sinusoid
from gradcheck import build, numeric, run

try:                                                         # PyTorch is an optional reference: only its tests skip
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (optional reference)")


def _mask(rng, batch, T):
    lengths = rng.integers(1, T + 1, batch)
    lengths[0] = T                                           # one full row, the others shorter
    return np.arange(T)[None, :] < lengths[:, None], lengths  # (B, T)


def _mhsa(config, T, d, batch=3, seed=0, mask=None):
    layer = build("MultiHeadSelfAttention", config, [(T, d)], seed)
    layer.in_masks = [mask]
    return layer


@pytest.mark.parametrize("config", [{"heads": 2}, {"heads": 1, "causal": True}, {"heads": 3, "d_k": 2},
                                    {"heads": 2, "causal": True}])
def test_masked_attention_gradients_match_central_differences(config):
    rng = np.random.default_rng(4)
    B, T, d = 4, 5, 6
    mask, _ = _mask(rng, B, T)
    layer = _mhsa(config, T, d, B, mask=mask)
    x = rng.normal(0, 1, (B, T, d))
    y = run(layer, [x])
    assert np.all(y[~mask] == 0)                              # padded steps output 0
    u = rng.normal(0, 1, y.shape)                             # upstream gradient also at padded steps
    (dx,) = layer.backward(u.copy())
    loss = lambda: float(np.sum(run(layer, [x]) * u))
    np.testing.assert_allclose(dx, numeric(loss, x), rtol=1e-5, atol=1e-7)
    assert np.all(dx[~mask] == 0)                             # padded steps get no gradient
    for k in layer.g:
        np.testing.assert_allclose(layer.g[k], numeric(loss, layer.p[k]), rtol=1e-5, atol=1e-7, err_msg=k)


def test_padded_steps_change_nothing_at_valid_steps():
    rng = np.random.default_rng(1)
    mask, _ = _mask(rng, 3, 6)
    layer = _mhsa({"heads": 2}, 6, 4, mask=mask)
    x = rng.normal(0, 1, (3, 6, 4))
    y = run(layer, [x])
    x2 = np.where(mask[..., None], x, rng.normal(0, 50, x.shape))   # garbage in the padding
    np.testing.assert_array_equal(run(layer, [x2])[mask], y[mask])


def test_attention_tap_rows_sum_to_one_and_padded_columns_are_zero():
    rng = np.random.default_rng(2)
    mask, lengths = _mask(rng, 4, 7)
    layer = _mhsa({"heads": 3, "causal": False}, 7, 6, mask=mask)
    run(layer, [rng.normal(0, 1, (4, 7, 6))])
    a = layer.taps["attention"]
    assert a.shape == (4, 3, 7, 7)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(a[b, :, :n].sum(-1), 1.0, rtol=1e-12)
        assert np.all(a[b, :, :, n:] == 0) and np.all(a[b, :, n:, :] == 0)


def test_causal_attention_never_looks_ahead():
    layer = _mhsa({"heads": 2, "causal": True}, 5, 4)
    run(layer, [np.random.default_rng(0).normal(size=(2, 5, 4))])
    a = layer.taps["attention"]
    assert np.all(np.triu(np.ones((5, 5)), 1)[None, None] * a == 0)
    np.testing.assert_allclose(a.sum(-1), 1.0)


def test_fully_masked_row_gives_zeros_not_nan():
    layer = _mhsa({"heads": 2}, 4, 4, mask=np.array([[True, True, False, False], [False] * 4]))
    x = np.random.default_rng(0).normal(size=(2, 4, 4))
    y = run(layer, [x])
    (dx,) = layer.backward(np.ones_like(y))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)) and np.all(np.isfinite(layer.g["Wq"]))
    assert np.all(layer.taps["attention"][1] == 0) and np.all(y[1] == 0) and np.all(dx[1] == 0)


def test_attention_matches_spec_token_formula():
    """α_{t→s} = exp(q_t·k_s/√d_k) / Σ_u exp(q_t·k_u/√d_k), z_t = Σ_s α_{t→s} v_s, heads concatenated, W_O."""
    layer = _mhsa({"heads": 2}, 3, 4)
    x = np.random.default_rng(5).normal(size=(1, 3, 4))
    y = run(layer, [x])[0]
    p, dk = layer.p, 2
    z = np.zeros((3, 4))
    for h in range(2):
        rows = slice(h * dk, (h + 1) * dk)
        for t in range(3):
            q = p["Wq"][rows] @ x[0, t] + p["bq"][rows]
            ks = [p["Wk"][rows] @ x[0, s] + p["bk"][rows] for s in range(3)]
            vs = [p["Wv"][rows] @ x[0, s] + p["bv"][rows] for s in range(3)]
            e = [math.exp(q @ k / math.sqrt(dk)) for k in ks]
            alpha = [v / sum(e) for v in e]
            z[t, rows] = sum(a * v for a, v in zip(alpha, vs))
            np.testing.assert_allclose(layer.taps["attention"][0, h, t], alpha, rtol=1e-12)
    np.testing.assert_allclose(y, z @ p["Wo"].T + p["bo"], rtol=1e-12)


def _torch_mha(layer, d, h):
    mha = torch.nn.MultiheadAttention(d, h, batch_first=True, dtype=torch.float64)
    p = layer.p
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate([p["Wq"], p["Wk"], p["Wv"]])))
        mha.in_proj_bias.copy_(torch.tensor(np.concatenate([p["bq"], p["bk"], p["bv"]])))
        mha.out_proj.weight.copy_(torch.tensor(p["Wo"]))
        mha.out_proj.bias.copy_(torch.tensor(p["bo"]))
    return mha


@needs_torch
@pytest.mark.parametrize("causal", [False, True])
def test_matches_torch_multihead_attention_with_key_padding_mask(causal):
    rng = np.random.default_rng(7)
    B, T, d, h = 5, 6, 8, 4
    mask, _ = _mask(rng, B, T)
    layer = _mhsa({"heads": h, "causal": causal}, T, d, B, mask=mask)
    x = rng.normal(0, 1, (B, T, d))
    y = run(layer, [x])
    u = rng.normal(0, 1, y.shape) * mask[..., None]           # loss over valid steps only
    (dx,) = layer.backward(u.copy())
    mha = _torch_mha(layer, d, h)
    tx = torch.tensor(x, requires_grad=True)
    causal_mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    ty, tw = mha(tx, tx, tx, key_padding_mask=torch.tensor(~mask), attn_mask=causal_mask,
                 need_weights=True, average_attn_weights=False)
    np.testing.assert_allclose(y[mask], ty.detach().numpy()[mask], rtol=1e-10, atol=1e-12)
    a = layer.taps["attention"]
    for b in range(B):
        valid = mask[b]
        np.testing.assert_allclose(a[b][:, valid], tw.detach().numpy()[b][:, valid], rtol=1e-10, atol=1e-12)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    gW = np.concatenate([layer.g["Wq"], layer.g["Wk"], layer.g["Wv"]])
    gb = np.concatenate([layer.g["bq"], layer.g["bk"], layer.g["bv"]])
    np.testing.assert_allclose(gW, mha.in_proj_weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb, mha.in_proj_bias.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["Wo"], mha.out_proj.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["bo"], mha.out_proj.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


@needs_torch
def test_float32_matches_torch_float32():
    rng = np.random.default_rng(0)
    layer = build("MultiHeadSelfAttention", {"heads": 4}, [(32, 64)], dtype=np.float32)
    x = rng.normal(0, 1, (8, 32, 64)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32 and layer.taps["attention"].dtype == np.float32
    mha = _torch_mha(layer, 64, 4).float()
    tx = torch.tensor(x)
    np.testing.assert_allclose(y, mha(tx, tx, tx)[0].detach().numpy(), rtol=1e-4, atol=1e-5)


@needs_torch
def test_layernorm_matches_torch():
    rng = np.random.default_rng(0)
    layer = build("LayerNorm", {"eps": 1e-5}, [(4, 6)])
    x = rng.normal(2, 3, (3, 4, 6))
    y = run(layer, [x])
    u = rng.normal(0, 1, y.shape)
    (dx,) = layer.backward(u)
    ln = torch.nn.LayerNorm(6, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(layer.p["gamma"]))
        ln.bias.copy_(torch.tensor(layer.p["beta"]))
    tx = torch.tensor(x, requires_grad=True)
    ty = ln(tx)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["gamma"], ln.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["beta"], ln.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


@needs_torch
def test_gelu_is_the_exact_erf_form_of_torch():
    x = np.linspace(-6, 6, 97).reshape(1, 97)
    layer = build("GELU", {}, [(97,)])
    y = run(layer, [x])
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.gelu(tx)                                           # approximate='none': x·Φ(x)
    ty.sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.backward(np.ones_like(y))[0], tx.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(y[0, 60], x[0, 60] * 0.5 * (1 + math.erf(x[0, 60] / math.sqrt(2))), rtol=1e-14)


def test_sinusoidal_encoding_is_the_formula():
    """PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(t / 10000^(2i/d))."""
    T, d = 9, 6
    pe = sinusoid(T, d)
    for t in range(T):
        for i in range(d // 2):
            w = t / 10000 ** (2 * i / d)
            assert pe[t, 2 * i] == pytest.approx(math.sin(w), abs=1e-14)
            assert pe[t, 2 * i + 1] == pytest.approx(math.cos(w), abs=1e-14)
    layer = build("PositionalEncoding", {}, [(T, d)])
    x = np.random.default_rng(0).normal(size=(2, T, d))
    np.testing.assert_allclose(run(layer, [x]), x + pe[None])
    assert layer.params(layer.in_shapes) == {}


def test_position_embedding_adds_learned_rows_and_names_max_len():
    layer = build("PositionEmbedding", {"max_len": 5}, [(3, 2)])
    x = np.zeros((2, 3, 2))
    np.testing.assert_allclose(run(layer, [x]), np.broadcast_to(layer.p["P"][:3], (2, 3, 2)))
    layer.backward(np.ones((2, 3, 2)))
    np.testing.assert_array_equal(layer.g["P"], np.r_[np.full((3, 2), 2.0), np.zeros((2, 2))])
    with pytest.raises(ShapeError, match="max_len = 5.*set max_len to 7") as e:
        create("PositionEmbedding", "pos", {"max_len": 5}).compute_output_shape([(7, 2)])
    assert e.value.fix.to_dict() == {"action": "set", "text": "set max_len to 7", "type": "", "config": {"max_len": 7}}


def test_heads_not_dividing_d_model_offers_a_divisor():
    layer = create("MultiHeadSelfAttention", "att", {"heads": 4})
    with pytest.raises(ShapeError, match=r"d_model = 6.*not divisible by heads = 4.*set heads to 3") as e:
        layer.compute_output_shape([(10, 6)])
    assert e.value.fix.action == "set" and dict(e.value.fix.config) == {"heads": 3}
    fixed = create("MultiHeadSelfAttention", "att", {"heads": 3})
    assert fixed.compute_output_shape([(10, 6)]) == (10, 6)
    assert create("MultiHeadSelfAttention", "att", {"heads": 4, "d_k": 5}).compute_output_shape([(10, 6)]) == (10, 6)
    with pytest.raises(ShapeError, match=r"sequence \(steps, d_model\)"):
        layer.compute_output_shape([(8,)])


def test_params_and_macs_follow_the_formulas():
    layer = create("MultiHeadSelfAttention", "att", {"heads": 4})
    T, d = 32, 64
    assert layer.param_count([(T, d)]) == 4 * d * d + 4 * d
    assert layer.macs([(T, d)]) == T * 4 * d * d + 2 * T * T * d
    f = layer.formulas([(T, d)])
    assert f["params"] == "4·d_model² + 4·d_model = 4·64² + 4·64 = 16,640"
    assert f["macs"].endswith(f"= {T * 4 * d * d + 2 * T * T * d:,}")
    for t in ("MultiHeadSelfAttention", "LayerNorm", "PositionalEncoding", "PositionEmbedding"):
        cls = REGISTRY[t]
        c, s, *_ = cls.samples()[0]
        assert set(cls(t.lower(), **c).formulas(s)) <= {"shape", "params", "macs"}


# ---- ONNX ----
def encoder_graph(T=7, d=8, causal=False):
    """x (T, d) → positions → MHSA → Add → LayerNorm → Dense-GELU-Dense → Add → LayerNorm → Dense 5."""
    from engine import Graph
    g = Graph()
    g.chain(("x", "Input", {"shape": [T, d]}), ("pe", "PositionalEncoding", {}),
            ("pos", "PositionEmbedding", {"max_len": T + 3}), ("att", "MultiHeadSelfAttention", {"heads": 2, "causal": causal}))
    g.add_node("Add", "res1")
    g.connect("pos", "res1")
    g.connect("att", "res1")
    g.chain(("ln1", "LayerNorm", {}), ("ff1", "Dense", {"units": 16}), ("gelu", "GELU", {}),
            ("ff2", "Dense", {"units": d}), after="res1")
    g.add_node("Add", "res2")
    g.connect("ln1", "res2")
    g.connect("ff2", "res2")
    g.chain(("ln2", "LayerNorm", {"eps": 1e-3}), ("att2", "MultiHeadSelfAttention", {"heads": 4, "d_k": 3}),
            ("out", "Dense", {"units": 5}), after="res2")
    return g


@pytest.mark.parametrize("causal", [False, True])
def test_onnx_encoder_runs_in_onnxruntime_with_mixed_lengths(causal):
    import onnx                                              # hard dependencies: an import error fails the test
    import onnxruntime as ort
    from engine.model import Model
    from engine.onnx_export import to_onnx
    model = Model(encoder_graph(causal=causal), seed=3)
    rng = np.random.default_rng(0)
    for k, v in model.weights().items():                     # non-trivial biases and norms
        model.layers[k.split("/")[0]].p[k.split("/")[1]][...] += rng.normal(0, 0.3, v.shape)
    x = rng.normal(0, 1, (6, 7, 8)).astype(np.float32)
    lengths = np.array([7, 1, 4, 6, 2, 7])
    mask = np.arange(7)[None, :] < lengths[:, None]
    want = model.forward(x, mask=mask)
    m = to_onnx(model)
    onnx.checker.check_model(m, full_check=True)
    assert {"MatMul", "Softmax", "LayerNormalization", "Erf", "Where"} <= {n.op_type for n in m.graph.node}
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x", "lengths"]
    got = sess.run(None, {"x": x, "lengths": lengths.astype(np.int32)})[0]
    np.testing.assert_allclose(got[mask], want[mask], atol=1e-4, rtol=0)
    assert np.ptp(want[mask]) > 0.5
    x2 = np.where(mask[..., None], x, 100.0).astype(np.float32)      # padding content does not leak
    np.testing.assert_allclose(sess.run(None, {"x": x2, "lengths": lengths.astype(np.int32)})[0][mask],
                               want[mask], atol=1e-4, rtol=0)
