"""Read-only batches (a memory-mapped .npy opened with mmap_mode='r') through whole models: prediction, the
per-layer training step and the fused training step give what writable copies give (issue 20, item 4).
Each layer on its own: tests/test_gradcheck.py::test_read_only_input."""
import numpy as np
import pytest

from engine.model import Model
from test_fused import CASES, TOL, chain, dataset, trainer

CONV = ((1, 6, 6), [("Conv2D", {"filters": 2, "kernel_size": [3]}), ("ReLU", {}),       # no padding: x used as is
                    ("MaxPool2D", {"kernel_size": [2]}), ("Flatten", {}), ("Dense", {"units": 3}), ("Softmax", {})])


def frozen(tmp_path, a):
    """a as a read-only memory map of an .npy file."""
    np.save(tmp_path / "a.npy", a)
    m = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert not m.flags.writeable
    return m


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_conv_model_predicts_and_trains_on_a_read_only_memory_map(tmp_path, dtype):
    shape, layers = CONV
    g = chain(shape, layers)
    ds = dataset(12, shape, "multiclass", 3)
    x = frozen(tmp_path, ds.x)
    want = Model(g, dtype=dtype, seed=3).predict(ds.x.copy(), batch_size=5)
    np.testing.assert_allclose(Model(g, dtype=dtype, seed=3).predict(x, batch_size=5), want, **TOL[dtype])
    (ma, ta), (mb, tb) = trainer(g, {"loss": "cce"}, ds, dtype, False), trainer(g, {"loss": "cce"}, ds, dtype, False)
    assert ma.layers["n0"].need_dx is False                 # the first layer: the case that failed in numba
    np.testing.assert_allclose(ta.train_step(x[:8], ds.y[:8])[0], tb.train_step(ds.x[:8].copy(), ds.y[:8])[0],
                               **TOL[dtype])
    np.testing.assert_allclose(ma.theta, mb.theta, **TOL[dtype])
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), ds.x)       # the user's file is unchanged


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_step_on_read_only_batches(tmp_path, case):
    """The fused kernel's input and target buffers are never written through: read-only batches run on it."""
    shape, layers, loss, (task, k), opt = CASES[case]
    g = chain(shape, layers, standardize=case.startswith("standardize"))
    ds = dataset(32, shape, task, k)
    cfg = dict(opt, loss=loss, batch_size=16)
    x, y = frozen(tmp_path, ds.x), np.array(ds.y)
    y.flags.writeable = False
    (ma, ta), (mb, tb) = trainer(g, cfg, ds, np.float32, True), trainer(g, cfg, ds, np.float32, True)
    for j in (slice(0, 16), slice(16, 32)):
        ra, rb = ta.train_step(x[j], y[j]), tb.train_step(ds.x[j].copy(), ds.y[j].copy())
        np.testing.assert_allclose(ra[0], rb[0], **TOL[np.float32])
        np.testing.assert_allclose(ra[1], rb[1], **TOL[np.float32])
    np.testing.assert_allclose(ma.theta, mb.theta, **TOL[np.float32])
    assert not np.array_equal(ma.theta, Model(g, seed=3).theta)                # it did train
