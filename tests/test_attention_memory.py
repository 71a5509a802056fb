"""Self-attention in O(T) memory: the key-blocked path (running softmax) against the T×T tile path and PyTorch,
masks and causal as before, attention weights only for the samples asked for."""
import tracemalloc

import numpy as np
import pytest
from gradcheck import build

import engine.layers.attention as att
from engine import parallel
from engine.layers.attention import _Later


def _layer(T, d, heads=2, causal=False, mask=None, dtype=np.float64, seed=1):
    layer = build("MultiHeadSelfAttention", {"heads": heads, "causal": causal}, [(T, d)], seed=seed, dtype=dtype)
    layer.need_dx = True
    layer.in_masks = [mask]
    return layer


def _mask(rng, B, T, empty_row=False):
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    m = np.arange(T)[None, :] < lengths[:, None]                             # (B, T)
    if empty_row:
        m[-1] = False                                                        # a sample with no valid step
    return m


def _step(layer, x, dy):
    """(y, dx, {name: gradient}) of one training forward and backward, copied."""
    y = np.array(layer.forward(x, training=True))
    (dx,) = layer.backward(dy)
    return y, np.array(dx), {k: v.copy() for k, v in layer.g.items()}


def _path(monkeypatch, blocked):
    monkeypatch.setattr(att, "TILE_MAX_T", 0 if blocked else 1 << 30)


@pytest.mark.parametrize("T", [1, 2, 7, 129, 300, 777])
@pytest.mark.parametrize("causal", [False, True])
def test_blocked_path_equals_tile_path(T, causal, monkeypatch):
    rng = np.random.default_rng(T)
    B, d = 3, 8
    mask = _mask(rng, B, T, empty_row=True)
    layer = _layer(T, d, causal=causal, mask=mask)
    x = rng.normal(0, 1, (B, T, d))
    dy = rng.normal(0, 1, (B, T, d))
    _path(monkeypatch, False)
    y0, dx0, g0 = _step(layer, x, dy)
    a0 = np.array(layer.taps["attention"])
    assert layer.A is not None
    _path(monkeypatch, True)
    y1, dx1, g1 = _step(layer, x, dy)
    assert layer.A is None and isinstance(dict.__getitem__(layer.taps, "attention"), _Later)   # not computed yet
    np.testing.assert_allclose(y1, y0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-9, atol=1e-12)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-9, atol=1e-11, err_msg=k)
    np.testing.assert_allclose(layer.taps["attention"], a0, rtol=1e-12, atol=1e-15)
    assert np.all(y1[~mask] == 0) and np.all(dx1[~mask] == 0)              # padding outputs and receives nothing
    assert np.all(y1[-1] == 0) and np.all(np.isfinite(dx1))               # the fully masked sample gives 0


@pytest.mark.parametrize("causal", [False, True])
def test_float32_long_sequence_matches_float64_tile_path(causal, monkeypatch):
    """T = 4,096 in float32 on the blocked path against the float64 T×T path, within float32 rounding."""
    rng = np.random.default_rng(0)
    T, d = 4096, 8
    mask = np.arange(T)[None, :] < np.array([[3001]])                        # (1, T): padded tail
    ref = _layer(T, d, heads=1, causal=causal, mask=mask)
    x = rng.normal(0, 1, (1, T, d))
    dy = rng.normal(0, 1, (1, T, d))
    _path(monkeypatch, False)
    y0, dx0, g0 = _step(ref, x, dy)
    del ref
    layer = _layer(T, d, heads=1, causal=causal, mask=mask, dtype=np.float32)
    _path(monkeypatch, True)
    y1, dx1, g1 = _step(layer, x.astype(np.float32), dy.astype(np.float32))
    assert y1.dtype == np.float32 and layer.A is None
    np.testing.assert_allclose(y1, y0, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(dx1, dx0, rtol=2e-3, atol=2e-4 * np.abs(dx0).max())
    big = max(np.abs(v).max() for v in g0.values())                          # db_K is 0 up to rounding
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=2e-3, atol=1e-4 * big, err_msg=k)
    assert np.all(y1[~mask] == 0) and np.all(dx1[~mask] == 0)


