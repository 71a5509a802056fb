"""Conv2D as one GEMM per kernel tap (engine/layers/conv_shift.py) against the im2col path and PyTorch."""
import numpy as np
import pytest

from engine import parallel
from engine.layers import conv_shift, create

CASES = [({"filters": 16, "padding": "explicit", "pad": [1], "use_bias": False}, (16, 9, 7)),
         ({"filters": 5, "kernel_size": [3, 2], "padding": "explicit", "pad": [2, 1]}, (17, 6, 8)),
         ({"filters": 4, "kernel_size": [1]}, (16, 5, 5)),
         ({"filters": 3, "kernel_size": [2]}, (20, 4, 3)),
         ({"filters": 6, "stride": [2], "padding": "explicit", "pad": [1], "use_bias": False}, (16, 8, 7)),   # ResNet
         ({"filters": 4, "kernel_size": [1], "stride": [2]}, (16, 8, 8)),                                     # projection
         ({"filters": 3, "kernel_size": [3, 2], "stride": [3, 2], "padding": "explicit", "pad": [2, 1]}, (16, 7, 9)),
         ({"filters": 2, "kernel_size": [2, 3], "stride": [1, 3]}, (16, 5, 7))]


def run(cfg, shape, shift, dtype, x, dy, W, need_dx=True, threads=1):
    """(y, dx, dW, db) of one Conv2D forward/backward on the shifted path or im2col's."""
    layer = create("Conv2D", "c", cfg)
    layer.build([shape])
    layer.shift, layer.gemm, layer.need_dx = shift, False, need_dx          # conv_shift itself, not conv_gemm
    layer.p["W"], layer.g["W"] = W.astype(dtype), np.zeros(W.shape, dtype)
    if cfg.get("use_bias", True):
        layer.p["b"], layer.g["b"] = np.linspace(-1, 1, W.shape[0]).astype(dtype), np.zeros(W.shape[0], dtype)
    with parallel.use(threads):
        y = layer.forward(x.astype(dtype), True).copy()
        dx = layer.backward(dy.astype(dtype))[0]
    return y, None if dx is None else dx.copy(), layer.g["W"].copy(), layer.g.get("b", np.zeros(1, dtype)).copy()


@pytest.mark.parametrize("cfg,shape", CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_taps_match_im2col(cfg, shape, dtype, tol):
    layer = create("Conv2D", "c", cfg)
    layer.build([shape])
    assert conv_shift.fits(layer)
    rng = np.random.default_rng(0)
    W = rng.normal(size=layer.params([shape])["W"].shape)
    x = rng.normal(size=(7,) + shape)
    dy = rng.normal(size=(7,) + layer.out_shape)
    new, old = (run(cfg, shape, s, dtype, x, dy, W) for s in (True, False))
    for a, b in zip(new, old):
        assert a.dtype == dtype and np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max())


def test_threads_no_dx_and_read_only_input():
    """Two threads give the same bits as one (chunks fixed by the batch); no dx when none is needed; a read-only
    batch is read, not written."""
    cfg, shape = CASES[4]
    layer = create("Conv2D", "c", cfg)
    layer.build([shape])
    rng = np.random.default_rng(1)
    W = rng.normal(size=layer.params([shape])["W"].shape)
    x = rng.normal(size=(64,) + shape).astype(np.float32)
    x.flags.writeable = False
    dy = rng.normal(size=(64,) + layer.out_shape)
    one, two = run(cfg, shape, True, np.float32, x, dy, W), run(cfg, shape, True, np.float32, x, dy, W, threads=2)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)
    y, dx, dW, _ = run(cfg, shape, True, np.float32, x, dy, W, need_dx=False)
    assert dx is None and np.array_equal(y, one[0]) and np.array_equal(dW, one[2])


@pytest.mark.parametrize("stride", [1, 2])
def test_resnet_stage_against_torch(stride):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, W = rng.normal(size=(3, 16, 8, 8)), rng.normal(size=(16, 16, 3, 3)) * 0.1
    dy = rng.normal(size=(3, 16, 8 // stride, 8 // stride))
    cfg = {"filters": 16, "padding": "explicit", "pad": [1], "use_bias": False, "stride": [stride]}
    y, dx, dW, _ = run(cfg, (16, 8, 8), True, np.float64, x, dy, W)
    xt, Wt = torch.tensor(x, requires_grad=True), torch.tensor(W, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, Wt, padding=1, stride=stride)
    yt.backward(torch.tensor(dy))
    assert np.allclose(y, yt.detach().numpy(), atol=1e-10)
    assert np.allclose(dx, xt.grad.numpy(), atol=1e-10) and np.allclose(dW, Wt.grad.numpy(), atol=1e-10)
