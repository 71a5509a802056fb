"""Numba kernels shared by layers, losses and optimizers (cache=True, C-contiguous, no per-graph JIT)."""
import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid(x, out):
    """Numerically stable logistic function, elementwise on flat arrays."""
    for i in range(x.size):
        z = x.flat[i]
        if z >= 0:
            out.flat[i] = 1.0 / (1.0 + np.exp(-z))
        else:
            e = np.exp(z)
            out.flat[i] = e / (1.0 + e)


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_rows(x, out):
    """Softmax over the last axis of a (M, C) array."""
    m, c = x.shape
    for i in range(m):
        mx = x[i, 0]
        for j in range(1, c):
            mx = max(mx, x[i, j])
        s = 0.0
        for j in range(c):
            e = np.exp(x[i, j] - mx)
            out[i, j] = e
            s += e
        for j in range(c):
            out[i, j] /= s


@njit(cache=True, nogil=True, error_model="numpy")
def sq_norm(a):
    """Sum of squares (four float64 partial sums); inf/nan propagate, so it also detects divergence."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = a.size - a.size % 4
    for i in range(0, n4, 4):
        s0 += np.float64(a[i]) * a[i]
        s1 += np.float64(a[i + 1]) * a[i + 1]
        s2 += np.float64(a[i + 2]) * a[i + 2]
        s3 += np.float64(a[i + 3]) * a[i + 3]
    for i in range(n4, a.size):
        s0 += np.float64(a[i]) * a[i]
    return (s0 + s1) + (s2 + s3)
