"""engine.blas.gemm, the one matrix product: against numpy's matmul for every layout, checks that raise, the
numba cache keyed on the BLAS in use."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from engine import _jitcache, blas

ROOT = Path(__file__).resolve().parent.parent


@njit(cache=False)
def _call(a, b, c, tb, ta, acc):
    blas.gemm(a, b, c, tb, ta, acc)


def _layout(x, how):
    """x (a C array) as a view of the same values with another layout."""
    if how == "F":
        return np.asfortranarray(x)
    if how == "strided":                                       # neither rows nor columns unit-stride
        w = np.full((x.shape[0] * 2, x.shape[1] * 3), np.nan, x.dtype)
        w[::2, ::3] = x
        return w[::2, ::3]
    if how == "block":                                         # a column block of a wider array
        w = np.full((x.shape[0], x.shape[1] + 5), np.nan, x.dtype)
        w[:, 3:-2] = x
        return w[:, 3:-2]
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("how", ["C", "F", "strided", "block"])
@pytest.mark.parametrize("size", [(5, 9, 7), (33, 40, 17)])         # below and above blas.SMALL: loop, BLAS
def test_gemm_matches_matmul_for_every_layout(dtype, ta, tb, how, size):
    m, n, k = size
    rng = np.random.default_rng(0)
    a0 = rng.normal(size=(k, m) if ta else (m, k)).astype(dtype)
    b0 = rng.normal(size=(n, k) if tb else (k, n)).astype(dtype)
    c0 = rng.normal(size=(m, n)).astype(dtype)
    want = (a0.T if ta else a0) @ (b0.T if tb else b0)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for acc in (False, True):
        a, b, c = _layout(a0, how), _layout(b0, how), _layout(c0.copy(), how)
        _call(a, b, c, tb, ta, acc)
        np.testing.assert_allclose(c, want + (c0 if acc else 0), **tol)
        np.testing.assert_array_equal(a, a0)                         # inputs untouched
        if how in ("strided", "block"):                              # nothing outside c's view written
            assert np.isnan(c.base).sum() == c.base.size - c.size


@pytest.mark.parametrize("shape", [(0, 4, 3), (3, 0, 2), (3, 4, 0), (1, 4, 3), (40, 50, 0), (1, 1, 5000)])
def test_gemm_edge_sizes(shape):
    m, n, k = shape
    a, b = np.ones((m, k)), np.ones((k, n))
    c = np.full((m, n), np.nan)
    _call(a, b, c, False, False, False)
    np.testing.assert_array_equal(c, np.full((m, n), float(k)))


@pytest.mark.parametrize("a,b,c,tb,ta", [
    ((5, 7), (6, 9), (5, 9), False, False),                  # K differs
    ((5, 7), (7, 9), (5, 8), False, False),                  # N differs
    ((5, 7), (7, 9), (4, 9), False, False),                  # M differs
    ((5, 7), (7, 9), (5, 9), True, False),                   # op(b) = bᵀ is (9, 7)
    ((5, 7), (7, 9), (5, 9), False, True),                   # op(a) = aᵀ is (7, 5)
    ((200, 70), (60, 90), (200, 90), False, False),          # large enough for BLAS: it would read past b
])
def test_gemm_raises_on_shapes_that_do_not_match(a, b, c, tb, ta):
    z = [np.zeros(s, np.float32) for s in (a, b, c)]
    with pytest.raises(ValueError, match="do not match"):
        blas.gemm(*z, tb, ta)
    with pytest.raises(ValueError, match="do not match"):
        _call(*z, tb, ta, False)


@pytest.mark.parametrize("dtypes", [(np.float32, np.float64, np.float32), (np.float64, np.float64, np.float32),
                                    (np.int64, np.int64, np.int64)])
def test_gemm_refuses_mixed_or_integer_dtypes(dtypes):
    a, b, c = (np.zeros(s, d) for s, d in zip(((4, 3), (3, 2), (4, 2)), dtypes))
    with pytest.raises(TypingError, match="float32 or float64"):
        blas.gemm(a, b, c)


def test_gemm_refuses_other_ranks():
    with pytest.raises(TypingError, match="2-D"):
        blas.gemm(np.zeros((4, 3)), np.zeros(3), np.zeros((4, 1)))


def test_numpy_provides_cblas_and_the_id_names_it():
    assert blas.HAVE_CBLAS, blas.BLAS_ID                      # else every product runs the loop
    assert "cblas_sgemm" in blas.BLAS_ID and np.__version__ in blas.BLAS_ID


def test_the_cache_stamp_depends_on_the_blas():
    files = _jitcache.sources()
    assert _jitcache.digest(files, blas.BLAS_ID) != _jitcache.digest(files, "numpy 2: no cblas in numpy's BLAS")


HIDE_CBLAS = """
import ctypes
class NoCblas(ctypes.CDLL):                # numpy's BLAS without cblas, as in a build that lacks it
    def __getattr__(self, name):
        if "gemm" in name:
            raise AttributeError(name)
        return super().__getattr__(name)
ctypes.CDLL = NoCblas
"""
RUN = """
import numpy as np
from engine import blas, kernels
x, W = np.ones((64, 32), np.float32), np.ones((16, 32), np.float32)
y = np.empty((64, 16), np.float32)
kernels.dense_fwd(x, W, np.zeros(16, np.float32), y)
assert np.all(y == 32), y
print(blas.HAVE_CBLAS)
"""


def test_kernels_cached_with_cblas_are_not_loaded_where_numpy_has_none(tmp_path):
    """Compile and cache dense_fwd where numpy has cblas, then run it where it has none: the old cache key
    (sources only) loaded the kernel that calls the unregistered symbol and crashed (rc −11)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = []
    for hide in (False, True, False):
        code = (HIDE_CBLAS if hide else "") + RUN
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, (hide, r.returncode, r.stderr[-2000:])
        runs.append(r.stdout.split()[-1])
    assert runs == ["True", "False", "True"]


def test_training_needs_no_scipy():
    """Nothing calls numba's np.dot any more: the fused kernel and gemm run with SciPy absent."""
    code = """
import sys
sys.modules["scipy"] = None                                   # import scipy fails
import numpy as np
from engine import Graph
from engine.data import Dataset
from engine.model import Model
from engine.project import training_config
from engine.trainer import Trainer
g = Graph()
g.chain(("x", "Input", {"shape": [8]}), ("h", "Dense", {"units": 64}), ("r", "ReLU", {}), ("o", "Dense", {"units": 1}))
rng = np.random.default_rng(0)
ds = Dataset(rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32), "regression", "t")
tr = Trainer(Model(g), training_config({"loss": "mse", "epochs": 2}), ds)
assert tr.fast is not None
res = tr.run()
assert res["status"] == "completed" and np.isfinite(res["train_loss"]), res
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.split()[-1] == "ok", r.stderr[-2000:]
