"""Batch chunks on engine.parallel threads: MHSA, LayerNorm and Dense give one thread's result bit for bit."""
import platform

import numpy as np
import pytest
from gradcheck import build

from engine import parallel
from engine.layers.attention_kernels import exp_nonpos

CASES = [("MultiHeadSelfAttention", {"heads": 4}, (32, 64), True),
         ("MultiHeadSelfAttention", {"heads": 2, "causal": True}, (16, 8), True),
         ("LayerNorm", {}, (32, 64), False),
         ("Dense", {"units": 128}, (32, 64), False)]


def _step(layer, x, dy):
    """(y, dx, {name: gradient}) of one forward and backward, copied."""
    y = np.array(layer.forward(x, training=True))
    (dx,) = layer.backward(dy)
    return y, np.array(dx), {k: v.copy() for k, v in layer.g.items()}


@pytest.mark.parametrize("kind, config, shape, masked", CASES)
def test_two_threads_give_the_one_thread_result(kind, config, shape, masked, monkeypatch):
    B = 48
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)                            # LayerNorm splits only far larger batches
    rng = np.random.default_rng(3)
    layer = build(kind, config, [shape], seed=1, dtype=np.float32)
    layer.need_dx = True
    T = shape[0]
    if masked:
        lengths = rng.integers(1, T + 1, B)
        layer.in_masks = [np.arange(T)[None, :] < lengths[:, None]]          # (B, T)
    x = rng.normal(0, 1, (B,) + shape).astype(np.float32)
    dy = rng.normal(0, 1, layer.forward(x, training=True).shape).astype(np.float32)
    y1, dx1, g1 = _step(layer, x, dy)
    assert len(layer._chunks(*_chunk_args(layer, x))) > 1                   # the batch really is split
    with parallel.use(2):
        assert parallel.threads() == 2
        y2, dx2, g2 = _step(layer, x, dy)
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(dx2, dx1)
    for k in g1:
        np.testing.assert_array_equal(g2[k], g1[k], err_msg=k)
    if masked:
        assert np.all(dx1[~layer.in_masks[0]] == 0)


def _chunk_args(layer, x):
    """The arguments of layer._chunks for input x."""
    if type(layer).__name__ == "MultiHeadSelfAttention":
        B, T, d = x.shape
        return B, T, d, layer.config["heads"] * layer._dk(d)
    m = int(np.prod(x.shape[:-1]))
    return (m, x.shape[-1]) + ((len(layer.p["W"]),) if "W" in layer.p else ())


def test_chunked_gradients_match_one_unsplit_pass():
    """The chunked MHSA equals a float64 pass of the same layer on the whole batch at once (one chunk)."""
    rng = np.random.default_rng(5)
    B, T, d = 40, 16, 8
    layer = build("MultiHeadSelfAttention", {"heads": 2}, [(T, d)], seed=2)        # float64
    x = rng.normal(0, 1, (B, T, d))
    dy = rng.normal(0, 1, (B, T, d))
    assert len(layer._chunks(B, T, d, d)) > 1
    y, dx, g = _step(layer, x, dy)
    one = [(0, B)]
    layer._chunks = lambda *a: one                                          # the same math unsplit
    y0, dx0, g0 = _step(layer, x, dy)
    np.testing.assert_allclose(y, y0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx0, rtol=1e-12, atol=1e-12)
    for k in g:
        np.testing.assert_allclose(g[k], g0[k], rtol=1e-11, atol=1e-12, err_msg=k)


def test_exp_nonpos_is_within_two_ulp_of_exp():
    x = np.concatenate([-np.linspace(0, 90, 200001, dtype=np.float32),
                        np.array([-0.0, -1e-30, -86.99, -87.0, -87.01, -200, -np.inf, np.nan], np.float32)])
    y = x.copy()
    exp_nonpos(y, np.empty(y.size, np.int32))
    ref = np.exp(x.astype(np.float64))
    normal = x > -87
    ulp = np.spacing(ref[normal].astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(y[normal] - ref[normal]) / ulp) <= 2
    assert np.all(y[(x <= -87)] == 0) and y[-2] == 0 and np.isnan(y[-1])
    assert y[x == 0].min() == 1.0


MMAPPED = """
import ctypes, sys
sys.path.insert(0, {root!r})
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
def mmapped(n=24 << 20):
    before = libc.mallinfo2().hblks
    p = libc.malloc(n)
    after = libc.mallinfo2().hblks
    libc.free(p)
    return after - before
import numpy as np
import engine
from engine import Graph
from engine.data import Dataset
from engine.model import Model
from engine.project import training_config
from engine.trainer import Trainer
print(mmapped())
g = Graph()
g.chain(("x", "Input", {{"shape": [2]}}), ("o", "Dense", {{"units": 1}}))
ds = Dataset(np.ones((8, 2), np.float32), np.ones((8, 1), np.float32), "regression", "t")
Trainer(Model(g), training_config({{"loss": "mse", "epochs": 1}}), ds).run()
print(mmapped())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallinfo2")
def test_malloc_settings_change_when_training_starts_not_on_import():
    """A 24 MiB block is mmapped by glibc's defaults after `import engine`, from the kept heap once training ran."""
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parent.parent)
    r = subprocess.run([sys.executable, "-c", MMAPPED.format(root=root)], capture_output=True, text=True,
                       timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "0"], r.stdout
