"""engine.blas.gemm: numpy's cblas from numba kernels, against numpy's matmul."""
import numpy as np
import pytest
from numba import njit

from engine import blas


@njit(cache=False)
def _call(a, b, c, tb):
    blas.gemm(a, b, c, tb)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("impl", ["cblas", "loop"])
def test_gemm_matches_matmul(dtype, tb, impl):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)).astype(dtype), rng.normal(size=(9, 7) if tb else (7, 9)).astype(dtype)
    c = np.full((5, 9), np.nan, dtype)                        # beta = 0: whatever c held is overwritten
    (_call if impl == "cblas" else blas._loop)(a, b, c, tb)
    np.testing.assert_allclose(c, a @ (b.T if tb else b), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_numpy_wheels_provide_cblas():
    assert blas.HAVE_CBLAS                                    # else kernels run the slow loop
