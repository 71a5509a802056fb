"""Numba kernels shared by layers, losses and optimizers (cache=True, C-contiguous, no per-graph JIT)."""
from math import acos, acosh, asin, asinh, atan, atanh, cos, cosh, erf, exp, log, log1p, sin, sinh, sqrt, tan, tanh

import numpy as np
from ._jit import njit

from .blas import gemm


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


# ---- layer kernels shared by the per-layer path (engine/layers) and the fused training step (engine/fused.py);
# flat C-contiguous arrays; a backward kernel writes dx (flag 1) or adds to it (flag 2) ----
@njit(cache=True, nogil=True, error_model="numpy")
def dense_fwd(x, W, b, y):
    """y = x Wᵀ + b for x (M, F), W (U, F), b (U,) or empty, y (M, U)."""
    m, u = y.shape
    for i in range(m):
        for j in range(u):
            y[i, j] = b[j] if b.size else 0
    gemm(x, W, y, True, False, True)                         # y += (M, F) @ (F, U)


@njit(cache=True, nogil=True, error_model="numpy")
def dense_dw(x, dy, dW, db):
    """dW = dyᵀ x and db = Σ_rows dy (when db is not empty) for x (M, F), dy (M, U), dW (U, F); dy may be a
    column block of a wider gradient (its U output rows)."""
    m, u = dy.shape
    gemm(dy, x, dW, False, True)                             # (U, M) @ (M, F)
    if db.size:
        db[:] = 0
        for i in range(m):
            for j in range(u):
                db[j] += dy[i, j]


@njit(cache=True, nogil=True, error_model="numpy")
def dense_dx(dy, W, dx, flag):
    """dx = dy W (flag 1 writes, 2 adds, 0 does nothing) for dy (M, U), W (U, F), dx (M, F)."""
    if flag != 0:
        gemm(dy, W, dx, False, False, flag == 2)             # (M, U) @ (U, F)


@njit(cache=True, nogil=True, error_model="numpy")
def dense_bwd(x, dy, W, dW, db, dx, flag):
    """dense_dw and dense_dx: dW = dyᵀ x, db = Σ dy (when b is used), dx = dy W (flag as dense_dx)."""
    dense_dw(x, dy, dW, db)
    dense_dx(dy, W, dx, flag)


