"""Numba kernels for convolution and pooling on NCHW arrays (float32 or float64, C-contiguous)."""
import numpy as np
from .._jit import njit, overload, types

from .. import parallel
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
    """out = Σ_i parts[i] (rows of a (k, n) array added in order; row views and plain loops vectorise: 5.5 µs
    against 12.6 for out[:] = parts[0] and parts[i, j] on (2, 34k) float32)."""
    src = parts[0]
    for j in range(out.size):
        out[j] = src[j]
    for i in range(1, parts.shape[0]):
        src = parts[i]
        for j in range(out.size):
            out[j] += src[j]


def chunk_sum(owner, n, size, dtype, fn):
    """The (size,) sum of n chunks' shares: fn(i, part) writes chunk i's share into part on the granted threads,
    and the shares are added in chunk order, so any thread count gives the same sum (buffers kept on owner)."""
    parts = scratch(owner, "parts", (n, size), dtype)
    parallel.run(lambda i: fn(i, parts[i]), range(n))
    tot = scratch(owner, "tot", (size,), dtype)
    sum_parts(parts, tot)
    return tot


def weight_grads(layer, n, O, R, dtype, run, before=None, after=None, dx=None):
    """A convolution's dW (O, R) and db (O,) into layer.g, summed over n batch chunks in chunk order: run(i, dW, db)
    writes chunk i's share, before(i) runs first and after(i, dx) last in the same loop (the fusion groups' hooks)."""
    def part(i, o):
        if before is not None:
            before(i)
        run(i, o[:O * R].reshape(O, R), o[O * R:])
        if after is not None:
            after(i, dx)
    tot = chunk_sum(layer, n, O * R + O, dtype, part)
    layer.g["W"].reshape(-1)[...] = tot[:O * R]
    if "b" in layer.g:
        layer.g["b"][...] = tot[O * R:]


# ---- convolution as GEMMs over batch chunks: col (C·K_h·K_w, n·H_out·W_out) holds every patch of n padded samples ----
def pad_into(x, xp, ph, pw):
    """Copy x (B, C, H, W) into the interior of xp (B, C, H + 2ph, W + 2pw); the border stays as it is (zero)."""
    _copy_into(x, xp, ph, pw)                               # in Python; numba compiles _pad_into's choice


@overload(pad_into, jit_options={"nogil": True, "error_model": "numpy"})
def _pad_into(x, xp, ph, pw):
    """A read-only xp is the unpadded input itself (a read-only batch, e.g. a memory map): nothing to copy.
    Typed apart so that numba compiles conv_fwd for read-only inputs instead of refusing the write."""
    if isinstance(xp, types.Array) and not xp.mutable:
        return lambda x, xp, ph, pw: None
    return _copy_into


def _copy_into(x, xp, ph, pw):
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
    """dy2[o, n·L + r·wrow + q] = dy[n, o, r, q], the wrow − W_out columns between two rows set to 0 (other entries
    untouched: a stride-1 wide layout, L = (H_out − 1)·wrow + W_out, is then written whole) and db[o] = Σ dy[:, o]."""
    B, O, HO, WO = dy.shape
    for o in range(O):
        db[o] = 0
    for n in range(B):
        for o in range(O):
            s = 0.0
            for r in range(HO):
                src = dy[n, o, r]
                dst = dy2[o, n * L + r * wrow:n * L + (r + 1) * wrow if r < HO - 1 else n * L + r * wrow + WO]
                for q in range(WO):
                    dst[q] = src[q]
                    s += src[q]
                for q in range(WO, dst.size):
                    dst[q] = 0
            db[o] += s


@njit(cache=True, nogil=True, error_model="numpy")
def patches(xp, col, kh, kw, sh, sw, HO, WO, L):
    """col filled with the patches of xp (im2col_wide at stride 1, else im2col); returns col."""
    if sh == 1 and sw == 1:
        im2col_wide(xp, col, kh, kw, L)
    else:
        im2col(xp, col, kh, kw, sh, sw, HO, WO)
    return col


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
        col = patches(xp[a:e], colbuf[:R * m].reshape((R, m)), kh, kw, sh, sw, HO, WO, L)   # (C·K_h·K_w, n·L)
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
        col = patches(xp[a:e], colbuf[:R * m].reshape((R, m)), kh, kw, sh, sw, HO, WO, L)   # (C·K_h·K_w, n·L)
        dy2 = dy2buf[:O * m].reshape((O, m))                     # (C_out, n·L)
        nchw_to_rows(dy[a:e], dy2, dbs, wrow, L)                # every column: the junk ones of the wide layout 0
        gemm(col, dy2, dwbuf, True)                              # dWᵀ (C_in·K_h·K_w, C_out) = col @ dy2ᵀ: with
        for o in range(O):                                       # C_out as N, BLAS runs it ~2× faster than dW
            db[o] += dbs[o]
        for r in range(R):
            for o in range(O):
                dW[o, r] += dwbuf[r, o]
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
