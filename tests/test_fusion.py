"""Fused layer groups (engine/layers/fusion.py): the same forward, gradients and running statistics as the
layers run one by one, and only where no other layer reads the inner outputs."""
import numpy as np
import pytest

from engine import Graph
from engine.model import Model


def _graph(hw=(7, 6), tap_relu=False, channels=2):
    g = Graph()
    g.chain(("x", "Input", {"shape": [channels, *hw]}), ("c", "Conv2D", {"filters": 3, "padding": "same"}),
            ("bn", "BatchNorm", {"momentum": 0.3}), ("r", "ReLU", {}), ("p", "MaxPool2D", {}),
            ("f", "Flatten", {}), ("d", "Dense", {"units": 4}), ("sm", "Softmax", {}))
    if tap_relu:                                          # a second reader of the ReLU's output: no fusion
        g.chain(("p2", "MaxPool2D", {}), ("f2", "Flatten", {}), after="r")
        g.add_node("Concatenate", "cat")
        g.disconnect(next(e for e in g.edges if e.dst == "d"))
        for s in ("f", "f2"):
            g.connect(s, "cat")
        g.connect("cat", "d")
    return g


def _run(m, x, u, training, every):
    y = m.forward(x, training=training, every=every)
    m.grad[:] = 0
    m.backward(u)
    return y.copy(), m.grad.copy(), {k: v.copy() for k, v in m.state.items()}


@pytest.mark.parametrize("hw", [(7, 6), (8, 8), (5, 9)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_fused_group_equals_the_layers_one_by_one(hw, training, dtype, tol):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 2, *hw)).astype(dtype)
    u = rng.normal(size=(5, 4)).astype(dtype)
    fused, alone = Model(_graph(hw), dtype=dtype, seed=1), Model(_graph(hw), dtype=dtype, seed=1)
    assert list(fused.groups) == ["c"]                    # Conv2D → BatchNorm → ReLU → MaxPool2D
    for step in range(2):                                 # running statistics move the same way
        a = _run(fused, x + step, u, training, every=False)
        b = _run(alone, x + step, u, training, every=True)
        for p, q in zip(a[:2], b[:2]):
            np.testing.assert_allclose(p, q, rtol=tol, atol=tol)
        for k in a[2]:
            np.testing.assert_allclose(a[2][k], b[2][k], rtol=tol, atol=tol, err_msg=k)
    kept = "p" if training else "sm"                      # evaluation: c … sm run as one chain (fusion_infer)
    assert "c" not in fused.acts and "bn" not in fused.acts and "r" not in fused.acts and kept in fused.acts


def test_no_group_when_another_layer_reads_the_relu():
    m = Model(_graph(tap_relu=True))
    assert m.groups == {}


def test_every_keeps_each_output_for_activation_views():
    from engine.pca import activations
    m = Model(_graph())
    x = np.random.default_rng(0).normal(size=(3, 2, 7, 6)).astype(np.float32)
    assert activations(m, "r", x).shape == (3, 3 * 7 * 6)
    m.forward(x)                                          # evaluation: c … sm run as one chain (fusion_infer)
    fused = m.acts["sm"].copy()
    np.testing.assert_allclose(activations(m, "sm", x), fused, rtol=1e-6, atol=1e-7)


def test_fused_group_on_two_threads_equals_one_bit_for_bit(monkeypatch):
    from engine import parallel
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)              # split this small batch
    rng = np.random.default_rng(0)
    x, u = rng.normal(size=(6, 2, 7, 6)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    out = []
    for n in (1, 2):
        m = Model(_graph(), seed=1)
        with parallel.use(n):
            out.append(_run(m, x, u, True, every=False))
        assert len(m.layers["bn"].parts) > 1
    assert np.array_equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])


def test_fused_group_backward_keeps_float32_accuracy_far_from_zero():
    """Inputs centred at 1,000 with a spread of 0.01 (statistics prone to cancellation) give the layers' gradients
    in float32, after an evaluation-mode forward (the group then recomputes its window maxima) as after training."""
    rng = np.random.default_rng(3)
    x = (1000 + 0.01 * rng.normal(size=(8, 2, 8, 8))).astype(np.float32)
    u = rng.normal(size=(8, 4)).astype(np.float32)
    g = _graph((8, 8))
    g.remove_node("c")
    g.connect("x", "bn")
    fused, alone = Model(g, dtype=np.float32, seed=1), Model(g, dtype=np.float32, seed=1)
    assert list(fused.groups) == ["bn"]
    for training in (True, False):
        a, b = _run(fused, x, u, training, every=False), _run(alone, x, u, training, every=True)
        np.testing.assert_allclose(a[1], b[1], rtol=2e-4, atol=1e-5 * np.abs(b[1]).max())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels", [2, 16], ids=["im2col", "per-tap"])
