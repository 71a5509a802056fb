"""Numba kernel of the evaluation chains (fusion_infer.py): Conv2D → (BatchNorm) → ReLU → MaxPool2D 2×2/2 with
each window's maximum read straight from the convolution's GEMM rows, never writing the convolution's output."""
import numpy as np
from .._jit import njit

from ..blas import gemm
from . import conv_kernels as ck
from . import norm_kernels as nk


@njit(cache=True, nogil=True, error_model="numpy")
def fold_bn(W2, b, gamma, beta, rmean, rvar, eps, Wf, bf):
    """Wf = scale·W2 and bf = scale·b + shift per output channel: a BatchNorm's running-statistics affine
    (norm_kernels.bn_eval_coefs) folded into the convolution before it; W2 (C_out, R)."""
    O, R = W2.shape
    scale, shift = np.empty(O, W2.dtype), np.empty(O, W2.dtype)
    nk.bn_eval_coefs(gamma, beta, rmean, rvar, eps, scale, shift, np.empty(O), np.empty(O))
    for o in range(O):
        for r in range(R):
            Wf[o, r] = W2[o, r] * scale[o]
        bf[o] = b[o] * scale[o] + shift[o]


@njit(cache=True, nogil=True, error_model="numpy")
def conv_relu_maxpool(x, xp, W2, b, y, colbuf, y2buf, kh, kw, sh, sw, ph, pw, wrow, L, sub):
    """y = 2×2/2 max-pool of max(0, W ⋆ x + b) for this chunk, `sub` samples at a time: conv_fwd's padding,
    patches and GEMM, then per window max(0, max of its four GEMM values + b) (b is added after the maximum: a
    constant commutes with it). A BatchNorm in between is folded into W2 and b by the caller."""
    B, O, R = x.shape[0], W2.shape[0], W2.shape[1]
    HP, WP = y.shape[2], y.shape[3]
    HO, WO = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1          # the convolution's output
    for a in range(0, B, sub):
        e = min(a + sub, B)
        m = (e - a) * L
        if ph or pw:
            ck.pad_into(x[a:e], xp[a:e], ph, pw)                 # border stays zero
        col = ck.patches(xp[a:e], colbuf[:R * m].reshape((R, m)), kh, kw, sh, sw, HO, WO, L)   # (C·K_h·K_w, n·L)
        y2 = y2buf[:O * m].reshape((O, m))                       # (C_out, n·L)
        gemm(W2, col, y2)
        for n in range(e - a):
            for o in range(O):
                bo = b[o]
                for r in range(HP):
                    t = y2[o, n * L + 2 * r * wrow:]
                    u = y2[o, n * L + (2 * r + 1) * wrow:]
                    yr = y[a + n, o, r]
                    for q in range(WP):
                        v = max(max(t[2 * q], t[2 * q + 1]), max(u[2 * q], u[2 * q + 1])) + bo
                        yr[q] = v if v > 0 else v * 0
