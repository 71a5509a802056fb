"""Numba kernels for convolution and pooling of any rank in one canonical form, (B, C, D, H, W) with size-1 axes
for 1-D and 2-D data: strides, dilations and groups (float32 or float64; patches are C-contiguous buffers)."""
import numpy as np
from .._jit import njit

from ..blas import gemm
from .conv_kernels import FAST, nchw_to_rows, rows_to_nchw


@njit(cache=True, nogil=True, error_model="numpy")
def patches3(xp, col, k, s, d, o, back):
    """col[((c·K_d + a)·K_h + i)·K_w + j, n·P + (z·H_o + r)·W_o + q] = xp[n, c, z·s_d + a·d_d, r·s_h + i·d_h,
    q·s_w + j·d_w] with P = D_o·H_o·W_o (xp already padded); back: the reverse, xp = 0 and then every patch value
    in col added back where it was taken from."""
    B, C = xp.shape[0], xp.shape[1]
    kd, kh, kw = k
    sd, sh, sw = s
    dd, dh, dw = d
    DO, HO, WO = o
    P, span = DO * HO * WO, (WO - 1) * sw + 1
    if back:
        xp[...] = 0
    for c in range(C):
        for a in range(kd):
            for i in range(kh):
                for j in range(kw):
                    row = col[((c * kd + a) * kh + i) * kw + j]
                    for n in range(B):
                        for z in range(DO):
                            for r in range(HO):
                                at = n * P + (z * HO + r) * WO
                                img = xp[n, c, z * sd + a * dd, r * sh + i * dh, j * dw:j * dw + span:sw]
                                cols = row[at:at + WO]                   # slices: no negative-index checks
                                if back:
                                    for q in range(WO):
                                        img[q] += cols[q]
                                else:
                                    for q in range(WO):
                                        cols[q] = img[q]


@njit(cache=True, nogil=True, error_model="numpy")
def gconv_fwd(xp, W2, b, y, colbuf, y2buf, k, s, d, o, groups, sub):
    """y (B, O, 1, P) = W ⋆ xp + b, `sub` samples per GEMM: patches3, then per group g the GEMM
    (O/g, C/g·K) @ (C/g·K, n·P) on its rows of W2 (O, C/g·K) and of the patches."""
    B, O, Rg = xp.shape[0], W2.shape[0], W2.shape[1]
    Og, R, P = O // groups, groups * Rg, o[0] * o[1] * o[2]
    for a in range(0, B, sub):
        e = min(a + sub, B)
        m = (e - a) * P
        col = colbuf[:R * m].reshape((R, m))                     # (C·K, n·P)
        patches3(xp[a:e], col, k, s, d, o, False)
        y2 = y2buf[:O * m].reshape((O, m))                       # (C_out, n·P)
        for g in range(groups):
            gemm(W2[g * Og:(g + 1) * Og], col[g * Rg:(g + 1) * Rg], y2[g * Og:(g + 1) * Og])
        rows_to_nchw(y2, b, y[a:e], P, P)


@njit(cache=True, nogil=True, error_model="numpy")
def gconv_bwd(dy, xp, W2, dW, db, dxp, colbuf, dy2buf, k, s, d, o, groups, sub, need_dw, need_dx):
    """For y = W ⋆ xp + b with dy (B, O, 1, P): db, and dW (O, C/g·K) when need_dw (this chunk's sums),
    dxp (the padded input's gradient) when need_dx; the patches are rebuilt from xp."""
    B, O, Rg = dy.shape[0], W2.shape[0], W2.shape[1]
    Og, R, P = O // groups, groups * Rg, o[0] * o[1] * o[2]
    dW[...] = 0
    db[:] = 0
    dbs = np.empty(O, dy.dtype)
    for a in range(0, B, sub):
        e = min(a + sub, B)
        m = (e - a) * P
        dy2 = dy2buf[:O * m].reshape((O, m))                     # (C_out, n·P)
        nchw_to_rows(dy[a:e], dy2, dbs, P, P)
        db += dbs
        col = colbuf[:R * m].reshape((R, m))                     # (C·K, n·P)
        if need_dw:
            patches3(xp[a:e], col, k, s, d, o, False)
            for g in range(groups):                              # dW_g += dy_g @ col_gᵀ
                gemm(dy2[g * Og:(g + 1) * Og], col[g * Rg:(g + 1) * Rg], dW[g * Og:(g + 1) * Og], True, False, True)
        if need_dx:
            for g in range(groups):                              # dcol_g = W_gᵀ @ dy_g
                gemm(W2[g * Og:(g + 1) * Og], dy2[g * Og:(g + 1) * Og], col[g * Rg:(g + 1) * Rg], False, True)
            patches3(dxp[a:e], col, k, s, d, o, True)