def test_conv_group_statistics_keep_float32_accuracy_far_from_zero(channels, threads, monkeypatch):
    """Convolution outputs centred at ≈ 1,000 with a small spread: each batch chunk's BatchNorm sums are taken about
    its own first value and re-expressed about the first chunk's, and the statistics, running statistics, output
    and gradients equal the layers run one by one (float64 there) to float32 rounding."""
    from engine import parallel
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)              # several chunks
    rng = np.random.default_rng(4)
    x = (1000 + 0.01 * rng.normal(size=(8, channels, 8, 8))).astype(np.float32)
    u = rng.normal(size=(8, 4)).astype(np.float32)
    g = lambda: _graph((8, 8), channels=channels)             # noqa: E731
    fused, alone = Model(g(), dtype=np.float32, seed=1), Model(g(), dtype=np.float64, seed=1)
    assert fused.layers["c"].shift == (channels >= 16)
    assert list(fused.groups) == ["c"]
    with parallel.use(threads):
        a = _run(fused, x, u, True, every=False)
    assert len(fused.layers["c"].parts) > 1
    b = _run(alone, x.astype(np.float64), u.astype(np.float64), True, every=True)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-3, atol=1e-4 * np.abs(b[1]).max())
    for k in a[2]:
        np.testing.assert_allclose(a[2][k], b[2][k], rtol=1e-5, atol=1e-6, err_msg=k)


def _block():
    """x → MHSA → Add(x, ·) → LayerNorm → Dense → ReLU → Dense → Add → LayerNorm → TimePool → Dense → Softmax."""
    g = Graph()
    g.chain(("x", "Input", {"shape": [6, 8]}), ("att", "MultiHeadSelfAttention", {"heads": 2}))
    g.add_node("Add", "res1")
    g.connect("x", "res1")
    g.connect("att", "res1")
    g.chain(("ln1", "LayerNorm", {}), ("ff1", "Dense", {"units": 12}), ("relu", "ReLU", {}),
            ("ff2", "Dense", {"units": 8}), after="res1")
    g.add_node("Add", "res2")
    g.connect("ln1", "res2")
    g.connect("ff2", "res2")
    g.chain(("ln2", "LayerNorm", {}), ("pool", "TimePool", {}), ("out", "Dense", {"units": 3}),
            ("sm", "Softmax", {}), after="res2")
    return g


def _read_twice(node):
    """_block with `node`'s output also pooled into the head (a second reader: no group may hide it)."""
    g = _block()
    g.chain(("pool2", "TimePool", {}), after=node)
    g.add_node("Concatenate", "cat")
    g.disconnect(next(e for e in g.edges if e.dst == "out"))
    for s in ("pool", "pool2"):
        g.connect(s, "cat")
    g.connect("cat", "out")
    return g


def _embedded():
    """_block after a Dense: the attention's input needs its gradient (u's: the attention's dx + the residual's)."""
    g = _block()
    g.disconnect(next(e for e in g.edges if e.src == "x" and e.dst == "att"))
    g.disconnect(next(e for e in g.edges if e.src == "x" and e.dst == "res1"))
    g.chain(("emb", "Dense", {"units": 8}), after="x")
    g.connect("emb", "att")
    g.connect("emb", "res1")
    return g


SUB, CHAIN = "SublayerAddNorm", "SublayerChain"


@pytest.mark.parametrize("graph,kinds", [
    (_block, {"att": CHAIN}),                                    # LayerNorm(u + f(u)) twice, the pool, the head
    (_embedded, {"att": CHAIN}),
    (lambda: _read_twice("relu"), {"att": SUB, "ff1": "DenseReLU", "res2": "AddLayerNorm"}),
    (lambda: _read_twice("res2"), {"att": SUB, "ff1": "DenseReLUDense"}),
    (lambda: _read_twice("att"), {"res1": "AddLayerNorm", "ff1": CHAIN})])     # the sublayer and its pool
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_dense_relu_and_add_layernorm_groups_equal_the_layers(graph, kinds, masked, dtype, tol):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 6, 8)).astype(dtype)
    u = rng.normal(size=(5, 3)).astype(dtype)
    mask = np.arange(6)[None, :] < np.array([6, 2, 4, 1, 5])[:, None] if masked else None
    fused, alone = Model(graph(), dtype=dtype, seed=1), Model(graph(), dtype=dtype, seed=1)
    assert {n: type(g).__name__ for n, g in fused.groups.items()} == kinds
    out = []
    for m, every in ((fused, False), (alone, True)):
        y = m.forward(x, training=True, mask=mask, every=every)
        m.grad[:] = 0
        m.backward(u)
        out.append((y.copy(), m.grad.copy()))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=tol, atol=tol)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=tol, atol=tol)
    for g in fused.groups.values():                       # inner outputs are not kept, the group's output is
        assert not any(v in fused.acts for v in g.nodes[:-1]) and g.nodes[-1] in fused.acts
    if masked:
        assert fused.masks["relu"] is not None and np.array_equal(fused.masks["relu"], mask)


def test_no_dense_relu_group_when_the_dense_output_is_read_twice():
    g = _block()
    g.add_node("Add", "tap")
    g.connect("ff1", "tap")
    g.connect("relu", "tap")
    g.disconnect(next(e for e in g.edges if e.src == "relu" and e.dst == "ff2"))
    g.connect("tap", "ff2")
    m = Model(g)
    assert "ff1" not in m.groups and "att" in m.groups


def test_sublayer_groups_on_two_threads_equal_one_bit_for_bit(monkeypatch):
    from engine import parallel
    from engine.layers.core import Dense
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)
    monkeypatch.setattr(Dense, "CHUNK", 64)                    # split this small batch into row runs
    rng = np.random.default_rng(4)
    x, u = rng.normal(size=(6, 6, 8)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    out = []
    for n in (1, 2):
        m = Model(_block(), seed=1)
        with parallel.use(n):
            out.append(_run(m, x, u, True, every=False))
        assert len(m.groups["att"].chunks) > 1
    assert np.array_equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])
