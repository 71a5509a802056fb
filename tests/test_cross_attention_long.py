"""CrossAttention in O(T + S) memory: the key-blocked path (running softmax, shared with self-attention) against
the T×S tile path and PyTorch, padded keys and queries as before, attention weights only for the samples asked for."""
import tracemalloc

import numpy as np
import pytest
from gradcheck import build

import engine.layers.attention as att
from engine import parallel
from engine.layers.attention import _Later
from test_attention_memory import _mask, _path


def _layer(T, S, d, de=None, heads=2, mq=None, me=None, dtype=np.float64, seed=1):
    layer = build("CrossAttention", {"heads": heads}, [(T, d), (S, de or d)], seed=seed, dtype=dtype)
    layer.need_dx = True
    layer.in_masks = [mq, me]
    return layer


def _step(layer, x, e, dy):
    """(y, dx, de, {name: gradient}) of one training forward and backward, copied."""
    y = np.array(layer.forward(x, e, training=True))
    dx, de = layer.backward(dy)
    return y, np.array(dx), np.array(de), {k: v.copy() for k, v in layer.g.items()}


@pytest.mark.parametrize("T,S", [(1, 1), (1, 7), (7, 1), (7, 128), (128, 129), (129, 7), (129, 1000), (1000, 128)])
def test_blocked_path_equals_tile_path(T, S, monkeypatch):
    rng = np.random.default_rng(T * 7 + S)
    B, d, de = 3, 8, 6
    mq, me = _mask(rng, B, T), _mask(rng, B, S, empty_row=True)            # the last sample sees no source step
    layer = _layer(T, S, d, de, mq=mq, me=me)
    x, e = rng.normal(0, 1, (B, T, d)), rng.normal(0, 1, (B, S, de))
    dy = rng.normal(0, 1, (B, T, d))
    _path(monkeypatch, False)
    y0, dx0, de0, g0 = _step(layer, x, e, dy)
    a0 = np.array(layer.taps["attention"])
    assert layer.A is not None
    _path(monkeypatch, True)
    y1, dx1, de1, g1 = _step(layer, x, e, dy)
    assert layer.A is None and isinstance(dict.__getitem__(layer.taps, "attention"), _Later)   # not computed yet
    np.testing.assert_allclose(y1, y0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(de1, de0, rtol=1e-9, atol=1e-12)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-9, atol=1e-11, err_msg=k)
    np.testing.assert_allclose(layer.taps["attention"], a0, rtol=1e-12, atol=1e-15)
    assert np.all(y1[~mq] == 0) and np.all(dx1[~mq] == 0)                  # padded queries output, receive nothing
    assert np.all(de1[~me] == 0)                                            # padded keys receive nothing
    np.testing.assert_allclose(y1[-1][mq[-1]], np.broadcast_to(layer.p["bo"], (mq[-1].sum(), 8)), atol=1e-15)
    assert np.all(np.isfinite(dx1))                                         # no source step: z = 0, never NaN


def test_padded_source_steps_change_nothing(monkeypatch):
    """Values in padded source steps do not reach the output or any gradient on the blocked path."""
    _path(monkeypatch, True)
    rng = np.random.default_rng(4)
    B, T, S, d = 3, 150, 300, 8
    me = _mask(rng, B, S)
    layer = _layer(T, S, d, me=me)
    x, e = rng.normal(0, 1, (B, T, d)), rng.normal(0, 1, (B, S, d))
    dy = rng.normal(0, 1, (B, T, d))
    y0, dx0, de0, g0 = _step(layer, x, e, dy)
    e2 = e.copy()
    e2[~me] = rng.normal(0, 100, e2[~me].shape)
    y1, dx1, de1, g1 = _step(layer, x, e2, dy)
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(de1[me], de0[me], rtol=1e-11, atol=1e-13)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_float32_long_sequences_match_float64_tile_path(monkeypatch):
    """T = S = 4,096 in float32 on the blocked path against the float64 T×S path, within float32 rounding."""
    rng = np.random.default_rng(0)
    T = S = 4096
    d = 8
    mq = np.arange(T)[None, :] < np.array([[3500]])                         # (1, T): padded tail
    me = np.arange(S)[None, :] < np.array([[3001]])                         # (1, S)
    ref = _layer(T, S, d, heads=1, mq=mq, me=me)
    x, e = rng.normal(0, 1, (1, T, d)), rng.normal(0, 1, (1, S, d))
    dy = rng.normal(0, 1, (1, T, d))
    _path(monkeypatch, False)
    y0, dx0, de0, g0 = _step(ref, x, e, dy)
    del ref
    layer = _layer(T, S, d, heads=1, mq=mq, me=me, dtype=np.float32)
    _path(monkeypatch, True)
    f = np.float32
    y1, dx1, de1, g1 = _step(layer, x.astype(f), e.astype(f), dy.astype(f))
    assert y1.dtype == np.float32 and layer.A is None
    np.testing.assert_allclose(y1, y0, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(dx1, dx0, rtol=2e-3, atol=2e-4 * np.abs(dx0).max())
    np.testing.assert_allclose(de1, de0, rtol=2e-3, atol=2e-4 * np.abs(de0).max())
    big = max(np.abs(v).max() for v in g0.values())                          # db_K is 0 up to rounding
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=2e-3, atol=1e-4 * big, err_msg=k)
    assert np.all(y1[~mq] == 0) and np.all(de1[~me] == 0)


