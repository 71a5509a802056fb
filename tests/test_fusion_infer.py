"""Evaluation chains (engine/layers/fusion_infer.py): the same outputs as the layers run one by one (every=True),
one batch-parallel loop per forward, bit-identical on one and two threads, and the layers' own path wherever a
chain cannot run (masks, a second reader, training, backward)."""
import numpy as np
import pytest

from engine import Graph, parallel
from engine.layers import fusion_infer
from engine.model import Model
from graph_edits import read_twice


def _cnn(channels=1, hw=(12, 10)):
    """Workload c-infer's shape, smaller: Conv-BN-ReLU-Pool twice, Flatten, Dense, ReLU, Dense, Softmax."""
    g = Graph()
    g.chain(("x", "Input", {"shape": [channels, *hw]}),
            ("c1", "Conv2D", {"filters": 4, "padding": "explicit", "pad": [1]}), ("bn1", "BatchNorm", {}),
            ("r1", "ReLU", {}), ("p1", "MaxPool2D", {}),
            ("c2", "Conv2D", {"filters": 16, "padding": "explicit", "pad": [1]}), ("bn2", "BatchNorm", {}),
            ("r2", "ReLU", {}), ("p2", "MaxPool2D", {}),
            ("f", "Flatten", {}), ("d1", "Dense", {"units": 12}), ("r3", "ReLU", {}),
            ("d2", "Dense", {"units": 5}), ("sm", "Softmax", {}))
    return g


def _varied():
    """Every kind of step: a per-tap (16 channels), strided and unpadded convolution, BatchNorm alone, AveragePool,
    a 3×3 MaxPool, Sigmoid, Tanh, Dropout, Reshape and Dense on (T, F) rows."""
    g = Graph()
    g.chain(("x", "Input", {"shape": [16, 11, 9]}),
            ("c1", "Conv2D", {"filters": 6, "kernel_size": [3, 2], "stride": [2, 1]}), ("bn", "BatchNorm", {}),
            ("t", "Tanh", {}), ("ap", "AveragePool2D", {}),
            ("c2", "Conv2D", {"filters": 5, "padding": "same"}), ("s", "Sigmoid", {}),
            ("mp", "MaxPool2D", {"kernel_size": [2, 3], "stride": [1, 1]}), ("dr", "Dropout", {"rate": 0.3}),
            ("rs", "Reshape", {"shape": [5, -1]}), ("d", "Dense", {"units": 7}), ("bn2", "BatchNorm", {}),
            ("r", "ReLU", {}), ("f", "Flatten", {}), ("d2", "Dense", {"units": 3}))
    return g


def _pools():
    """Conv → ReLU → MaxPool (no BatchNorm) at stride 2 on an odd size, then an unpadded convolution without
    bias → BatchNorm → ReLU → MaxPool on an odd size (the pool drops the last row and column)."""
    g = Graph()
    g.chain(("x", "Input", {"shape": [3, 13, 11]}),
            ("c1", "Conv2D", {"filters": 4, "kernel_size": [3, 2], "stride": [2, 1], "padding": "explicit",
                              "pad": [1, 0]}),
            ("r1", "ReLU", {}), ("p1", "MaxPool2D", {}),
            ("c2", "Conv2D", {"filters": 6, "kernel_size": [2], "use_bias": False}), ("bn2", "BatchNorm", {}),
            ("r2", "ReLU", {}), ("p2", "MaxPool2D", {}), ("f", "Flatten", {}), ("d", "Dense", {"units": 3}))
    return g


def _randomize(m, seed=1):
    """Non-trivial running statistics and BatchNorm coefficients (a trained model's)."""
    rng = np.random.default_rng(seed)
    w = m.weights()
    for k, v in w.items():
        if k.endswith("running_var"):
            w[k] = rng.uniform(0.5, 1.5, v.shape)
        elif k.endswith("gamma"):                                 # some negative: a folded scale flips the maximum
            w[k] = rng.uniform(0.5, 1.5, v.shape) * np.where(np.arange(v.size) % 3 == 1, -1, 1)
        elif k.endswith(("running_mean", "beta")):
            w[k] = rng.normal(0, 0.5, v.shape)
    m.set_weights(w)
    return m


