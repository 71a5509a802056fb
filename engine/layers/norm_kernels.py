"""Numba kernels for batch norm on (B, C, S) arrays and the fused BatchNorm → ReLU → MaxPool group."""
import numpy as np
from .._jit import njit

from .conv_kernels import FAST


# ---- batch norm on x viewed as (B, C, S): statistics per channel over B·S values, summed per batch chunk ----
@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def bn_sums(x, k0, s, v):
    """s[c] = Σ (x[:, c] − k0[c]), v[c] = Σ (x[:, c] − k0[c])² over this chunk (float64; the shift k0 avoids
    cancellation in one pass)."""
    B, C, S = x.shape
    for c in range(C):
        a, b, kc = 0.0, 0.0, k0[c]
        for n in range(B):
            xs = x[n, c]
            for k in range(S):
                d = xs[k] - kc
                a += d
                b += d * d
        s[c], v[c] = a, b


@njit(cache=True, nogil=True, error_model="numpy")
def bn_stats(s, v, k, n, gamma, beta, mean, inv, scale, shift, rmean, rvar, momentum, eps):
    """Batch mean and 1/√(var + ε) from the chunks' sums (added in chunk order), the affine coefficients
    scale = γ·inv, shift = β − mean·scale, and the running stats updated like torch's (unbiased variance)
    unless a statistic is not finite (a diverged batch leaves them unchanged). Returns whether all were finite.
    Chunk i's sums s[i, c] = Σ (x − k[i, c]) and v[i, c] = Σ (x − k[i, c])² over its n[i] values are re-expressed
    about k0 = k[0, c]: Σ (x − k0) = s + n·d, Σ (x − k0)² = v + 2·d·s + n·d², d = k[i, c] − k0 (0 when every chunk
    used k0)."""
    C = k.shape[1]
    ok = True
    vs = np.empty(C)
    N = 0.0
    for i in range(n.size):
        N += n[i]
    for c in range(C):
        a, b, k0 = 0.0, 0.0, k[0, c]
        for i in range(s.shape[0]):
            d = k[i, c] - k0
            a += s[i, c] + n[i] * d
            b += v[i, c] + 2.0 * d * s[i, c] + n[i] * d * d
        m = k0 + a / N
        var = max(b / N - (a / N) ** 2, 0.0)
        if not (np.isfinite(m) and np.isfinite(var)):
            ok = False
        iv = 1.0 / np.sqrt(var + eps)
        mean[c], inv[c], vs[c] = m, iv, var
        scale[c] = gamma[c] * iv
        shift[c] = beta[c] - m * gamma[c] * iv
    if ok:
        for c in range(C):
            rmean[c] = (1.0 - momentum) * rmean[c] + momentum * mean[c]
            rvar[c] = (1.0 - momentum) * rvar[c] + momentum * (vs[c] * N / (N - 1) if N > 1 else vs[c])
    return ok


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def affine(x, scale, shift, y):
    """y[n, c] = x[n, c]·scale[c] + shift[c] on (B, C, S) arrays."""
    B, C, S = x.shape
    for n in range(B):
        for c in range(C):
            g, sh = scale[c], shift[c]
            xs = x[n, c]
            ys = y[n, c]
            for k in range(S):
                ys[k] = xs[k] * g + sh


@njit(cache=True, nogil=True, error_model="numpy")
def bn_eval_coefs(gamma, beta, rmean, rvar, eps, scale, shift, mean, inv):
    """Evaluation mode: mean = running mean, inv = 1/√(running var + ε), scale = γ·inv, shift = β − mean·scale."""
    for c in range(gamma.size):
        iv = 1.0 / np.sqrt(np.float64(rvar[c]) + eps)
        mean[c], inv[c] = rmean[c], iv
        scale[c] = gamma[c] * iv
        shift[c] = beta[c] - rmean[c] * gamma[c] * iv


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def bn_grad_sums(x, dy, mean, sg, sb):
    """sg[c] = Σ dy·(x − mean[c]), sb[c] = Σ dy over this chunk (float64)."""
    B, C, S = x.shape
    for c in range(C):
        a, b, m = 0.0, 0.0, mean[c]
        for n in range(B):
            xs = x[n, c]
            ds = dy[n, c]
            for k in range(S):
                b += ds[k]
                a += ds[k] * (xs[k] - m)
        sg[c], sb[c] = a, b


