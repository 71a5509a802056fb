"""Numba kernels for convolution, pooling and batch norm on NCHW arrays (float32 or float64, C-contiguous)."""
import numpy as np
from numba import njit

from ..blas import gemm

# fast-math without nnan/ninf: reductions may be reordered (vectorised), but inf and NaN keep their meaning
FAST = {"nsz", "arcp", "contract", "reassoc"}


def scratch(owner, key, shape, dtype, zero=False):
    """A buffer kept on `owner` between steps, reallocated only when shape or dtype change."""
    bufs = owner.__dict__.setdefault("_bufs", {})
    a = bufs.get(key)
    if a is None or a.shape != tuple(shape) or a.dtype != dtype:
        a = bufs[key] = (np.zeros if zero else np.empty)(shape, dtype)
    return a


@njit(cache=True, nogil=True, error_model="numpy")
def sum_parts(parts, out):
    """out = Σ_i parts[i] (rows of a (k, n) array added in order)."""
    out[:] = parts[0]
    for i in range(1, parts.shape[0]):
        for j in range(out.size):
            out[j] += parts[i, j]


# ---- convolution as GEMMs over batch chunks: col (C·K_h·K_w, n·H_out·W_out) holds every patch of n padded samples ----
@njit(cache=True, nogil=True, error_model="numpy")
def pad_into(x, xp, ph, pw):
    """Copy x (B, C, H, W) into the interior of xp (B, C, H + 2ph, W + 2pw); the border stays as it is (zero)."""
    B, C, H, W = x.shape
    for n in range(B):
        for c in range(C):
            for r in range(H):
                src = x[n, c, r]
                dst = xp[n, c, r + ph, pw:pw + W]
                for q in range(W):
                    dst[q] = src[q]


@njit(cache=True, nogil=True, error_model="numpy")
def crop_from(xp, x, ph, pw):
    """x = interior of xp (the inverse of pad_into)."""
    B, C, H, W = x.shape
    for n in range(B):
        for c in range(C):
            for r in range(H):
                src = xp[n, c, r + ph, pw:pw + W]
                dst = x[n, c, r]
                for q in range(W):
                    dst[q] = src[q]


@njit(cache=True, nogil=True, error_model="numpy")
def im2col(xp, col, kh, kw, sh, sw, HO, WO):
    """col[(c·kh + i)·kw + j, (n·HO + r)·WO + q] = xp[n, c, r·sh + i, q·sw + j]."""
    B, C = xp.shape[:2]
    HW = HO * WO
    span = (WO - 1) * sw + 1
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = col[(c * kh + i) * kw + j]
                for n in range(B):
                    for r in range(HO):
                        dst = row[n * HW + r * WO:n * HW + r * WO + WO]
                        if sw == 1:
                            src = xp[n, c, r * sh + i, j:j + WO]
                            for q in range(WO):
                                dst[q] = src[q]
                        else:
                            src = xp[n, c, r * sh + i, j:j + span:sw]
                            for q in range(WO):
                                dst[q] = src[q]


@njit(cache=True, nogil=True, error_model="numpy")
def col2im(dcol, dxp, kh, kw, sh, sw, HO, WO):
    """dxp = 0, then every patch gradient in dcol added back where im2col took it from."""
    B, C = dxp.shape[:2]
    HW = HO * WO
    span = (WO - 1) * sw + 1
    dxp[...] = 0
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = dcol[(c * kh + i) * kw + j]
                for n in range(B):
                    for r in range(HO):
                        src = row[n * HW + r * WO:n * HW + r * WO + WO]
                        if sw == 1:
                            dst = dxp[n, c, r * sh + i, j:j + WO]
                            for q in range(WO):
                                dst[q] += src[q]
                        else:
                            dst = dxp[n, c, r * sh + i, j:j + span:sw]
                            for q in range(WO):
                                dst[q] += src[q]


@njit(cache=True, nogil=True, error_model="numpy")
def im2col_wide(xp, col, kh, kw, L):
    """Stride 1: col[(c·kh + i)·kw + j, n·L + p] = xp[n, c].flat[i·Wp + j + p], L = (H_out − 1)·Wp + W_out.

    Each (tap, sample) is one contiguous run; the Wp − W_out junk columns between output rows are dropped later.
    """
    B, C, Hp, Wp = xp.shape
    xf = xp.reshape(B, C, Hp * Wp)                           # (B, C, Hp·Wp)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = col[(c * kh + i) * kw + j]
                off = i * Wp + j
                for n in range(B):
                    src = xf[n, c, off:off + L]
                    dst = row[n * L:n * L + L]
                    for p in range(L):
                        dst[p] = src[p]


