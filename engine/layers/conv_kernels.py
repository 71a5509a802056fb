"""Numba kernels for convolution, pooling and batch norm on NCHW arrays (float32 or float64, C-contiguous)."""
import numpy as np
from numba import njit


def scratch(owner, key, shape, dtype, zero=False):
    """A buffer kept on `owner` between steps, reallocated only when shape or dtype change."""
    bufs = owner.__dict__.setdefault("_bufs", {})
    a = bufs.get(key)
    if a is None or a.shape != tuple(shape) or a.dtype != dtype:
        a = bufs[key] = (np.zeros if zero else np.empty)(shape, dtype)
    return a


# ---- padding ----
@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


# ---- convolution: xp is the zero-padded input, so no bounds tests in the inner loops ----
@njit(cache=True, nogil=True, fastmath=True)
def conv_fwd(xp, w, b, y, sh, sw, acc):
    """y[n,o] = b[o] + Σ_c,i,j w[o,c,i,j]·xp[n,c,r·sh+i,q·sw+j]; acc is (L,) scratch, L = (H_out−1)·W_p + W_out."""
    B, C, Hp, Wp = xp.shape
    O, _, KH, KW = w.shape
    HO, WO = y.shape[2], y.shape[3]
    if sh == 1 and sw == 1:
        # "wide" rows: output position p = r·Wp + q reads xp.flat[p + i·Wp + j], one long loop per tap
        L = (HO - 1) * Wp + WO
        xf = xp.reshape(B, C, Hp * Wp)                       # (B, C, Hp·Wp)
        a = acc[:L]
        for n in range(B):
            for o in range(O):
                bo = b[o]
                for p in range(L):
                    a[p] = bo
                for c in range(C):
                    for i in range(KH):
                        for j in range(KW):
                            off = i * Wp + j
                            xs = xf[n, c, off:off + L]
                            wv = w[o, c, i, j]
                            for p in range(L):
                                a[p] += wv * xs[p]
                for r in range(HO):
                    src = a[r * Wp:r * Wp + WO]
                    dst = y[n, o, r]
                    for q in range(WO):
                        dst[q] = src[q]
        return
    span = (WO - 1) * sw + 1
    for n in range(B):
        for o in range(O):
            y[n, o] = b[o]
            for c in range(C):
                for i in range(KH):
                    for j in range(KW):
                        wv = w[o, c, i, j]
                        for r in range(HO):
                            xs = xp[n, c, r * sh + i, j:j + span:sw]
                            yr = y[n, o, r]
                            for q in range(WO):
                                yr[q] += wv * xs[q]


@njit(cache=True, nogil=True, fastmath=True)
def conv_bwd(xp, w, dy, dw, db, dxp, sh, sw, need_dx, acc):
    """dw, db from dy; when need_dx, dxp (zeroed, padded like xp) += the input gradient. acc is (L,) scratch."""
    B, C, Hp, Wp = xp.shape
    O, _, KH, KW = w.shape
    HO, WO = dy.shape[2], dy.shape[3]
    dw[...] = 0
    for o in range(O):
        s = 0.0
        for n in range(B):
            for r in range(HO):
                for q in range(WO):
                    s += dy[n, o, r, q]
        db[o] = s
    if sh == 1 and sw == 1:
        L = (HO - 1) * Wp + WO
        xf = xp.reshape(B, C, Hp * Wp)                       # (B, C, Hp·Wp)
        dxf = dxp.reshape(dxp.shape[0], dxp.shape[1], dxp.shape[2] * dxp.shape[3])   # (1, 1, 1) without dx
        a = acc[:L]
        a[:] = 0                                             # junk columns (q ≥ W_out) stay zero
        for n in range(B):
            for o in range(O):
                for r in range(HO):
                    src = dy[n, o, r]
                    dst = a[r * Wp:r * Wp + WO]
                    for q in range(WO):
                        dst[q] = src[q]
                for c in range(C):
                    for i in range(KH):
                        for j in range(KW):
                            off = i * Wp + j
                            xs = xf[n, c, off:off + L]
                            t = 0.0
                            for p in range(L):
                                t += a[p] * xs[p]
                            dw[o, c, i, j] += t
                            if need_dx:
                                wv = w[o, c, i, j]
                                ds = dxf[n, c, off:off + L]
                                for p in range(L):
                                    ds[p] += wv * a[p]
        return
    span = (WO - 1) * sw + 1
    for n in range(B):
        for o in range(O):
            for c in range(C):
                for i in range(KH):
                    for j in range(KW):
                        wv = w[o, c, i, j]
                        t = 0.0
                        for r in range(HO):
                            xs = xp[n, c, r * sh + i, j:j + span:sw]
                            dr = dy[n, o, r]
                            for q in range(WO):
                                t += dr[q] * xs[q]
                            if need_dx:
                                ds = dxp[n, c, r * sh + i, j:j + span:sw]
                                for q in range(WO):
                                    ds[q] += wv * dr[q]
                        dw[o, c, i, j] += t


