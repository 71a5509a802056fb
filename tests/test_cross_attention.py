"""CrossAttention: against torch's nn.MultiheadAttention (different query and key lengths, key padding masks,
float64), central differences with masks on both sides, padding that changes nothing, its taps and shape errors."""
import numpy as np
import pytest

from engine import ShapeError
from engine.layers import create
from gradcheck import build, numeric, run


def _lengths(rng, batch, T):
    lg = rng.integers(1, T + 1, batch)
    lg[0] = T
    return lg


def _layer(config, T, S, d, de, mq=None, me=None, seed=0):
    layer = build("CrossAttention", config, [(T, d), (S, de)], seed)
    layer.in_masks = [mq, me]
    return layer


@pytest.mark.parametrize("heads,T,S,d", [(2, 5, 7, 8), (4, 9, 3, 8), (1, 1, 6, 4)])
def test_matches_torch_multihead_attention_with_key_padding_mask(heads, T, S, d):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(heads + T)
    B = 4
    sl = _lengths(rng, B, S)
    me = np.arange(S) < sl[:, None]                                    # (B, S) valid source steps
    layer = _layer({"heads": heads}, T, S, d, d, None, me)
    x, e = rng.normal(0, 1, (B, T, d)), rng.normal(0, 1, (B, S, d))
    y = run(layer, [x, e])
    u = rng.normal(0, 1, y.shape)
    dx, de = layer.backward(u.copy())

    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True, dtype=torch.float64)
    p = layer.p
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.from_numpy(np.concatenate([p["Wq"], p["Wk"], p["Wv"]])))
        mha.in_proj_bias.copy_(torch.from_numpy(np.concatenate([p["bq"], p["bk"], p["bv"]])))
        mha.out_proj.weight.copy_(torch.from_numpy(p["Wo"]))
        mha.out_proj.bias.copy_(torch.from_numpy(p["bo"]))
    tx = torch.tensor(x, requires_grad=True)
    te = torch.tensor(e, requires_grad=True)
    ty, ta = mha(tx, te, te, key_padding_mask=torch.from_numpy(~me), average_attn_weights=False)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.taps["attention"], ta.detach().numpy(), rtol=1e-10, atol=1e-12)
    (ty * torch.from_numpy(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(de, te.grad.numpy(), rtol=1e-9, atol=1e-11)
    W = mha.in_proj_weight.grad.numpy()
    D = heads * (d // heads)
    for i, k in enumerate("qkv"):
        np.testing.assert_allclose(layer.g[f"W{k}"], W[i * D:(i + 1) * D], rtol=1e-9, atol=1e-11, err_msg=k)
    np.testing.assert_allclose(layer.g["Wo"], mha.out_proj.weight.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_different_widths_match_torch_kdim_vdim():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    B, T, S, d, de = 3, 4, 6, 6, 5
    layer = _layer({"heads": 3}, T, S, d, de)
    x, e = rng.normal(0, 1, (B, T, d)), rng.normal(0, 1, (B, S, de))
    y = run(layer, [x, e])
    mha = torch.nn.MultiheadAttention(d, 3, kdim=de, vdim=de, batch_first=True, dtype=torch.float64)
    p = layer.p
    with torch.no_grad():
        for k in "qkv":
            getattr(mha, f"{k}_proj_weight").copy_(torch.from_numpy(p[f"W{k}"]))
        mha.in_proj_bias.copy_(torch.from_numpy(np.concatenate([p["bq"], p["bk"], p["bv"]])))
        mha.out_proj.weight.copy_(torch.from_numpy(p["Wo"]))
        mha.out_proj.bias.copy_(torch.from_numpy(p["bo"]))
    ty, _ = mha(torch.tensor(x), torch.tensor(e), torch.tensor(e))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", [{"heads": 2}, {"heads": 3, "d_k": 2}])
def test_gradients_with_masks_on_both_sides_match_central_differences(config):
    rng = np.random.default_rng(5)
    B, T, S, d, de = 4, 5, 6, 6, 4
    mq = np.arange(T) < _lengths(rng, B, T)[:, None]
    me = np.arange(S) < _lengths(rng, B, S)[:, None]
    layer = _layer(config, T, S, d, de, mq, me)
    x, e = rng.normal(0, 1, (B, T, d)), rng.normal(0, 1, (B, S, de))
    y = run(layer, [x, e])
    assert np.all(y[~mq] == 0)                                          # padded query steps output 0
    u = rng.normal(0, 1, y.shape)                                       # upstream gradient also at padded steps
    dx, de_ = layer.backward(u.copy())
    loss = lambda: float(np.sum(run(layer, [x, e]) * u))
    np.testing.assert_allclose(dx, numeric(loss, x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(de_, numeric(loss, e), rtol=1e-5, atol=1e-7)
    assert np.all(dx[~mq] == 0) and np.all(de_[~me] == 0)              # padding gets no gradient
    for k in layer.g:
        np.testing.assert_allclose(layer.g[k], numeric(loss, layer.p[k]), rtol=1e-5, atol=1e-7, err_msg=k)


def test_padded_source_and_query_steps_change_nothing_at_valid_steps():
    rng = np.random.default_rng(6)
    B, T, S, d = 3, 4, 7, 4
    mq = np.arange(T) < _lengths(rng, B, T)[:, None]
    me = np.arange(S) < _lengths(rng, B, S)[:, None]
    layer = _layer({"heads": 2}, T, S, d, d, mq, me)
    x, e = rng.normal(0, 1, (B, T, d)), rng.normal(0, 1, (B, S, d))
    y = run(layer, [x, e])
    x2 = np.where(mq[..., None], x, rng.normal(0, 50, x.shape))
    e2 = np.where(me[..., None], e, rng.normal(0, 50, e.shape))
    np.testing.assert_array_equal(run(layer, [x2, e2])[mq], y[mq])
    a = layer.taps["attention"]                                         # (B, h, T, S)
    assert a.shape == (B, 2, T, S)
    for b in range(B):
        n, m = mq[b].sum(), me[b].sum()
        np.testing.assert_allclose(a[b, :, :n].sum(-1), 1.0, rtol=1e-12)
        assert np.all(a[b, :, :, m:] == 0) and np.all(a[b, :, n:] == 0)
    np.testing.assert_array_equal(layer.attention_maps([2]), a[2:3])


def test_shape_errors_name_the_input_and_offer_a_fix():
    layer = create("CrossAttention", "xa", {"heads": 4})
    with pytest.raises(ShapeError, match="input 2") as e:
        layer.compute_output_shape([(5, 8), (8,)])
    with pytest.raises(ShapeError, match="not divisible by heads") as e:
        layer.compute_output_shape([(5, 6), (7, 3)])
    assert e.value.fix.config == (("heads", 3),)                        # the divisor of 6 nearest 4
    assert layer.compute_output_shape([(5, 8), (9, 3)]) == (5, 8)      # any source length and width
