"""Conv2D as per-tap GEMMs over several samples (engine/layers/conv_gemm.py) against the per-sample tap path
(conv_shift), the im2col path, float64 central differences and PyTorch."""
import numpy as np
import pytest

from engine import parallel
from engine.layers import conv_gemm, create

CASES = [({"filters": 32, "padding": "same"}, (16, 14, 14)),                                # digits-cnn's conv2
         ({"filters": 5, "padding": "explicit", "pad": [1], "use_bias": False}, (16, 9, 7)),
         ({"filters": 4, "kernel_size": [5, 3], "padding": "same"}, (17, 6, 8)),
         ({"filters": 3, "kernel_size": [1]}, (20, 4, 3))]


def layer_for(cfg, shape, path, dtype, W, need_dx=True):
    layer = create("Conv2D", "c", cfg)
    layer.build([shape])
    assert layer.gemm                                   # each case runs on conv_gemm by default
    layer.shift, layer.gemm, layer.need_dx = path != "im2col", path == "gemm", need_dx
    layer.p["W"], layer.g["W"] = W.astype(dtype), np.zeros(W.shape, dtype)
    if cfg.get("use_bias", True):
        layer.p["b"], layer.g["b"] = np.linspace(-1, 1, W.shape[0]).astype(dtype), np.zeros(W.shape[0], dtype)
    return layer


def run(cfg, shape, path, dtype, x, dy, W, need_dx=True, threads=1, training=True):
    """(y, dx, dW, db) of one Conv2D forward/backward on the given path ('gemm', 'shift' or 'im2col')."""
    layer = layer_for(cfg, shape, path, dtype, W, need_dx)
    with parallel.use(threads):
        y = layer.forward(x.astype(dtype), training).copy()
        dx = layer.backward(dy.astype(dtype))[0]
    return y, None if dx is None else dx.copy(), layer.g["W"].copy(), layer.g.get("b", np.zeros(1, dtype)).copy()


def data(cfg, shape, batch, seed=0):
    layer = create("Conv2D", "c", cfg)
    layer.build([shape])
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch,) + shape), rng.normal(size=(batch,) + layer.out_shape),
            rng.normal(size=layer.params([shape])["W"].shape) * 0.3)


@pytest.mark.parametrize("cfg,shape", CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("batch,block", [(1, None), (7, None), (64, None), (13, 1), (30, 3)])
def test_matches_per_sample_taps_and_im2col(cfg, shape, dtype, tol, batch, block, monkeypatch):
    """Several samples a block (and, with a small BLOCK, several blocks a chunk, the last one shorter)."""
    if block is not None:
        C, H, W = shape
        monkeypatch.setattr(conv_gemm, "BLOCK", block * (C + cfg["filters"]) * (H + 2) * (W + 2) * 4)
    x, dy, W = data(cfg, shape, batch)
    new = run(cfg, shape, "gemm", dtype, x, dy, W)
    for path in ("shift", "im2col"):
        old = run(cfg, shape, path, dtype, x, dy, W)
        for a, b in zip(new, old):
            assert a.dtype == dtype and a.shape == b.shape
            assert np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max())


def test_threads_evaluation_no_dx_and_read_only_input():
    """Two threads give the same bits as one (chunks and blocks fixed by the batch); an evaluation-mode forward
    gives the training one's output; no dx when none is needed; a read-only batch is read, not written."""
    cfg, shape = CASES[0]
    x, dy, W = data(cfg, shape, 64, seed=1)
    x = x.astype(np.float32)
    x.flags.writeable = False
    one = run(cfg, shape, "gemm", np.float32, x, dy, W)
    two = run(cfg, shape, "gemm", np.float32, x, dy, W, threads=2)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)
    ev = run(cfg, shape, "gemm", np.float32, x, dy, W, training=False)
    assert np.array_equal(ev[0], one[0]) and np.array_equal(ev[2], one[2])
    y, dx, dW, db = run(cfg, shape, "gemm", np.float32, x, dy, W, need_dx=False)
    assert dx is None and np.array_equal(y, one[0]) and np.array_equal(dW, one[2]) and np.array_equal(db, one[3])


