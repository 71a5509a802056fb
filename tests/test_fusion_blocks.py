"""Two Conv2D → BatchNorm → ReLU → MaxPool2D blocks as one group (fusion.ConvBlocks): the first block's pool runs
in the second's convolution loop and its BatchNorm gradient sums in the second's backward loop. Same outputs, gradients
and running statistics as the layers run one by one, a finite-difference gradient check, and the same bits on one
and two threads."""
import numpy as np
import pytest

from engine import Graph
from engine.layers.fusion import ConvBlocks, ConvBNReLUPool
from engine.model import Model
from test_fusion import _run


def _graph(channels=(1, 3, 4), hw=(8, 9), blocks=2):
    g = Graph()
    specs = [("x", "Input", {"shape": [channels[0], *hw]})]
    for i in range(blocks):
        specs += [(f"c{i}", "Conv2D", {"filters": channels[i + 1], "padding": "explicit", "pad": [1]}),
                  (f"bn{i}", "BatchNorm", {"momentum": 0.3}), (f"r{i}", "ReLU", {}), (f"p{i}", "MaxPool2D", {})]
    specs += [("f", "Flatten", {}), ("d", "Dense", {"units": 3}), ("sm", "Softmax", {})]
    g.chain(*specs)
    return g


def _data(n, channels, hw, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, channels, *hw)).astype(dtype), rng.normal(size=(n, 3)).astype(dtype)


@pytest.mark.parametrize("channels", [(1, 3, 4), (2, 16, 5)], ids=["im2col", "per-tap"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
@pytest.mark.parametrize("split", [False, True], ids=["one-chunk", "chunks"])
def test_two_blocks_equal_the_layers_one_by_one(channels, training, dtype, tol, split, monkeypatch):
    fused = check_equals_the_layers(lambda: _graph(channels), ConvBlocks, channels[0], training, dtype, tol, split,
                                    monkeypatch)
    assert fused.layers["c1"].shift == (channels[1] >= 16)
    assert "p0" not in fused.acts and ("p1" in fused.acts) == training     # evaluation: one chain to the end


def test_two_blocks_gradient_by_central_differences():
    """dL/dθ of L = Σ u·y (training-mode forward: batch statistics) against float64 central differences."""
    x, u = _data(4, 1, (6, 6), np.float64, seed=2)
    m = Model(_graph((1, 2, 3), (6, 6)), dtype=np.float64, seed=3)
    assert [type(g) for g in m.groups.values()] == [ConvBlocks]
    check_by_central_differences(m, x, u, ("c0/W", "c0/b", "bn0/gamma", "bn0/beta", "c1/W", "bn1/gamma", "bn1/beta",
                                           "d/W"))


def check_equals_the_layers(make, group, c_in, training, dtype, tol, split, monkeypatch):
    """The model of the graph `make()` builds forms one `group`; two steps give the outputs, input gradients and
    parameter gradients of the same model run layer by layer (to `tol`); returns the fused model for more checks."""
    from engine import parallel
    if split:
        monkeypatch.setattr(parallel, "MIN_SHARE", 0)          # several batch chunks, of other sizes per loop
    x, u = _data(6, c_in, (8, 9), dtype)
    fused, alone = Model(make(), dtype=dtype, seed=1), Model(make(), dtype=dtype, seed=1)
    assert [type(g) for g in fused.groups.values()] == [group]
    for step in range(2):                                 # running statistics move the same way
        a = _run(fused, x + step, u, training, every=False)
        b = _run(alone, x + step, u, training, every=True)
        scale = np.abs(b[1]).max()
        np.testing.assert_allclose(a[0], b[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(a[1], b[1], rtol=tol, atol=tol * scale)
        for k in a[2]:
            np.testing.assert_allclose(a[2][k], b[2][k], rtol=tol, atol=tol, err_msg=k)
    return fused


def check_by_central_differences(m, x, u, names):
    """A few entries of each named parameter's dL/dθ, L = Σ u·y, against float64 central differences."""
    m.forward(x, training=True)
    m.grad[:] = 0
    m.backward(u)
    grad = m.grad.copy()
    theta0 = m.theta.copy()
    loss = lambda: float(np.sum(u * m.forward(x, training=True)))      # noqa: E731
    rng = np.random.default_rng(0)
    for name in names:
        sl = m.slices[name]
        for i in rng.choice(np.arange(sl.start, sl.stop), size=min(4, sl.stop - sl.start), replace=False):
            h = 1e-6
            m.theta[:] = theta0
            m.theta[i] += h
            up = loss()
            m.theta[i] -= 2 * h
            down = loss()
            m.theta[:] = theta0
            np.testing.assert_allclose(grad[i], (up - down) / (2 * h), rtol=1e-5, atol=1e-7, err_msg=f"{name}[{i}]")


def test_three_blocks_are_a_pair_and_a_block():
    m = Model(_graph((1, 2, 3, 2), (16, 16), blocks=3))
    assert {n: type(g) for n, g in m.groups.items()} == {"c0": ConvBlocks, "c2": ConvBNReLUPool}


def test_two_blocks_on_two_threads_equal_one_bit_for_bit(monkeypatch):
    from engine import parallel
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)              # split this small batch
    x, u = _data(7, 1, (8, 9), np.float32)
    out = []
    for n in (1, 2):
        m = Model(_graph(), seed=1)
        with parallel.use(n):
            out.append(_run(m, x, u, True, every=False))
        assert len(m.layers["c0"].parts) > 1 and len(m.layers["c1"].parts) > 1
    for p, q in zip(out[0][:2], out[1][:2]):
        assert np.array_equal(p, q)
