"""engine.blas.gemm: numpy's cblas from numba kernels, against numpy's matmul."""
import numpy as np
import pytest
from numba import njit

from engine import blas


@njit(cache=False)
def _call(a, b, c, tb, ta):
    blas.gemm(a, b, c, tb, ta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("impl", ["cblas", "loop", "strided", "block"])
def test_gemm_matches_matmul(dtype, ta, tb, impl):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 5) if ta else (5, 7)).astype(dtype)
    b = rng.normal(size=(9, 7) if tb else (7, 9)).astype(dtype)
    if impl == "strided":                                     # views BLAS cannot take as they are: the loop
        a = np.repeat(a, 2, axis=1)[:, ::2]
    whole = np.full((6, 13), np.nan, dtype)
    c = whole[1:, 2:11] if impl == "block" else whole[:5, :9].copy()   # beta = 0: what c held is overwritten
    if impl == "block":                                       # row-strided blocks of wider arrays: BLAS with lda
        a = np.pad(a, ((0, 0), (3, 2)), constant_values=np.nan)[:, 3:-2]
        b = np.pad(b, ((0, 0), (1, 4)), constant_values=np.nan)[:, 1:-4]
        assert not (a.flags.c_contiguous or b.flags.c_contiguous or c.flags.c_contiguous)
    (blas._loop if impl == "loop" else _call)(a, b, c, tb, ta)
    want = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    if impl == "block":                                       # nothing outside the block is written
        assert np.isnan(whole[0]).all() and np.isnan(whole[:, :2]).all() and np.isnan(whole[:, 11:]).all()


@pytest.mark.parametrize("shape", [(0, 4, 3), (3, 0, 2), (3, 4, 0), (1, 4, 3)])
def test_gemm_edge_sizes(shape):
    m, n, k = shape
    a, b = np.ones((m, k)), np.ones((k, n))
    c = np.full((m, n), np.nan)
    _call(a, b, c, False, False)
    np.testing.assert_array_equal(c, np.full((m, n), float(k)))


def test_numpy_wheels_provide_cblas():
    assert blas.HAVE_CBLAS                                    # else kernels run the slow loop