@njit(cache=True, nogil=True, error_model="numpy")
def col2im_wide(dcol, dxp, kh, kw, L):
    """dxp = 0, then the inverse scatter of im2col_wide (junk columns of dcol must be zero)."""
    B, C, Hp, Wp = dxp.shape
    dxp[...] = 0
    df = dxp.reshape(B, C, Hp * Wp)                          # (B, C, Hp·Wp)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = dcol[(c * kh + i) * kw + j]
                off = i * Wp + j
                for n in range(B):
                    src = row[n * L:n * L + L]
                    dst = df[n, c, off:off + L]
                    for p in range(L):
                        dst[p] += src[p]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def rows_to_nchw(y2, b, y, wrow, L):
    """y[n, o, r, q] = y2[o, n·L + r·wrow + q] + b[o]: GEMM rows to NCHW."""
    B, O, HO, WO = y.shape
    for n in range(B):
        for o in range(O):
            bo = b[o]
            for r in range(HO):
                src = y2[o, n * L + r * wrow:n * L + r * wrow + WO]
                dst = y[n, o, r]
                for q in range(WO):
                    dst[q] = src[q] + bo


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def nchw_to_rows(dy, dy2, db, wrow, L):
    """dy2[o, n·L + r·wrow + q] = dy[n, o, r, q] (other entries untouched) and db[o] = Σ dy[:, o]."""
    B, O, HO, WO = dy.shape
    for o in range(O):
        db[o] = 0
    for n in range(B):
        for o in range(O):
            s = 0.0
            for r in range(HO):
                src = dy[n, o, r]
                dst = dy2[o, n * L + r * wrow:n * L + r * wrow + WO]
                for q in range(WO):
                    dst[q] = src[q]
                    s += src[q]
            db[o] += s


@njit(cache=True, nogil=True, error_model="numpy")
def conv_fwd(x, xp, W2, b, y, colbuf, y2buf, kh, kw, sh, sw, ph, pw, wrow, L, sub):
    """y = W ⋆ x + b for this chunk of the batch, `sub` samples at a time so that the patches stay in cache:
    pad, im2col, one GEMM (C_out, C_in·K_h·K_w) @ (C_in·K_h·K_w, n·L), bias and NCHW layout."""
    B, O, R = x.shape[0], W2.shape[0], W2.shape[1]
    HO, WO = y.shape[2], y.shape[3]
    for a in range(0, B, sub):
        e = min(a + sub, B)
        m = (e - a) * L
        if ph or pw:
            pad_into(x[a:e], xp[a:e], ph, pw)                    # border stays zero
        col = colbuf[:R * m].reshape((R, m))                     # (C·K_h·K_w, n·L)
        if sh == 1 and sw == 1:
            im2col_wide(xp[a:e], col, kh, kw, L)
        else:
            im2col(xp[a:e], col, kh, kw, sh, sw, HO, WO)
        y2 = y2buf[:O * m].reshape((O, m))                       # (C_out, n·L)
        gemm(W2, col, y2)
        rows_to_nchw(y2, b, y[a:e], wrow, L)


@njit(cache=True, nogil=True, error_model="numpy")
def conv_bwd(dy, xp, W2T, dW, db, dxp, dx, colbuf, dy2buf, dwbuf, kh, kw, sh, sw, ph, pw, wrow, L, sub, need_dx):
    """dW, db (this chunk's sums) and, when need_dx, dx of W ⋆ x + b, `sub` samples at a time; the patches
    are rebuilt from the padded input xp instead of being kept from the forward pass."""
    B, O, R = dy.shape[0], W2T.shape[1], W2T.shape[0]
    HO, WO = dy.shape[2], dy.shape[3]
    dW[...] = 0
    db[:] = 0
    dbs = np.empty(O, dy.dtype)
    for a in range(0, B, sub):
        e = min(a + sub, B)
        m = (e - a) * L
        col = colbuf[:R * m].reshape((R, m))                     # (C·K_h·K_w, n·L)
        if sh == 1 and sw == 1:
            im2col_wide(xp[a:e], col, kh, kw, L)
        else:
            im2col(xp[a:e], col, kh, kw, sh, sw, HO, WO)
        dy2 = dy2buf[:O * m].reshape((O, m))                     # (C_out, n·L)
        dy2[...] = 0                                             # the junk columns of the wide layout stay zero
        nchw_to_rows(dy[a:e], dy2, dbs, wrow, L)
        gemm(dy2, col, dwbuf, True)                              # (C_out, n·L) @ (n·L, C_in·K_h·K_w)
        for o in range(O):
            db[o] += dbs[o]
            for r in range(R):
                dW[o, r] += dwbuf[o, r]
        if need_dx:
            gemm(W2T, dy2, col)                                  # dcol (C_in·K_h·K_w, n·L), reusing col
            if sh == 1 and sw == 1:
                col2im_wide(col, dxp[a:e], kh, kw, L)
            else:
                col2im(col, dxp[a:e], kh, kw, sh, sw, HO, WO)
            if ph or pw:
                crop_from(dxp[a:e], dx[a:e], ph, pw)