def _loops(monkeypatch):
    """A counter of parallel loops that run on more than one thread."""
    count = [0]
    run = parallel._pool.run

    def counting(fn, items, n):
        count[0] += min(n, len(items)) > 1
        return run(fn, items, n)
    monkeypatch.setattr(parallel._pool, "run", counting)
    return count


@pytest.mark.parametrize("graph,chain", [(_cnn, ["c1"]), (lambda: _cnn(16), ["c1"]), (_varied, ["c1"]),
                                         (_pools, ["c1"])])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("B", [1, 2, 7, 33])
def test_chain_equals_the_layers_one_by_one(graph, chain, dtype, tol, B, monkeypatch):
    monkeypatch.setattr(fusion_infer, "TARGET", 40_000)           # several chunks even for small batches
    m = _randomize(Model(graph(), dtype=dtype, seed=1))
    x = np.random.default_rng(B).normal(size=(B,) + m.input_shape).astype(dtype)
    y = m.forward(x).copy()
    assert [n for n, g in m.fused_now.items() if isinstance(g, fusion_infer.Chain)] == chain
    assert set(m.acts) == {"x", m.output}                         # inner outputs are not kept
    if B > 2:
        assert len(m.fused_now["c1"].chunks(B)) > 1
    kinds = {type(s).__name__ for s in m.fused_now["c1"].steps}
    assert "_ConvReLUPool" in kinds or graph is _varied
    ref = m.forward(x, every=True)
    assert y.dtype == dtype and y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


def test_chain_covers_the_whole_cnn_and_stops_before_the_head_for_logits():
    m = Model(_cnn())
    x = np.random.default_rng(0).normal(size=(4,) + m.input_shape).astype(np.float32)
    m.forward(x)
    assert list(m.fused_now) == ["c1"] and m.fused_now["c1"].nodes[-1] == "sm"
    z = m.forward(x, logits=True)
    assert m.fused_now["c1"].nodes[-1] == "d2"
    np.testing.assert_allclose(z, m.forward(x, logits=True, every=True), rtol=1e-5, atol=1e-6)
    m.forward(x, training=True)                                   # training keeps its own groups
    assert {n: type(g).__name__ for n, g in m.fused_now.items()} == {"c1": "ConvBlocksHead"}


def test_one_parallel_loop_per_forward(monkeypatch):
    m = Model(_cnn(hw=(28, 28)))
    x = np.random.default_rng(0).normal(size=(64,) + m.input_shape).astype(np.float32)
    count = _loops(monkeypatch)
    with parallel.use(2):
        m.forward(x)
        assert count[0] == 1
        count[0] = 0
        m.forward(x, every=True)
        assert count[0] > 1                                      # the layers one by one: a loop each


@pytest.mark.parametrize("B", [6, 33, 64])
def test_two_threads_give_the_same_bits_as_one(B, monkeypatch):
    monkeypatch.setattr(fusion_infer, "TARGET", 50_000)
    outs = []
    for n in (1, 2):
        m = _randomize(Model(_cnn(16), seed=3))
        x = np.random.default_rng(0).normal(size=(B,) + m.input_shape).astype(np.float32)
        with parallel.use(n):
            outs.append((m.forward(x).copy(), m.fused_now["c1"].chunks(B)))
    assert len(outs[0][1]) > 1 and outs[0][1] == outs[1][1]
    assert np.array_equal(outs[0][0], outs[1][0])


def test_chunks_are_even_and_cover_the_batch(monkeypatch):
    m = Model(_cnn())
    m.forward(np.zeros((2,) + m.input_shape, np.float32))
    chain = m.fused_now["c1"]
    for target in (10_000, 40_000, 123_456):
        monkeypatch.setattr(fusion_infer, "TARGET", target)
        for B in (1, 2, 3, 17, 64, 65, 200):
            parts = chain.chunks(B)
            assert parts[0][0] == 0 and parts[-1][1] == B and all(a < e for a, e in parts)
            assert all(p[1] == q[0] for p, q in zip(parts, parts[1:]))
            assert len(parts) in (1, B) or len(parts) % 2 == 0
            assert max(e - a for a, e in parts) - min(e - a for a, e in parts) <= 1