# ---- pooling ----
@njit(cache=True, nogil=True)
def maxpool_fwd(x, y, idx, kh, kw, sh, sw):
    """y = window maxima; idx = flat position (r·W + q) of each maximum in its input plane (first one on ties)."""
    B, C, H, W = x.shape
    HO, WO = y.shape[2], y.shape[3]
    for n in range(B):
        for c in range(C):
            xc = x[n, c]
            for r in range(HO):
                for q in range(WO):
                    r0, q0 = r * sh, q * sw
                    m = xc[r0, q0]
                    at = r0 * W + q0
                    for i in range(kh):
                        for j in range(kw):
                            v = xc[r0 + i, q0 + j]
                            if v > m:
                                m = v
                                at = (r0 + i) * W + q0 + j
                    y[n, c, r, q] = m
                    idx[n, c, r, q] = at


@njit(cache=True, nogil=True)
def maxpool_bwd(dy, idx, dx):
    """dx (zeroed) += dy routed to each window's maximum."""
    B, C, HO, WO = dy.shape
    W = dx.shape[3]
    for n in range(B):
        for c in range(C):
            for r in range(HO):
                for q in range(WO):
                    at = idx[n, c, r, q]
                    dx[n, c, at // W, at % W] += dy[n, c, r, q]


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


# ---- batch norm on x viewed as (B, C, S): statistics per channel over B·S values ----
@njit(cache=True, nogil=True, fastmath=True)
def bn_train_fwd(x, gamma, beta, y, mean, inv, scale, shift, rmean, rvar, momentum, eps):
    """Normalise with batch statistics (float64 sums); update running stats like torch (unbiased variance)."""
    B, C, S = x.shape
    N = B * S
    for c in range(C):
        s = 0.0
        for n in range(B):
            xs = x[n, c]
            for k in range(S):
                s += xs[k]
        m = s / N
        v = 0.0
        for n in range(B):
            xs = x[n, c]
            for k in range(S):
                d = xs[k] - m
                v += d * d
        var = v / N
        iv = 1.0 / np.sqrt(var + eps)
        mean[c], inv[c] = m, iv
        rmean[c] = (1.0 - momentum) * rmean[c] + momentum * m
        rvar[c] = (1.0 - momentum) * rvar[c] + momentum * (v / (N - 1) if N > 1 else var)
        scale[c] = gamma[c] * iv
        shift[c] = beta[c] - m * gamma[c] * iv
    affine(x, scale, shift, y)


@njit(cache=True, nogil=True, fastmath=True)
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


@njit(cache=True, nogil=True)
def bn_eval_coefs(gamma, beta, rmean, rvar, eps, scale, shift):
    """scale = γ/√(running var + ε), shift = β − running mean·scale."""
    for c in range(gamma.size):
        g = gamma[c] / np.sqrt(np.float64(rvar[c]) + eps)
        scale[c] = g
        shift[c] = beta[c] - rmean[c] * g


@njit(cache=True, nogil=True, fastmath=True)
def bn_train_bwd(x, dy, gamma, mean, inv, dx, dgamma, dbeta, need_dx):
    """Gradients of batch-statistics normalisation: dγ = Σ dy·x̂, dβ = Σ dy, dx = γ·inv/N·(N·dy − dβ − x̂·dγ)."""
    B, C, S = x.shape
    N = B * S
    for c in range(C):
        m, iv = mean[c], inv[c]
        sg, sb = 0.0, 0.0
        for n in range(B):
            xs = x[n, c]
            ds = dy[n, c]
            for k in range(S):
                sb += ds[k]
                sg += ds[k] * (xs[k] - m)
        sg *= iv
        dgamma[c], dbeta[c] = sg, sb
        if need_dx:
            f = gamma[c] * iv / N
            a, cx, b0 = f * N, -f * sg * iv, -f * sb         # dx = a·dy + cx·(x − m) + b0
            for n in range(B):
                xs = x[n, c]
                ds = dy[n, c]
                out = dx[n, c]
                for k in range(S):
                    out[k] = a * ds[k] + cx * (xs[k] - m) + b0


@njit(cache=True, nogil=True, fastmath=True)
def bn_eval_bwd(x, dy, gamma, rmean, rvar, eps, dx, dgamma, dbeta, need_dx):
    """Gradients when the running statistics are constants."""
    B, C, S = x.shape
    for c in range(C):
        iv = 1.0 / np.sqrt(np.float64(rvar[c]) + eps)
        m = rmean[c]
        sg, sb = 0.0, 0.0
        for n in range(B):
            xs = x[n, c]
            ds = dy[n, c]
            for k in range(S):
                sb += ds[k]
                sg += ds[k] * (xs[k] - m)
        dgamma[c], dbeta[c] = sg * iv, sb
        if need_dx:
            g = gamma[c] * iv
            for n in range(B):
                ds = dy[n, c]
                out = dx[n, c]
                for k in range(S):
                    out[k] = g * ds[k]