def test_gradients_against_central_differences():
    """dx, dW, db of L = Σ y·r against float64 central differences."""
    cfg, shape = ({"filters": 3, "padding": "same"}, (16, 4, 5))
    x, r, W = data(cfg, shape, 3, seed=3)
    layer = layer_for(cfg, shape, "gemm", np.float64, W)

    def loss():
        return float(np.sum(layer.forward(x, True) * r))
    loss()
    dx = layer.backward(r)[0].copy()
    grads = {"x": dx, "W": layer.g["W"].copy(), "b": layer.g["b"].copy()}
    rng, h = np.random.default_rng(4), 1e-6
    for name, arr in (("x", x), ("W", layer.p["W"]), ("b", layer.p["b"])):
        for idx in [tuple(rng.integers(0, n) for n in arr.shape) for _ in range(12)]:
            old = arr[idx]
            arr[idx] = old + h
            up = loss()
            arr[idx] = old - h
            down = loss()
            arr[idx] = old
            assert abs((up - down) / (2 * h) - grads[name][idx]) <= 1e-6 * max(1.0, abs(grads[name][idx]))


def test_against_torch():
    torch = pytest.importorskip("torch")
    cfg, shape = CASES[0]
    x, dy, W = data(cfg, shape, 9, seed=2)
    y, dx, dW, db = run(cfg, shape, "gemm", np.float64, x, dy, W)
    xt, Wt = torch.tensor(x, requires_grad=True), torch.tensor(W, requires_grad=True)
    bt = torch.tensor(np.linspace(-1, 1, W.shape[0]), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, Wt, bt, padding=1)
    yt.backward(torch.tensor(dy))
    assert np.allclose(y, yt.detach().numpy(), atol=1e-10) and np.allclose(dx, xt.grad.numpy(), atol=1e-10)
    assert np.allclose(dW, Wt.grad.numpy(), atol=1e-10) and np.allclose(db, bt.grad.numpy(), atol=1e-10)


def test_which_convolutions_run_here():
    def gemm(cfg, shape):
        layer = create("Conv2D", "c", cfg)
        layer.build([shape])
        return layer.gemm
    assert gemm({"filters": 32, "padding": "same"}, (16, 14, 14))
    assert not gemm({"filters": 32, "padding": "same"}, (8, 14, 14))                 # thin: im2col
    assert not gemm({"filters": 32, "padding": "same", "stride": [2]}, (16, 14, 14))
    assert not gemm({"filters": 32}, (16, 14, 14))                                   # valid: no shared padding
    assert not gemm({"filters": 32, "padding": "same"}, (16, 32, 32))                # long rows: conv_shift
    assert not gemm({"filters": 32, "padding": "same"}, (32, 14, 14))                # wide enough for conv_shift


@pytest.mark.parametrize("cfg,shape", CASES[:3])
def test_kept_buffers_and_argument_plans_across_batches_and_weight_updates(cfg, shape):
    """One layer run on batches of 64, 61 (other chunks), 64 again with new weights, and on a new input array:
    each equals a fresh layer's result bit for bit (the block padding is zeroed once and never written; old
    samples left in a reused block are never read; the per-chunk arguments follow the arrays and weights)."""
    x, dy, W = data(cfg, shape, 64, seed=3)
    layer = layer_for(cfg, shape, "gemm", np.float32, W)
    for n, scale in ((64, 1.0), (61, 1.0), (64, -0.5), (64, 2.0)):
        layer.p["W"][...] = (W * scale).astype(np.float32)         # an update in place, as the optimizer's
        xs = np.ascontiguousarray(x[:n][::-1] * scale, dtype=np.float32)     # a new array each time
        with parallel.use(2):
            y = layer.forward(xs, True).copy()
            dx = layer.backward(np.ascontiguousarray(dy[:n], dtype=np.float32))[0].copy()
        want = run(cfg, shape, "gemm", np.float32, xs, dy[:n], W * scale)
        assert np.array_equal(y, want[0]) and np.array_equal(dx, want[1])
        assert np.array_equal(layer.g["W"], want[2])