def test_new_weights_and_statistics_are_used_and_outputs_are_fresh():
    m = Model(_cnn())
    x = np.random.default_rng(0).normal(size=(5,) + m.input_shape).astype(np.float32)
    a = m.forward(x)
    _randomize(m, seed=7)
    m.layers["c2"].p["W"] *= 2
    b = m.forward(x)
    assert not np.allclose(a, b)                                 # a is not overwritten, b uses the new weights
    np.testing.assert_allclose(b, m.forward(x, every=True), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(m.predict(x, batch_size=2), b, rtol=2e-6, atol=2e-6)


def test_read_only_and_non_contiguous_inputs():
    m = _randomize(Model(_cnn()))
    x = np.random.default_rng(0).normal(size=(6,) + m.input_shape).astype(np.float32)
    ref = m.forward(x, every=True).copy()
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(m.forward(ro), ref, rtol=2e-6, atol=2e-6)
    wide = np.repeat(x, 2, axis=0)[::2]                          # a strided view
    np.testing.assert_allclose(m.forward(wide), ref, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("logits", [False, True])
def test_backward_after_an_evaluation_forward_equals_the_layers(logits):
    """The gradient view runs backward after an evaluation forward: the chain's layers run again one by one."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 1, 12, 10))
    u = rng.normal(size=(5, 5))
    out = []
    for every in (False, True):
        m = _randomize(Model(_cnn(), dtype=np.float64, seed=2))
        y = m.forward(x, logits=logits, every=every)
        m.grad[:] = 0
        m.backward(u, logits=logits)
        out.append((y.copy(), m.grad.copy()))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-10, atol=1e-12)
    assert np.abs(out[0][1]).max() > 0


def test_no_chain_through_an_output_another_layer_reads():
    g = _cnn()
    read_twice(g, ("f2", "Flatten", {}), "r1", ("cat", "Concatenate"), "d1")
    m = Model(g)
    x = np.random.default_rng(0).normal(size=(3,) + m.input_shape).astype(np.float32)
    y = m.forward(x)
    chains = {n: g.nodes for n, g in m.fused_now.items() if isinstance(g, fusion_infer.Chain)}
    assert chains == {"c1": ("c1", "bn1", "r1"), "p1": ("p1", "c2", "bn2", "r2", "p2"), "d1": ("d1", "r3", "d2", "sm")}
    assert "r1" in m.acts and "f" in m.acts
    np.testing.assert_allclose(y, m.forward(x, every=True), rtol=2e-6, atol=2e-6)


def _sequence():
    g = Graph()
    g.chain(("x", "Input", {"shape": [6, 4]}), ("d1", "Dense", {"units": 8}), ("bn", "BatchNorm", {}),
            ("r", "ReLU", {}), ("d2", "Dense", {"units": 3}), ("t", "Tanh", {}))
    return g


@pytest.mark.parametrize("masked", [False, True])
def test_sequences_with_and_without_masks(masked):
    """(T, F) rows: the chain runs per chunk of samples; with a mask its layers run one by one as before."""
    m = _randomize(Model(_sequence(), dtype=np.float64))
    x = np.random.default_rng(0).normal(size=(5, 6, 4))
    mask = np.arange(6)[None, :] < np.array([6, 2, 4, 1, 5])[:, None] if masked else None
    y = m.forward(x, mask=mask).copy()
    assert isinstance(m.fused_now["d1"], fusion_infer.Chain)
    np.testing.assert_allclose(y, m.forward(x, mask=mask, every=True), rtol=1e-12, atol=1e-12)
    if masked:
        assert np.array_equal(m.masks["t"], mask)


def test_a_single_kernel_or_a_layer_without_one_makes_no_chain():
    g = Graph()
    g.chain(("x", "Input", {"shape": [3, 8, 8]}), ("c", "Conv2D", {"filters": 2}), ("f", "Flatten", {}),
            ("ln", "LayerNorm", {}), ("d", "Dense", {"units": 2}))
    m = Model(g)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    y = m.forward(x)
    assert not any(isinstance(v, fusion_infer.Chain) for v in m.fused_now.values())
    np.testing.assert_allclose(y, m.forward(x, every=True), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("every", [False, True], ids=["chain", "layers"])
def test_an_empty_batch_evaluates_to_an_empty_output(every):
    """0 samples: (0, 5) on the evaluation chain and layer by layer (BatchNorm's rows of (0, C, H·W))."""
    m = Model(_cnn())
    y = m.forward(np.zeros((0,) + m.input_shape, np.float32), every=every)
    assert y.shape == (0, 5)
