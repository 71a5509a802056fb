"""Regression tests for kernel defects: MaxPool2D backward after eval, BatchNorm divergence and (T, F) axes."""
import numpy as np
import pytest

from engine import Graph
from engine.data import Dataset
from engine.layers import create
from engine.model import Model
from engine.project import training_config
from engine.trainer import Trainer
from gradcheck import build, numeric


# ---- MaxPool2D: backward after an evaluation-mode forward ----
@pytest.mark.parametrize("cfg,shape", [({}, (1, 6, 6)), ({"kernel_size": (3, 2), "stride": (2, 1)}, (2, 7, 4))])
def test_maxpool_backward_after_eval_forward_routes_to_the_maxima(cfg, shape):
    p = create("MaxPool2D", "p", cfg)
    p.build([shape])
    x = np.random.default_rng(0).random((2,) + shape)
    y = p.forward(x)                                                 # evaluation mode
    dx, = p.backward(np.ones_like(y))
    assert dx.sum() == y.size                                        # one gradient per window: 18 for (1, 6, 6)
    q = create("MaxPool2D", "q", cfg)
    q.build([shape])
    yt = q.forward(x, training=True)
    dxt, = q.backward(np.ones_like(yt))
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_array_equal(dx, dxt)
    dx2, = p.backward(np.ones_like(y))                               # backward twice: same answer
    np.testing.assert_array_equal(dx2, dxt)


# ---- BatchNorm: a non-finite batch neither raises nor poisons the running statistics ----
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("shape", [(3,), (2, 3, 3)])
def test_batchnorm_non_finite_batch_keeps_running_stats(bad, shape):
    layer = build("BatchNorm", {}, [shape], dtype=np.float32)
    x = np.random.default_rng(1).normal(size=(4,) + shape).astype(np.float32)
    x.flat[5] = bad
    rm, rv = layer.p["running_mean"].copy(), layer.p["running_var"].copy()
    y = layer.forward(x, training=True)                               # old code: ZeroDivisionError
    assert not np.all(np.isfinite(y))
    np.testing.assert_array_equal(layer.p["running_mean"], rm)
    np.testing.assert_array_equal(layer.p["running_var"], rv)
    layer.backward(np.ones_like(y))                                   # no exception either
    layer.forward(np.ones_like(x), training=True)                     # a finite batch updates them again
    assert not np.array_equal(layer.p["running_mean"], rm)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dense_batchnorm_at_a_huge_learning_rate_stops_as_diverged(seed):
    g = Graph()
    g.chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 8}), ("bn", "BatchNorm", {}),
            ("r", "ReLU", {}), ("o", "Dense", {"units": 3}), ("s", "Softmax", {}))
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(64, 4)) * 50).astype(np.float32)
    ds = Dataset(x, rng.integers(0, 3, 64), "multiclass", "t", ["a", "b", "c"])
    m = Model(g, seed=seed)
    tr = Trainer(m, training_config({"loss": "cce", "optimizer": "adam", "lr": 10.0, "batch_size": 8,
                                     "epochs": 30, "seed": seed}), ds)
    res = tr.run()                                                    # must not raise
    assert res["status"] == "diverged" and "exploded" in res["message"], res["message"]
    assert res["train_loss"] <= tr.limit                              # the kept weights are not the exploded ones
    for k, v in m.state.items():
        assert np.all(np.isfinite(v)), k


# ---- BatchNorm on a (T, F) sequence: per feature over batch and (valid) time steps ----
def _bn_seq(T=5, F=3, B=4, seed=0):
    layer = build("BatchNorm", {"momentum": 0.5}, [(T, F)], seed)
    x = np.random.default_rng(seed + 1).normal(2.0, 3.0, (B, T, F))
    return layer, x


def test_batchnorm_sequence_normalises_per_feature():
    layer, x = _bn_seq()
    assert layer.p["gamma"].shape == (3,)                             # F, not T
    g, b = layer.p["gamma"], layer.p["beta"]
    rm = layer.p["running_mean"].copy()
    y = layer.forward(x, training=True)
    mu, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-5) * g + b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.p["running_mean"], 0.5 * rm + 0.5 * mu, rtol=1e-12)
    u = np.random.default_rng(5).normal(size=y.shape)
    dx, = layer.backward(u)
    loss = lambda: float(np.sum(layer.forward(x, training=True) * u))
    np.testing.assert_allclose(dx, numeric(loss, x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_sequence_ignores_padded_steps(training):
    layer, x = _bn_seq()
    lengths = np.array([5, 2, 3, 1])
    mask = np.arange(5) < lengths[:, None]                            # (B, T)
    layer.in_masks = [mask]
    ref = build("BatchNorm", {"momentum": 0.5}, [(3,)], 0)            # the same initial state, valid rows only
    np.testing.assert_array_equal(ref.p["running_var"], layer.p["running_var"])
    xp = x.copy()
    xp[~mask] = 1e3                                                   # garbage in padded steps
    u = np.random.default_rng(6).normal(size=x.shape)
    y = layer.forward(xp, training=training)
    dx, = layer.backward(u)
    valid = x[mask]                                                   # (N_valid, F)
    if training:
        mu, var = valid.mean(0), valid.var(0)
    else:
        mu, var = ref.p["running_mean"], ref.p["running_var"]
    want = (valid - mu) / np.sqrt(var + 1e-5) * layer.p["gamma"] + layer.p["beta"]
    np.testing.assert_allclose(y[mask], want, rtol=1e-10, atol=1e-12)
    assert np.all(dx[~mask] == 0)
    ref = build("BatchNorm", {"momentum": 0.5}, [(3,)], 0)            # the same initial state, valid rows only
    ref.forward(valid, training=training)
    dref, = ref.backward(u[mask])
    np.testing.assert_allclose(dx[mask], dref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.g["gamma"], ref.g["gamma"], rtol=1e-10)
    np.testing.assert_allclose(layer.g["beta"], ref.g["beta"], rtol=1e-10)


def test_batchnorm_sequence_onnx_export_matches_engine(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx_export import save_onnx
    g = Graph()
    g.chain(("x", "Input", {"shape": [5, 3]}), ("bn", "BatchNorm", {}), ("f", "Flatten", {}),
            ("d", "Dense", {"units": 2}))
    m = Model(g, seed=0)
    x = np.random.default_rng(0).normal(size=(6, 5, 3)).astype(np.float32)
    for _ in range(3):
        m.forward(x * 2 + 1, training=True)                           # non-trivial running statistics
    path = tmp_path / "bn.onnx"
    save_onnx(str(path), m)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, m.forward(x), rtol=1e-5, atol=1e-5)
