"""Conv2D without im2col: one GEMM per kernel tap on a shifted view of the (phase-split) padded input.

Stride 1: in the 'wide' layout (output rows at the padded input's pitch Wp, L = (H_out − 1)·Wp + W_out columns
per sample), the patch row of tap (i, j) for all channels is xp[n].reshape(C, Hp·Wp)[:, i·Wp + j:][:, :L]: a
strided view that BLAS reads directly. Stride s > 1: the padded input is first split into its s_h·s_w phases
P[a·s_w + b][c, r, q] = xp[c, a + r·s_h, b + q·s_w] (one copy of the input); tap (i, j) then reads phase
(i mod s_h, j mod s_w) at offset ⌊i/s_h⌋·Wq + ⌊j/s_w⌋ with row pitch Wq, again a plain view. Per sample:
    y2 (C_out, L)        = Σ_t W_t (C_out, C_in) @ X_t (C_in, L)         (W_t = W[:, :, i, j])
    dW_tᵀ (C_in, C_out) += X_t @ dy2ᵀ
    dP_t (C_in, L)      += W_tᵀ @ dy2                                    (added into overlapping views of dP)
and dx is dP merged back (the inverse of the split, the padding cropped). The patches are never copied: im2col
wrote and re-read C_in·K_h·K_w values per output position. Below 16 input channels the taps' GEMMs are too thin
(K = C_in), so Conv2D uses this path from MIN_CHANNELS on.
"""
import numpy as np
from .._jit import njit

from .. import parallel
from ..blas import gemm
from . import conv_kernels as k

MIN_CHANNELS = 16


def fits(layer):
    """Whether Conv2D `layer` (groups 1, dilation 1) runs here: at least MIN_CHANNELS input channels."""
    return layer.in_shapes[0][0] >= MIN_CHANNELS