# ---- pooling ----
@njit(cache=True, nogil=True, error_model="numpy")
def maxpool_fwd(x, y, arg, kh, kw, sh, sw, keep):
    """y = window maxima; when keep, arg = window cell i·kw + j of each maximum (the first one on ties)."""
    B, C, H, W = x.shape
    HO, WO = y.shape[2], y.shape[3]
    if kh == 2 and kw == 2 and sh == 2 and sw == 2:
        for n in range(B):
            for c in range(C):
                for r in range(HO):
                    t = x[n, c, 2 * r]
                    u = x[n, c, 2 * r + 1]
                    yr = y[n, c, r]
                    ar = arg[n, c, r]
                    for q in range(WO):
                        v0, v1, v2, v3 = t[2 * q], t[2 * q + 1], u[2 * q], u[2 * q + 1]
                        m01 = max(v0, v1)
                        m23 = max(v2, v3)
                        yr[q] = max(m01, m23)
                        if keep:
                            a01 = 0 if v0 >= v1 else 1
                            a23 = 2 if v2 >= v3 else 3
                            ar[q] = a01 if m01 >= m23 else a23
        return
    for n in range(B):
        for c in range(C):
            for r in range(HO):
                for q in range(WO):
                    r0, q0 = r * sh, q * sw
                    m = x[n, c, r0, q0]
                    at = 0
                    for i in range(kh):
                        row = x[n, c, r0 + i, q0:q0 + kw]
                        for j in range(kw):
                            if row[j] > m:
                                m = row[j]
                                at = i * kw + j
                    y[n, c, r, q] = m
                    if keep:
                        arg[n, c, r, q] = at


@njit(cache=True, nogil=True, error_model="numpy")
def maxpool_bwd(dy, arg, dx, kh, kw, sh, sw):
    """dx = dy routed to each window's maximum, zero elsewhere."""
    B, C, HO, WO = dy.shape
    dx[...] = 0
    if kh == 2 and kw == 2 and sh == 2 and sw == 2:
        for n in range(B):
            for c in range(C):
                for r in range(HO):
                    g = dy[n, c, r]
                    a = arg[n, c, r]
                    for q in range(WO):
                        dx[n, c, 2 * r + (a[q] >> 1), 2 * q + (a[q] & 1)] = g[q]
        return
    for n in range(B):
        for c in range(C):
            for r in range(HO):
                for q in range(WO):
                    a = arg[n, c, r, q]
                    i = a // kw
                    dx[n, c, r * sh + i, q * sw + a - i * kw] += dy[n, c, r, q]


@njit(cache=True, nogil=True, error_model="numpy")
def avgpool_fwd(x, y, kh, kw, sh, sw):
    """y = window means."""
    B, C, H, W = x.shape
    HO, WO = y.shape[2], y.shape[3]
    inv = 1.0 / (kh * kw)
    for n in range(B):
        for c in range(C):
            for r in range(HO):
                for q in range(WO):
                    s = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            s += x[n, c, r * sh + i, q * sw + j]
                    y[n, c, r, q] = s * inv