@njit(cache=True, nogil=True, error_model="numpy")
def relu_fwd(x, y):
    for i in range(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * 0


@njit(cache=True, nogil=True, error_model="numpy")
def relu_bwd(y, dy, dx, flag):
    """dx = dy where y > 0 (ReLU's output), else 0."""
    for i in range(y.size):
        v = dy[i] if y[i] > 0 else dy[i] * 0
        dx[i] = v if flag == 1 else dx[i] + v


@njit(cache=True, nogil=True, error_model="numpy")
def tanh_fwd(x, y):
    for i in range(x.size):
        y[i] = np.tanh(x[i])


@njit(cache=True, nogil=True, error_model="numpy")
def tanh_bwd(y, dy, dx, flag):
    """dx = dy·(1 − y²)."""
    for i in range(y.size):
        v = dy[i] * (1 - y[i] * y[i])
        dx[i] = v if flag == 1 else dx[i] + v


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid_bwd(y, dy, dx, flag):
    """dx = dy·y·(1 − y)."""
    for i in range(y.size):
        v = dy[i] * y[i] * (1 - y[i])
        dx[i] = v if flag == 1 else dx[i] + v


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_bwd(y, dy, dx, flag):
    """dx = y ⊙ (dy − Σ_j dy_j y_j) per row of (M, C) arrays."""
    m, c = y.shape
    for r in range(m):
        s = 0.0
        for j in range(c):
            s += dy[r, j] * y[r, j]
        for j in range(c):
            v = y[r, j] * (dy[r, j] - s)
            dx[r, j] = v if flag == 1 else dx[r, j] + v


@njit(cache=True, nogil=True, error_model="numpy")
def scale_by(x, s, y, flag):
    """y = x ⊙ s (flag 1) or y += x ⊙ s (flag 2): dropout's mask, forward and backward."""
    for i in range(x.size):
        v = x[i] * s[i]
        y[i] = v if flag == 1 else y[i] + v


@njit(cache=True, nogil=True, error_model="numpy")
def add_into(x, y, flag):
    """y = x (flag 1) or y += x (flag 2): Add's forward per input and backward."""
    for i in range(x.size):
        y[i] = x[i] if flag == 1 else y[i] + x[i]


# ---- elementwise activations with numbers (engine/layers/pointwise.py): y and f′(x) in one pass ----
K_GELU_ERF, K_GELU_TANH, K_LEAKY, K_ELU, K_SELU, K_SILU, K_SOFTPLUS, K_MISH, K_CLIP = range(9)
K_CELU, K_SOFTSIGN, K_HARDSIGMOID, K_HARDSWISH, K_THRESHOLD, K_SHRINK = range(9, 15)
SQRT_2_PI = sqrt(2 / np.pi)
# the unary functions of the Math layer (engine/layers/unary.py): kind K_MATH + i computes MATH[i]
MATH = ("abs", "neg", "exp", "log", "sqrt", "reciprocal", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh",
        "asinh", "acosh", "atanh", "erf", "floor", "ceil", "round", "sign")
K_MATH = 15


@njit(cache=True, nogil=True, error_model="numpy")
def _sig(v):
    return 1.0 / (1.0 + exp(-v)) if v >= 0 else exp(v) / (1.0 + exp(v))


@njit(cache=True, nogil=True, error_model="numpy")
def _math(i, v):
    """(f(v), f′(v)) of the unary function MATH[i]; floor, ceil, round and sign have f′ = 0."""
    if i == 0:
        return abs(v), (1.0 if v > 0 else -1.0 if v < 0 else 0.0)
    if i == 1:
        return -v, -1.0
    if i == 2:
        e = exp(v)
        return e, e
    if i == 3:
        return (log(v) if v > 0 else -np.inf if v == 0 else np.nan), 1.0 / v
    if i == 4:
        r = sqrt(v) if v >= 0 else np.nan
        return r, 0.5 / r
    if i == 5:
        r = 1.0 / v
        return r, -r * r
    if i == 6:
        return sin(v), cos(v)
    if i == 7:
        return cos(v), -sin(v)
    if i == 8:
        t = tan(v)
        return t, 1.0 + t * t
    if i == 9 or i == 10:                                     # asin, acos: ±1/√(1 − x²)
        if not -1.0 <= v <= 1.0:
            return np.nan, np.nan
        d = 1.0 / sqrt((1.0 - v) * (1.0 + v))
        return (asin(v), d) if i == 9 else (acos(v), -d)
    if i == 11:
        return atan(v), 1.0 / (1.0 + v * v)
    if i == 12:
        return sinh(v), cosh(v)
    if i == 13:
        return cosh(v), sinh(v)
    if i == 14:
        return asinh(v), 1.0 / sqrt(v * v + 1.0)
    if i == 15:
        return (acosh(v), 1.0 / sqrt((v - 1.0) * (v + 1.0))) if v >= 1.0 else (np.nan, np.nan)
    if i == 16:
        if not -1.0 <= v <= 1.0:
            return np.nan, np.nan
        return (atanh(v) if abs(v) < 1.0 else np.sign(v) * np.inf), 1.0 / ((1.0 - v) * (1.0 + v))
    if i == 17:
        return erf(v), 1.1283791670955126 * exp(-v * v)       # 2/√π·e^(−x²)
    if i == 18:
        return np.floor(v), 0.0
    if i == 19:
        return np.ceil(v), 0.0
    if i == 20:
        return np.rint(v), 0.0                                 # halves to even, as ONNX Round and torch.round
    return (1.0 if v > 0 else -1.0 if v < 0 else 0.0 if v == 0 else np.nan), 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def pointwise(kind, a, b, x, y, d):
    """y = f(x) and d = f′(x) elementwise on flat arrays; a, b: the activation's numbers (α, β, min, max…)."""
    for i in range(x.size):
        v = np.float64(x[i])
        if kind == K_GELU_ERF:                                   # x·Φ(x); Φ′ = φ(x) = e^(−x²/2)/√(2π)
            c = 0.5 * (1.0 + erf(v * 0.7071067811865476))
            f, g = v * c, c + v * exp(-0.5 * v * v) * 0.3989422804014327
        elif kind == K_GELU_TANH:                                # ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
            t = tanh(SQRT_2_PI * (v + 0.044715 * v * v * v))
            f = 0.5 * v * (1.0 + t)
            g = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * SQRT_2_PI * (1.0 + 3 * 0.044715 * v * v)
        elif kind == K_LEAKY:
            f, g = (v, 1.0) if v > 0 else (a * v, a)
        elif kind == K_ELU or kind == K_SELU:                  # SELU = λ·ELU: α = a, λ = b
            s = 1.0 if kind == K_ELU else b
            f, g = (s * v, s) if v > 0 else (s * a * (exp(v) - 1.0), s * a * exp(v))
        elif kind == K_SILU:
            s = _sig(v)
            f, g = v * s, s * (1.0 + v * (1.0 - s))
        elif kind == K_SOFTPLUS:                                 # ln(1 + e^(βx))/β; x where βx > threshold
            z = a * v
            if z > b:
                f, g = v, 1.0
            else:
                f, g = (max(z, 0.0) + log1p(exp(-abs(z)))) / a, _sig(z)
        elif kind == K_MISH:                                     # x·tanh(softplus(x))
            t = tanh(max(v, 0.0) + log1p(exp(-abs(v))))
            f, g = v * t, t + v * _sig(v) * (1.0 - t * t)
        elif kind == K_CLIP:                                   # min(max(x, a), b); gradient 1 on [a, b]
            f, g = min(max(v, a), b), 1.0 if a <= v <= b else 0.0
        elif kind == K_CELU:                                   # x for x > 0, α(e^(x/α) − 1) otherwise
            f, g = (v, 1.0) if v > 0 else (a * (exp(v / a) - 1.0), exp(v / a))
        elif kind == K_SOFTSIGN:                               # x / (1 + |x|)
            f, g = v / (1.0 + abs(v)), 1.0 / ((1.0 + abs(v)) * (1.0 + abs(v)))
        elif kind == K_HARDSIGMOID:                            # max(0, min(1, αx + β))
            z = a * v + b
            f, g = (0.0, 0.0) if z <= 0 else (1.0, 0.0) if z >= 1 else (z, a)
        elif kind == K_HARDSWISH:                              # x·max(0, min(1, x/6 + ½))
            f, g = (0.0, 0.0) if v <= -3 else (v, 1.0) if v >= 3 else (v * (v + 3.0) / 6.0, v / 3.0 + 0.5)
        elif kind == K_THRESHOLD:                              # x where x > α, else 0
            f, g = (v, 1.0) if v > a else (0.0, 0.0)
        elif kind >= K_MATH:
            f, g = _math(kind - K_MATH, v)
        else:                                                  # SHRINK: x − b where x > λ = a, x + b where x < −λ
            f, g = (v - b, 1.0) if v > a else (v + b, 1.0) if v < -a else (0.0, 0.0)
        y[i] = f
        d[i] = g