@njit(cache=True, nogil=True, error_model="numpy")
def split(x, P, sh, sw, ph, pw, nb):
    """P[a·nb + b, c, r, q] = x[c, a + r·sh − ph, b + q·sw − pw], zero outside x, for the phases a tap reads:
    a < min(sh, K_h), b < nb = min(sw, K_w)."""
    C, H, W = x.shape
    Hq, Wq = P.shape[2], P.shape[3]
    for a in range(P.shape[0] // nb):
        for b in range(nb):
            q0 = max(0, -(-(pw - b) // sw))                    # first q with b + q·sw − pw ≥ 0
            q1 = min(Wq, (W - 1 + pw - b) // sw + 1) if W - 1 + pw - b >= 0 else 0
            for c in range(C):
                for r in range(Hq):
                    row = P[a * nb + b, c, r]
                    y = a + r * sh - ph
                    if y < 0 or y >= H or q1 <= q0:
                        row[:] = 0
                        continue
                    src = x[c, y]
                    for q in range(q0):
                        row[q] = 0
                    for q in range(q0, q1):
                        row[q] = src[b + q * sw - pw]
                    for q in range(max(q1, q0), Wq):
                        row[q] = 0


@njit(cache=True, nogil=True, error_model="numpy")
def merge(dP, dx, sh, sw, ph, pw, nb):
    """dx[c, y, x] = dP[a·nb + b, c, r, q] where y + ph = a + r·sh, x + pw = b + q·sw (0 for unread phases)."""
    C, H, W = dx.shape
    na = dP.shape[0] // nb
    for c in range(C):
        for y in range(H):
            a, r = (y + ph) % sh, (y + ph) // sh
            out = dx[c, y]
            if a >= na or nb < sw:
                out[:] = 0
            if a >= na:
                continue
            for b in range(nb):
                q0 = max(0, -(-(pw - b) // sw))                # first q with x = b + q·sw − pw ≥ 0
                src = dP[a * nb + b, c, r]
                for q in range(q0, (W - 1 + pw - b) // sw + 1):
                    out[b + q * sw - pw] = src[q]


@njit(cache=True, nogil=True, error_model="numpy")
def shift_fwd(x, P, Wk, b, y, y2, kh, kw, sh, sw, ph, pw, L):
    """y = W ⋆ x + b for this chunk of samples; P (B, phases, C_in, Hq, Wq) keeps each sample's split input for
    the backward pass; Wk (taps, C_out, C_in); y2 (C_out, L) scratch."""
    B, S, C, Hq, Wq = P.shape
    nb = min(sw, kw)
    for n in range(B):
        split(x[n], P[n], sh, sw, ph, pw, nb)
        pf = P[n].reshape((S, C, Hq * Wq))                             # (phases, C_in, Hq·Wq)
        for t in range(kh * kw):
            i, j = t // kw, t % kw
            off = (i // sh) * Wq + j // sw
            gemm(Wk[t], pf[(i % sh) * nb + j % sw, :, off:off + L], y2, False, False, t > 0)   # (C_out, C_in) @ (C_in, L)
        k.rows_to_nchw(y2, b, y[n:n + 1], Wq, L)


@njit(cache=True, nogil=True, error_model="numpy")
def shift_bwd(dy, P, WkT, dW, db, dP, dx, dy2, dwt, kh, kw, sh, sw, ph, pw, L, need_dx):
    """dW (C_out, C_in·K_h·K_w), db: this chunk's sums; dx when need_dx. WkT (taps, C_in, C_out); dP (phases,
    C_in, Hq, Wq), dy2 (C_out, L) and dwt (taps, C_in, C_out) scratch."""
    B, S, C, Hq, Wq = P.shape
    T, O = WkT.shape[0], WkT.shape[2]
    nb = min(sw, kw)
    dbs = np.empty(O, dy.dtype)
    db[:] = 0
    dy2[...] = 0                                                       # the junk columns stay zero
    for n in range(B):
        k.nchw_to_rows(dy[n:n + 1], dy2, dbs, Wq, L)
        for o in range(O):
            db[o] += dbs[o]
        pf = P[n].reshape((S, C, Hq * Wq))
        for t in range(T):
            i, j = t // kw, t % kw
            off = (i // sh) * Wq + j // sw
            gemm(pf[(i % sh) * nb + j % sw, :, off:off + L], dy2, dwt[t], True, False, n > 0)   # (C_in, L) @ (L, C_out)
        if need_dx:
            dP[...] = 0
            df = dP.reshape((S, C, Hq * Wq))
            for t in range(T):
                i, j = t // kw, t % kw
                off = (i // sh) * Wq + j // sw
                gemm(WkT[t], dy2, df[(i % sh) * nb + j % sw, :, off:off + L], False, False, True)   # (C_in, C_out) @ (C_out, L)
            merge(dP, dx[n], sh, sw, ph, pw, nb)
    taps_to_dW(dwt, dW, B)


@njit(cache=True, nogil=True, error_model="numpy")
def taps_to_dW(dwt, dW, B):
    """dW (C_out, C_in·taps) from the per-tap sums dwt (taps, C_in, C_out); zero for an empty batch (B = 0)."""
    T, C, O = dwt.shape
    if B == 0:
        dwt[...] = 0
    for o in range(O):
        for c in range(C):
            for t in range(T):
                dW[o, c * T + t] = dwt[t, c, o]


def geometry(layer, H, W):
    """(phases, Hq, Wq, L): the split input's phases and size, and the wide output's columns per sample."""
    (ph, pw), (_, HO, WO), (kh, kw), (sh, sw) = layer.pads, layer.out_shape, layer.k, layer.s
    Hq, Wq = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)
    return min(sh, kh) * min(sw, kw), Hq, Wq, (HO - 1) * Wq + WO


def forward_parts(layer, x, training):
    """Conv2D.forward_parts on this path: (y (B, C_out, H_out, W_out), part), part(i) for layer.parts[i]."""
    B, C, H, W = x.shape
    (ph, pw), (O, HO, WO), (kh, kw), (sh, sw) = layer.pads, layer.out_shape, layer.k, layer.s
    S, Hq, Wq, L = geometry(layer, H, W)
    P = k.scratch(layer, "P", (B, S, C, Hq, Wq), x.dtype)                    # (B, phases, C_in, Hq, Wq)
    Wk = np.ascontiguousarray(layer.p["W"].transpose(2, 3, 0, 1).reshape(kh * kw, O, C))    # (taps, C_out, C_in)
    b = layer.p["b"] if "b" in layer.p else k.scratch(layer, "b0", (O,), x.dtype, zero=True)
    y = k.scratch(layer, "y", (B, O, HO, WO), x.dtype) if training else np.empty((B, O, HO, WO), x.dtype)
    parts = layer.parts = parallel.chunks(B, C * kh * kw * L * x.itemsize)

    def part(i):
        a, e = parts[i]
        shift_fwd(x[a:e], P[a:e], Wk, b, y[a:e], k.scratch(layer, ("y2", i), (O, L), x.dtype), kh, kw, sh, sw,
                  ph, pw, L)
    layer.xp, layer.xshape = P, x.shape
    return y, part


def backward_parts(layer, dy, before=None, after=None):
    """Conv2D.backward_parts on this path: (dx or None,), dW and db written into layer.g; dy C-contiguous."""
    O = dy.shape[1]
    (ph, pw), (kh, kw), (sh, sw), P, parts = layer.pads, layer.k, layer.s, layer.xp, layer.parts
    S, C, T = P.shape[1], P.shape[2], kh * kw
    L = geometry(layer, *layer.xshape[2:])[3]
    WkT = np.ascontiguousarray(layer.p["W"].transpose(2, 3, 1, 0).reshape(T, C, O))    # (taps, C_in, C_out)
    dx = k.scratch(layer, "dx", layer.xshape if layer.need_dx else (0,) * 4, dy.dtype)
    R = C * T

    def part(i, dW, db):                                               # samples a … e−1
        a, e = parts[i]
        shift_bwd(dy[a:e], P[a:e], WkT, dW, db,
                  k.scratch(layer, ("dP", i), P.shape[1:], dy.dtype), dx[a:e],
                  k.scratch(layer, ("dy2", i), (O, L), dy.dtype), k.scratch(layer, ("dwt", i), (T, C, O), dy.dtype),
                  kh, kw, sh, sw, ph, pw, L, layer.need_dx)
    k.weight_grads(layer, len(parts), O, R, dy.dtype, part, before, after, dx)
    return (dx if layer.need_dx else None,)