@njit(cache=True, nogil=True, error_model="numpy")
def avgpool_bwd(dy, dx, kh, kw, sh, sw):
    """dx (zeroed) += dy / (kh·kw) spread over each window."""
    B, C, HO, WO = dy.shape
    inv = 1.0 / (kh * kw)
    for n in range(B):
        for c in range(C):
            for r in range(HO):
                for q in range(WO):
                    g = dy[n, c, r, q] * inv
                    for i in range(kh):
                        for j in range(kw):
                            dx[n, c, r * sh + i, q * sw + j] += g


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
def bn_stats(s, v, k0, N, gamma, beta, mean, inv, scale, shift, rmean, rvar, momentum, eps):
    """Batch mean and 1/√(var + ε) from the chunks' sums (added in chunk order), the affine coefficients
    scale = γ·inv, shift = β − mean·scale, and the running stats updated like torch's (unbiased variance)
    unless a statistic is not finite (a diverged batch leaves them unchanged). Returns whether all were finite."""
    C = k0.size
    ok = True
    vs = np.empty(C)
    for c in range(C):
        a, b = 0.0, 0.0
        for i in range(s.shape[0]):
            a += s[i, c]
            b += v[i, c]
        m = k0[c] + a / N
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
def bn_relu_maxpool(x, scale, shift, y, arg):
    """y = 2×2/2 max-pool of max(0, x·scale + shift) per channel; arg = the maximum's window cell (first on
    ties), + 4 when the maximum is > 0 (ReLU passes its gradient)."""
    B, C = x.shape[:2]
    HO, WO = y.shape[2], y.shape[3]
    for n in range(B):
        for c in range(C):
            g, s = scale[c], shift[c]
            for r in range(HO):
                t = x[n, c, 2 * r]
                u = x[n, c, 2 * r + 1]
                yr = y[n, c, r]
                ar = arg[n, c, r]
                for q in range(WO):
                    v0, v1 = t[2 * q] * g + s, t[2 * q + 1] * g + s
                    v2, v3 = u[2 * q] * g + s, u[2 * q + 1] * g + s
                    m01 = max(v0, v1)
                    m23 = max(v2, v3)
                    m = max(m01, m23)
                    yr[q] = m if m > 0 else m * 0
                    a01 = np.uint8(v0 < v1)                            # branch-free: the data decide
                    a23 = np.uint8(2) + np.uint8(v2 < v3)
                    ar[q] = (a01 if m01 >= m23 else a23) + np.uint8(4) * np.uint8(m > 0)


@njit(cache=True, nogil=True, error_model="numpy")
def relu_maxpool_bwd(dp, arg, dy):
    """dy = dp at each window's maximum when it was > 0, zero elsewhere."""
    B, C, HO, WO = dp.shape
    dy[...] = 0
    for n in range(B):
        for c in range(C):
            for r in range(HO):
                g = dp[n, c, r]
                a = arg[n, c, r]
                for q in range(WO):
                    if a[q] >= 4:                                      # ReLU passed the maximum
                        cell = a[q] & 3
                        dy[n, c, 2 * r + (cell >> 1), 2 * q + (cell & 1)] = g[q]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def relu_maxpool_bn_sums(dp, arg, x, mean, sg, sb):
    """bn_grad_sums for dy = dp routed to each window's maximum when it was > 0 (zero elsewhere)."""
    B, C, HO, WO = dp.shape
    for c in range(C):
        a, b, m = 0.0, 0.0, mean[c]
        for n in range(B):
            for r in range(HO):
                g = dp[n, c, r]
                w = arg[n, c, r]
                for q in range(WO):
                    if w[q] >= 4:
                        cell = w[q] & 3
                        b += g[q]
                        a += g[q] * (x[n, c, 2 * r + (cell >> 1), 2 * q + (cell & 1)] - m)
        sg[c], sb[c] = a, b


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def relu_maxpool_bn_dx(dp, arg, x, mean, coef, dx):
    """bn_dx for that dy: cx·(x − m) + b0 everywhere, plus a·dp at the windows' passed maxima."""
    B, C, H, W = x.shape
    HO, WO = dp.shape[2], dp.shape[3]
    for n in range(B):
        for c in range(C):
            a0, cx, b0, m = coef[0, c], coef[1, c], coef[2, c], mean[c]
            for r in range(H):
                xs = x[n, c, r]
                out = dx[n, c, r]
                for q in range(W):
                    out[q] = cx * (xs[q] - m) + b0
            for r in range(HO):
                g = dp[n, c, r]
                w = arg[n, c, r]
                for q in range(WO):
                    if w[q] >= 4:
                        cell = w[q] & 3
                        dx[n, c, 2 * r + (cell >> 1), 2 * q + (cell & 1)] += a0 * g[q]