@njit(cache=True, nogil=True, error_model="numpy")
def _wide(o, Hp, Wp):
    """Length of the 'wide' run of a stride-1 output over the padded input plane (rows Wp apart, planes Hp·Wp)."""
    return (o[0] - 1) * Hp * Wp + (o[1] - 1) * Wp + o[2]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def dw_fwd(xp, W2, b, y, k, s, d, o):
    """Depthwise (C_in/g = 1), without patches: y[n, o, p] = b[o] + Σ_t W2[o, t]·xp[n, o // m, window t of p],
    m = C_out/C_in output channels per input channel; y (B, O, 1, P). At stride 1 each tap is one contiguous
    multiply-add over the 'wide' output (junk columns between rows dropped at the end)."""
    B, C, Dp, Hp, Wp = xp.shape
    O = W2.shape[0]
    kd, kh, kw = k
    sd, sh, sw = s
    dd, dh, dw = d
    DO, HO, WO = o
    one, span = sd == 1 and sh == 1 and sw == 1, (WO - 1) * sw + 1
    L = _wide(o, Hp, Wp) if one else 1
    acc = np.empty(L, y.dtype)
    for n in range(B):
        for oc in range(O):
            xf = xp[n, oc // (O // C)].reshape(Dp * Hp * Wp)         # the input plane, flat
            yo = y[n, oc, 0]
            if one:
                acc[:] = b[oc]
            else:
                yo[:] = b[oc]
            for a in range(kd):
                for i in range(kh):
                    for j in range(kw):
                        w = W2[oc, (a * kh + i) * kw + j]
                        base = (a * dd * Hp + i * dh) * Wp + j * dw
                        if one:
                            src = xf[base:base + L]                  # slices: no negative-index checks
                            for p in range(L):
                                acc[p] += w * src[p]
                            continue
                        for z in range(DO):
                            for r in range(HO):
                                at, at_x = (z * HO + r) * WO, base + (z * sd * Hp + r * sh) * Wp
                                src, dst = xf[at_x:at_x + span:sw], yo[at:at + WO]
                                for q in range(WO):
                                    dst[q] += w * src[q]
            if one:
                for z in range(DO):
                    for r in range(HO):
                        at, at_x = (z * HO + r) * WO, (z * Hp + r) * Wp
                        src, dst = acc[at_x:at_x + WO], yo[at:at + WO]
                        for q in range(WO):
                            dst[q] = src[q]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def dw_bwd(dy, xp, W2, dW, db, dxp, k, s, d, o, need_dx):
    """dW, db (this chunk's sums) and, when need_dx, dxp (zeroed first) of dw_fwd; dy (B, O, 1, P)."""
    B, C, Dp, Hp, Wp = xp.shape
    O = W2.shape[0]
    kd, kh, kw = k
    sd, sh, sw = s
    dd, dh, dw = d
    DO, HO, WO = o
    one, span = sd == 1 and sh == 1 and sw == 1, (WO - 1) * sw + 1
    L = _wide(o, Hp, Wp) if one else 1
    gw = np.zeros(L, dy.dtype)                                       # dy in the wide layout, junk columns 0
    dW[...] = 0
    db[:] = 0
    if need_dx:
        dxp[...] = 0
    for n in range(B):
        for oc in range(O):
            xf = xp[n, oc // (O // C)].reshape(Dp * Hp * Wp)
            df = dxp[n, oc // (O // C)].reshape(Dp * Hp * Wp)
            g = dy[n, oc, 0]
            t = 0.0
            for p in range(g.size):
                t += g[p]
            db[oc] += t
            if one:
                for z in range(DO):
                    for r in range(HO):
                        at, at_x = (z * HO + r) * WO, (z * Hp + r) * Wp
                        src, dst = g[at:at + WO], gw[at_x:at_x + WO]
                        for q in range(WO):
                            dst[q] = src[q]
            for a in range(kd):
                for i in range(kh):
                    for j in range(kw):
                        tap = (a * kh + i) * kw + j
                        w = W2[oc, tap]
                        base = (a * dd * Hp + i * dh) * Wp + j * dw
                        acc = 0.0
                        if one:
                            src, dst = xf[base:base + L], df[base:base + L]
                            for p in range(L):
                                acc += gw[p] * src[p]
                            if need_dx:
                                for p in range(L):
                                    dst[p] += w * gw[p]
                            dW[oc, tap] += acc
                            continue
                        for z in range(DO):
                            for r in range(HO):
                                at, at_x = (z * HO + r) * WO, base + (z * sd * Hp + r * sh) * Wp
                                src, dst, gr = xf[at_x:at_x + span:sw], df[at_x:at_x + span:sw], g[at:at + WO]
                                for q in range(WO):
                                    acc += gr[q] * src[q]
                                if need_dx:
                                    for q in range(WO):
                                        dst[q] += w * gr[q]
                        dW[oc, tap] += acc


# ---- pooling over windows that may reach past the input (padding, ceil mode): such positions are skipped ----
@njit(cache=True, nogil=True, error_model="numpy")
def maxpool3(x, y, arg, k, s, d, p):
    """y = maximum over each window of x (B, C, D, H, W), window start z·s − p, taps a·d apart; arg = flat index
    of the maximum in x[n, c] (the first one on ties), −1 (and y = −∞) for a window without input."""
    B, C, D, H, W = x.shape
    DO, HO, WO = y.shape[2], y.shape[3], y.shape[4]
    for n in range(B):
        for c in range(C):
            for z in range(DO):
                for r in range(HO):
                    for q in range(WO):
                        m = -np.inf
                        at = -1
                        for a in range(k[0]):
                            zz = z * s[0] - p[0] + a * d[0]
                            if zz < 0 or zz >= D:
                                continue
                            for i in range(k[1]):
                                rr = r * s[1] - p[1] + i * d[1]
                                if rr < 0 or rr >= H:
                                    continue
                                for j in range(k[2]):
                                    qq = q * s[2] - p[2] + j * d[2]
                                    if qq < 0 or qq >= W:
                                        continue
                                    v = x[n, c, zz, rr, qq]
                                    if at < 0 or v > m or v != v:
                                        m = v
                                        at = (zz * H + rr) * W + qq
                        y[n, c, z, r, q] = m
                        arg[n, c, z, r, q] = at


@njit(cache=True, nogil=True, error_model="numpy")
def maxpool3_bwd(dy, arg, dx):
    """dx (B, C, D·H·W) = dy (B, C, P) routed to each window's maximum."""
    B, C, P = dy.shape
    dx[...] = 0
    for n in range(B):
        for c in range(C):
            for t in range(P):
                if arg[n, c, t] >= 0:
                    dx[n, c, arg[n, c, t]] += dy[n, c, t]


@njit(cache=True, nogil=True, error_model="numpy")
def _window(z, s, p, pe, kk, d, n):
    """(first, end, count in the padded input) of a window along one axis (taps d apart, first..end step d
    inside the input); the padded input has p positions before the input and pe after it."""
    lo = z * s - p
    a0 = max(0, (-lo + d - 1) // d)                       # first tap inside the input
    a1 = min(kk, (n - lo + d - 1) // d)                   # taps before the input's end
    ap = min(kk, (n + pe - lo + d - 1) // d)              # taps before the padded input's end
    return lo + a0 * d, lo + max(a1, a0) * d, ap


@njit(cache=True, nogil=True, error_model="numpy")
def avgpool3(x, y, dx, dy, k, s, p, pe, d, include_pad, forward):
    """forward: y = window means of x; else dx (zeroed first) += dy spread over the windows. Windows start at
    z·s − p with taps d apart; the divisor counts the taps inside the padded input (p before, pe after: include_pad,
    as PyTorch's default) or inside the input only (0 when none: the mean of an empty window is 0)."""
    B, C, D, H, W = x.shape if forward else dx.shape
    DO, HO, WO = (y.shape[2], y.shape[3], y.shape[4]) if forward else (dy.shape[2], dy.shape[3], dy.shape[4])
    if not forward:
        dx[...] = 0
    for z in range(DO):
        z0, z1, nz = _window(z, s[0], p[0], pe[0], k[0], d[0], D)
        for r in range(HO):
            r0, r1, nr = _window(r, s[1], p[1], pe[1], k[1], d[1], H)
            for q in range(WO):
                q0, q1, nq = _window(q, s[2], p[2], pe[2], k[2], d[2], W)
                cnt = nz * nr * nq if include_pad else ((z1 - z0) // d[0]) * ((r1 - r0) // d[1]) * ((q1 - q0) // d[2])
                inv = 1.0 / cnt if cnt > 0 else 0.0
                for n in range(B):
                    for c in range(C):
                        if forward:
                            t = 0.0
                            for a in range(z0, z1, d[0]):
                                for i in range(r0, r1, d[1]):
                                    for j in range(q0, q1, d[2]):
                                        t += x[n, c, a, i, j]
                            y[n, c, z, r, q] = t * inv
                        else:
                            g = dy[n, c, z, r, q] * inv
                            for a in range(z0, z1, d[0]):
                                for i in range(r0, r1, d[1]):
                                    for j in range(q0, q1, d[2]):
                                        dx[n, c, a, i, j] += g
