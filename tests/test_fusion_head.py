"""Two Conv-BN-ReLU-Pool blocks → Flatten → Dense → ReLU → Dense as one group (fusion.ConvBlocksHead): the head's
GEMMs run in the second pool's loop, its backward in the loop of the second block's BatchNorm gradient sums. Same
outputs, gradients and running statistics as the layers one by one, a finite-difference gradient check, and the same
bits on one and two threads."""
import numpy as np
import pytest

from engine import Graph
from engine.layers.fusion import ConvBlocksHead
from engine.model import Model
from test_fusion import _run
from test_fusion_blocks import _data, check_by_central_differences, check_equals_the_layers


def _graph(channels=(1, 3, 4), hw=(8, 9), head=True):
    g = Graph()
    specs = [("x", "Input", {"shape": [channels[0], *hw]})]
    for i in range(2):
        specs += [(f"c{i}", "Conv2D", {"filters": channels[i + 1], "padding": "explicit", "pad": [1]}),
                  (f"bn{i}", "BatchNorm", {"momentum": 0.3}), (f"r{i}", "ReLU", {}), (f"p{i}", "MaxPool2D", {})]
    specs += [("f", "Flatten", {}), ("d0", "Dense", {"units": 5}), ("r", "ReLU", {}), ("d1", "Dense", {"units": 3})]
    g.chain(*specs, ("sm", "Softmax", {}))
    return g


@pytest.mark.parametrize("channels", [(1, 3, 4), (2, 16, 5)], ids=["im2col", "per-tap"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
@pytest.mark.parametrize("split", [False, True], ids=["one-chunk", "chunks"])
def test_head_group_equals_the_layers_one_by_one(channels, training, dtype, tol, split, monkeypatch):
    fused = check_equals_the_layers(lambda: _graph(channels), ConvBlocksHead, channels[0], training, dtype, tol, split,
                                    monkeypatch)
    if training:
        assert (len(fused.groups["c0"].ffn.chunks) > 1) == split
        assert "p1" not in fused.acts and "d0" not in fused.acts and "d1" in fused.acts


def test_head_group_after_an_evaluation_forward():
    """A backward after an evaluation-mode forward through the group (Model.forward(given=…)): running statistics,
    as the layers one by one."""
    x, u = _data(5, 1, (8, 8), np.float64)
    fused, alone = Model(_graph(), dtype=np.float64, seed=2), Model(_graph(), dtype=np.float64, seed=2)
    group = fused.groups["c0"]
    y = group.forward(x, training=False)
    for layer in alone.layers.values():
        layer.in_masks = [None]
    z = x
    for n in alone.order[1:-1]:
        z = alone.layers[n].forward(z, training=False)
    np.testing.assert_allclose(y, z, rtol=1e-12, atol=1e-12)
    (dx,) = group.backward(u)
    d = u
    for n in reversed(alone.order[1:-1]):
        (d,) = alone.layers[n].backward(d)
    assert dx is None and d is None                       # the input needs no gradient
    for name in ("c0", "c1", "d0", "d1", "bn1"):
        for k, g in fused.layers[name].g.items():
            np.testing.assert_allclose(g, alone.layers[name].g[k], rtol=1e-10, atol=1e-12, err_msg=f"{name}/{k}")


def test_head_group_gradient_by_central_differences():
    """dL/dθ of L = Σ u·y (training-mode forward: batch statistics) against float64 central differences."""
    x, u = _data(4, 1, (6, 6), np.float64, seed=2)
    m = Model(_graph((1, 2, 3), (6, 6)), dtype=np.float64, seed=3)
    assert [type(g) for g in m.groups.values()] == [ConvBlocksHead]
    check_by_central_differences(m, x, u, ("c0/W", "bn0/gamma", "c1/W", "c1/b", "bn1/gamma", "bn1/beta", "d0/W",
                                           "d0/b", "d1/W", "d1/b"))


def test_head_group_on_two_threads_equals_one_bit_for_bit(monkeypatch):
    from engine import parallel
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)              # split this small batch
    x, u = _data(7, 1, (8, 9), np.float32)
    out = []
    for n in (1, 2):
        m = Model(_graph(), seed=1)
        with parallel.use(n):
            out.append(_run(m, x, u, True, every=False))
        assert len(m.groups["c0"].ffn.chunks) > 1
    for p, q in zip(out[0], out[1]):
        if isinstance(p, dict):
            assert all(np.array_equal(p[k], q[k]) for k in p)
        else:
            assert np.array_equal(p, q)


def test_workload_c_runs_as_one_group():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import wl_cnn
    m = Model(wl_cnn.cnn_graph(), seed=0)
    assert [type(g) for g in m.groups.values()] == [ConvBlocksHead]