@pytest.mark.parametrize("causal", [False, True])
def test_blocked_path_matches_torch_with_key_padding(causal):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    B, T, d, h = 3, 700, 8, 2                                                # T > TILE_MAX_T: the blocked path
    assert T > att.TILE_MAX_T
    mask = _mask(rng, B, T)
    layer = _layer(T, d, heads=h, causal=causal, mask=mask)
    x = rng.normal(0, 1, (B, T, d))
    u = rng.normal(0, 1, (B, T, d)) * mask[..., None]                        # loss over valid steps only
    y, dx, g = _step(layer, x, u)
    assert layer.A is None
    from test_attention import _torch_mha
    mha = _torch_mha(layer, d, h)
    tx = torch.tensor(x, requires_grad=True)
    cm = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    ty, tw = mha(tx, tx, tx, key_padding_mask=torch.tensor(~mask), attn_mask=cm, need_weights=True,
                 average_attn_weights=False)
    np.testing.assert_allclose(y[mask], ty.detach().numpy()[mask], rtol=1e-9, atol=1e-12)
    a = layer.attention_maps([1])[0]                                         # (h, T, T) of sample 1 only
    v = mask[1]
    np.testing.assert_allclose(a[:, v], tw.detach().numpy()[1][:, v], rtol=1e-9, atol=1e-13)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-11)
    gW = np.concatenate([g["Wq"], g["Wk"], g["Wv"]])
    np.testing.assert_allclose(gW, mha.in_proj_weight.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(g["Wo"], mha.out_proj.weight.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_attention_maps_of_chosen_samples_only(monkeypatch):
    rng = np.random.default_rng(5)
    B, T, d = 4, 200, 8
    mask = _mask(rng, B, T)
    layer = _layer(T, d, heads=2, causal=True, mask=mask)
    x = rng.normal(0, 1, (B, T, d))
    _path(monkeypatch, False)
    layer.forward(x)
    full = np.array(layer.taps["attention"])                                 # (B, h, T, T) of the tile path
    _path(monkeypatch, True)
    layer.forward(x)
    some = layer.attention_maps([3, 1])
    assert some.shape == (2, 2, T, T)
    np.testing.assert_allclose(some, full[[3, 1]], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.attention_maps(-1)[0], full[-1], rtol=1e-12, atol=1e-15)
    n = mask[3].sum()
    np.testing.assert_allclose(some[0, :, :n].sum(-1), 1.0, rtol=1e-12)
    assert not some[0, :, n:].any() and not some[0, :, :, n:].any()


def test_blocked_path_never_holds_batch_heads_T_T(monkeypatch):
    """numpy's allocations in forward + backward stay far below one (B, heads, T, T) array."""
    rng = np.random.default_rng(0)
    B, T, d, h = 2, 2048, 16, 4
    layer = _layer(T, d, heads=h, dtype=np.float32)
    x = rng.normal(0, 1, (B, T, d)).astype(np.float32)
    layer.forward(x, training=True)                                          # scratch buffers exist
    layer.backward(x)
    tracemalloc.start()
    try:
        layer.forward(x, training=True)
        layer.backward(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < B * h * T * T * 4 / 16, peak                               # 8 MB of 134 MB
    assert isinstance(dict.__getitem__(layer.taps, "attention"), _Later)


def test_blocked_path_two_threads_give_the_one_thread_result(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)
    rng = np.random.default_rng(2)
    B, T, d = 6, 300, 8
    layer = _layer(T, d, heads=2, causal=True, mask=_mask(rng, B, T), dtype=np.float32)
    x = rng.normal(0, 1, (B, T, d)).astype(np.float32)
    dy = rng.normal(0, 1, (B, T, d)).astype(np.float32)
    y1, dx1, g1 = _step(layer, x, dy)
    assert len(layer._chunks(B, T, d, d)) > 1
    with parallel.use(2):
        y2, dx2, g2 = _step(layer, x, dy)
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(dx2, dx1)
    for k in g1:
        np.testing.assert_array_equal(g2[k], g1[k], err_msg=k)
