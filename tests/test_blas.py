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
@pytest.mark.parametrize("impl", ["cblas", "loop", "strided"])
def test_gemm_matches_matmul(dtype, ta, tb, impl):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 5) if ta else (5, 7)).astype(dtype)
    b = rng.normal(size=(9, 7) if tb else (7, 9)).astype(dtype)
    if impl == "strided":                                     # views BLAS cannot take as they are: the loop
        a = np.repeat(a, 2, axis=1)[:, ::2]
    c = np.full((5, 9), np.nan, dtype)                        # beta = 0: whatever c held is overwritten
    (blas._loop if impl == "loop" else _call)(a, b, c, tb, ta)
    want = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_numpy_wheels_provide_cblas():
    assert blas.HAVE_CBLAS                                    # else kernels run the slow loop
