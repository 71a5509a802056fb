"""fusion_block.SublayerChain: consecutive transformer sublayers and a mean-pool → Dense head in one batch-parallel
loop each way give the layers' own outputs and gradients (float64 to 1e-12, float32 to its rounding), the same bits
on one and two threads, central-difference gradients, and form only where no other layer reads an inner output."""
import numpy as np
import pytest

from engine import Graph, parallel
from engine.model import Model
from graph_edits import read_twice


def _blocks(n=2, causal=(False, True), pool="mean", head=True, T=6, d=8, embed=True):
    """x → [Dense] → n × (MHSA → Add → LayerNorm → Dense → ReLU → Dense → Add → LayerNorm) → TimePool → Dense."""
    g = Graph()
    g.add_node("Input", "x", {"shape": [T, d]})
    u = "x"
    if embed:                                             # the chain's input then needs its gradient
        g.chain(("emb", "Dense", {"units": d}), after="x")
        u = "emb"
    for i in range(n):
        g.chain((f"att{i}", "MultiHeadSelfAttention", {"heads": 2, "causal": causal[i % len(causal)]}), after=u)
        g.add_node("Add", f"ra{i}")
        g.connect(u, f"ra{i}")
        g.connect(f"att{i}", f"ra{i}")
        g.chain((f"ln{i}a", "LayerNorm", {}), (f"f{i}a", "Dense", {"units": 12}), (f"relu{i}", "ReLU", {}),
                (f"f{i}b", "Dense", {"units": d}), after=f"ra{i}")
        g.add_node("Add", f"rb{i}")
        g.connect(f"ln{i}a", f"rb{i}")
        g.connect(f"f{i}b", f"rb{i}")
        g.chain((f"ln{i}b", "LayerNorm", {}), after=f"rb{i}")
        u = f"ln{i}b"
    g.chain(("pool", "TimePool", {"mode": pool}), after=u)
    g.chain(*([("out", "Dense", {"units": 3})] if head else []), ("sm", "Softmax", {}),
            after="pool")
    return g


def _run(m, x, u, mask, every):
    y = m.forward(x, training=True, logits=True, mask=mask, every=every)
    m.grad[:] = 0
    m.backward(u, logits=True)
    return y.copy(), m.grad.copy()


def _data(dtype, B=7, T=6, d=8, masked=True, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, d)).astype(dtype)
    u = rng.normal(size=(B, 3)).astype(dtype)
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, B)[:, None] if masked else None
    return x, u, mask


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_chain_equals_the_layers_one_by_one(masked, dtype, tol):
    x, u, mask = _data(dtype, masked=masked)
    fused, alone = Model(_blocks(), dtype=dtype, seed=1), Model(_blocks(), dtype=dtype, seed=1)
    assert {n: type(g).__name__ for n, g in fused.groups.items()} == {"att0": "SublayerChain"}
    assert fused.groups["att0"].nodes[-2:] == ("pool", "out")          # both blocks, the pool and the head
    a, b = _run(fused, x, u, mask, False), _run(alone, x, u, mask, True)
    for p, q in zip(a, b):
        np.testing.assert_allclose(p, q, rtol=tol, atol=tol * np.abs(q).max())
    assert "out" in fused.acts and not any(v in fused.acts for v in ("att0", "ln0a", "relu1", "pool"))
    att = fused.layers["att1"].taps["attention"]                       # the attention view's tap, causal
    assert att.shape == (7, 2, 6, 6) and np.all(np.triu(att, 1) == 0)
    if masked:                                                          # padded keys get no weight
        assert np.all(att[~np.broadcast_to(mask[:, None, None, :], att.shape)] == 0)


@pytest.mark.parametrize("pool,head,kinds", [
    ("mean", False, {"att0": "SublayerChain"}),                        # the pool, no head (Softmax reads it)
    ("max", True, {"att0": "SublayerChain", "pool": None})])            # a max pool is not a chain stage
def test_chain_tails(pool, head, kinds):
    x, u, mask = _data(np.float64)
    g = _blocks(pool=pool, head=head)
    if not head:
        u = u[:, :1].repeat(8, 1)                                       # the pool's 8 features are the logits
    fused, alone = Model(g, dtype=np.float64, seed=1), Model(g, dtype=np.float64, seed=1)
    assert {n: type(v).__name__ for n, v in fused.groups.items()} == {k: v for k, v in kinds.items() if v}
    last = fused.groups["att0"].nodes[-1]
    assert last == ("pool" if pool == "mean" else "ln1b")
    a, b = _run(fused, x, u, mask, False), _run(alone, x, u, mask, True)
    for p, q in zip(a, b):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-12 * np.abs(q).max())


def test_no_chain_when_an_inner_output_is_read_elsewhere():
    g = _blocks(n=1)
    read_twice(g, ("pool2", "TimePool", {}), "ln0a", ("both", "Add"), "out")   # a second reader of the first LayerNorm
    m = Model(g)
    assert {n: type(v).__name__ for n, v in m.groups.items()} == {"att0": "SublayerAddNorm",
                                                                  "f0a": "SublayerChain"}


def test_chain_gradient_equals_central_differences():
    x, u, mask = _data(np.float64, B=4, T=5)
    g = _blocks(n=1, causal=(True,), T=5)
    m = Model(g, dtype=np.float64, seed=3)
    assert type(m.groups["att0"]).__name__ == "SublayerChain"
    loss = lambda: float(np.sum(m.forward(x, training=True, logits=True, mask=mask) * u))   # noqa: E731
    _run(m, x, u, mask, False)
    grad = m.grad.copy()
    rng = np.random.default_rng(5)
    for name, sl in m.slices.items():                                   # a few entries of every parameter
        for i in rng.choice(np.arange(sl.start, sl.stop), size=min(3, sl.stop - sl.start), replace=False):
            keep, h = m.theta[i], 1e-6
            m.theta[i] = keep + h
            up = loss()
            m.theta[i] = keep - h
            down = loss()
            m.theta[i] = keep
            assert abs((up - down) / (2 * h) - grad[i]) <= 1e-6 * max(1.0, abs(grad[i])), (name, i)


def test_chain_on_two_threads_equals_one_bit_for_bit(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)                      # split this small batch
    x, u, mask = _data(np.float32, B=9)
    out = []
    for n in (1, 2):
        m = Model(_blocks(), seed=1)
        with parallel.use(n):
            out.append(_run(m, x, u, mask, False))
        assert len(m.groups["att0"].chunks) > 1
    assert all(np.array_equal(p, q) for p, q in zip(out[0], out[1]))


def test_mean_weights_are_one_over_each_sequences_valid_steps():
    from engine.layers.sequence import mean_weights
    m = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)     # lengths 2, 4 and an empty sequence
    w = mean_weights(m, np.float32)
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, [[0.5, 0.5, 0, 0], [0.25] * 4, [0] * 4])