@njit(cache=True, nogil=True, error_model="numpy")
def bn_grads(sg, sb, gamma, inv, N, batch_stats, dgamma, dbeta, coef):
    """dγ = inv·Σ dy·(x − m), dβ = Σ dy from the chunks' sums, and coef[:, c] = (a, cx, b0) of
    dx = a·dy + cx·(x − m) + b0: with batch statistics a = γ·inv, cx = −γ·inv²·dγ/N, b0 = −γ·inv·dβ/N
    (x̂ and the statistics depend on x); with running statistics (constants) dx = γ·inv·dy."""
    for c in range(gamma.size):
        a, b = 0.0, 0.0
        for i in range(sg.shape[0]):
            a += sg[i, c]
            b += sb[i, c]
        iv = inv[c]
        dg = a * iv
        dgamma[c], dbeta[c] = dg, b
        f = gamma[c] * iv
        coef[0, c] = f
        coef[1, c] = -f * dg * iv / N if batch_stats else 0.0
        coef[2, c] = -f * b / N if batch_stats else 0.0


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def bn_dx(x, dy, mean, coef, dx):
    """dx = a·dy + cx·(x − m) + b0 per channel, (a, cx, b0) = coef[:, c]."""
    B, C, S = x.shape
    for c in range(C):
        a, cx, b0, m = coef[0, c], coef[1, c], coef[2, c], mean[c]
        for n in range(B):
            xs = x[n, c]
            ds = dy[n, c]
            out = dx[n, c]
            for k in range(S):
                out[k] = a * ds[k] + cx * (xs[k] - m) + b0


# ---- BatchNorm → ReLU → MaxPool 2×2/2 as one pass (engine/layers/fusion.py) ----
@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def bn_relu_maxpool(x, scale, shift, y, arg, xm, keep):
    """y = 2×2/2 max-pool of max(0, x·scale + shift) per channel; when keep (training), arg = the maximum's window
    cell (first on ties), + 4 when the maximum is > 0 (ReLU passes its gradient), and xm = x at that cell."""
    B, C = x.shape[:2]
    HO, WO = y.shape[2], y.shape[3]
    for n in range(B):
        for c in range(C):
            g, s = scale[c], shift[c]
            for r in range(HO):
                t = x[n, c, 2 * r]
                u = x[n, c, 2 * r + 1]
                yr = y[n, c, r]
                if not keep:
                    for q in range(WO):
                        m = max(max(t[2 * q] * g + s, t[2 * q + 1] * g + s), max(u[2 * q] * g + s, u[2 * q + 1] * g + s))
                        yr[q] = m if m > 0 else m * 0
                    continue
                ar = arg[n, c, r]
                xr = xm[n, c, r]
                for q in range(WO):
                    v0, v1 = t[2 * q] * g + s, t[2 * q + 1] * g + s
                    v2, v3 = u[2 * q] * g + s, u[2 * q + 1] * g + s
                    m01 = max(v0, v1)
                    m23 = max(v2, v3)
                    m = max(m01, m23)
                    yr[q] = m if m > 0 else m * 0
                    a01 = np.uint8(v0 < v1)                            # branch-free: the data decide
                    a23 = np.uint8(2) + np.uint8(v2 < v3)
                    x01 = t[2 * q + 1] if v0 < v1 else t[2 * q]
                    x23 = u[2 * q + 1] if v2 < v3 else u[2 * q]
                    first = m01 >= m23
                    ar[q] = (a01 if first else a23) + np.uint8(4) * np.uint8(m > 0)
                    xr[q] = x01 if first else x23


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def relu_maxpool_bn_sums(dp, arg, xm, mean, sg, sb):
    """bn_grad_sums for dy = dp routed to each window's maximum when it was > 0 (zero elsewhere); xm: x at each
    window's maximum (bn_relu_maxpool's)."""
    B, C, HO, WO = dp.shape
    P = HO * WO
    dpf, wf, xf = dp.reshape(B, C, P), arg.reshape(B, C, P), xm.reshape(B, C, P)     # (B, C, HO·WO)
    for c in range(C):
        a, b, m = 0.0, 0.0, mean[c]
        for n in range(B):
            g, w, xr = dpf[n, c], wf[n, c], xf[n, c]
            for q in range(P):
                v = g[q] if w[q] >= 4 else g[q] * 0
                b += v
                a += v * (xr[q] - m)
        sg[c], sb[c] = a, b


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def relu_maxpool_bn_dx(dp, arg, x, mean, coef, dx):
    """bn_dx for that dy: cx·(x − m) + b0 everywhere, plus a·dp at the windows' passed maxima."""
    B, C, H, W = x.shape
    HO, WO = dp.shape[2], dp.shape[3]
    xf, df = x.reshape(B, C, H * W), dx.reshape(B, C, H * W)          # (B, C, H·W)
    for n in range(B):
        for c in range(C):
            a0, cx, b0, m = coef[0, c], coef[1, c], coef[2, c], mean[c]
            xs, out = xf[n, c], df[n, c]
            for q in range(H * W):
                out[q] = cx * (xs[q] - m) + b0
            for r in range(HO):
                g = dp[n, c, r]
                w = arg[n, c, r]
                for q in range(WO):
                    if w[q] >= 4:
                        cell = w[q] & 3
                        dx[n, c, 2 * r + (cell >> 1), 2 * q + (cell & 1)] += a0 * g[q]