def test_blocked_path_matches_torch_with_key_padding():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    B, T, S, d, h = 3, 300, 700, 8, 2                                        # > TILE_MAX_T: the blocked path
    assert max(T, S) > att.TILE_MAX_T
    me = _mask(rng, B, S)
    layer = _layer(T, S, d, heads=h, me=me)
    x, e = rng.normal(0, 1, (B, T, d)), rng.normal(0, 1, (B, S, d))
    u = rng.normal(0, 1, (B, T, d))
    y, dx, de, g = _step(layer, x, e, u)
    assert layer.A is None
    from test_attention import _torch_mha
    mha = _torch_mha(layer, d, h)
    tx, te = torch.tensor(x, requires_grad=True), torch.tensor(e, requires_grad=True)
    ty, tw = mha(tx, te, te, key_padding_mask=torch.from_numpy(~me), need_weights=True, average_attn_weights=False)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.attention_maps([1])[0], tw.detach().numpy()[1], rtol=1e-9, atol=1e-13)
    (ty * torch.from_numpy(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(de, te.grad.numpy(), rtol=1e-8, atol=1e-11)
    gW = np.concatenate([g["Wq"], g["Wk"], g["Wv"]])
    np.testing.assert_allclose(gW, mha.in_proj_weight.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(g["Wo"], mha.out_proj.weight.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_attention_maps_of_chosen_samples_only(monkeypatch):
    rng = np.random.default_rng(5)
    B, T, S, d = 4, 90, 200, 8
    mq, me = _mask(rng, B, T), _mask(rng, B, S)
    layer = _layer(T, S, d, mq=mq, me=me)
    x, e = rng.normal(0, 1, (B, T, d)), rng.normal(0, 1, (B, S, d))
    _path(monkeypatch, False)
    layer.forward(x, e)
    full = np.array(layer.taps["attention"])                                 # (B, h, T, S) of the tile path
    _path(monkeypatch, True)
    layer.forward(x, e)
    some = layer.attention_maps([3, 1])
    assert some.shape == (2, 2, T, S)
    np.testing.assert_allclose(some, full[[3, 1]], rtol=1e-12, atol=1e-15)
    n, k = mq[3].sum(), me[3].sum()
    np.testing.assert_allclose(some[0, :, :n].sum(-1), 1.0, rtol=1e-12)
    assert not some[0, :, n:].any() and not some[0, :, :, k:].any()


def test_blocked_path_never_holds_batch_heads_T_S():
    """numpy's allocations in forward + backward stay far below one (B, heads, T, S) array."""
    rng = np.random.default_rng(0)
    B, T, S, d, h = 2, 2048, 1536, 16, 4
    layer = _layer(T, S, d, heads=h, dtype=np.float32)
    x = rng.normal(0, 1, (B, T, d)).astype(np.float32)
    e = rng.normal(0, 1, (B, S, d)).astype(np.float32)
    layer.forward(x, e, training=True)                                       # scratch buffers exist
    layer.backward(x)
    tracemalloc.start()
    try:
        layer.forward(x, e, training=True)
        layer.backward(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < B * h * T * S * 4 / 16, peak                               # ≈ 5 MB of 100 MB
    assert isinstance(dict.__getitem__(layer.taps, "attention"), _Later)


def test_blocked_path_two_threads_give_the_one_thread_result(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)
    rng = np.random.default_rng(2)
    B, T, S, d = 6, 200, 300, 8
    layer = _layer(T, S, d, mq=_mask(rng, B, T), me=_mask(rng, B, S), dtype=np.float32)
    x = rng.normal(0, 1, (B, T, d)).astype(np.float32)
    e = rng.normal(0, 1, (B, S, d)).astype(np.float32)
    dy = rng.normal(0, 1, (B, T, d)).astype(np.float32)
    y1, dx1, de1, g1 = _step(layer, x, e, dy)
    assert len(layer._chunks(B, T + S)) > 1
    with parallel.use(2):
        y2, dx2, de2, g2 = _step(layer, x, e, dy)
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(dx2, dx1)
    np.testing.assert_array_equal(de2, de1)
    for k in g1:
        np.testing.assert_array_equal(g2[k], g1[k], err_msg=k)
