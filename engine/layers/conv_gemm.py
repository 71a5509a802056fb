"""Conv2D at stride 1 with 'same' padding on small images: the weight gradient's per-tap GEMMs over several samples.

conv_shift runs one GEMM per kernel tap and sample on a view of the sample's padded input; at 14×14 a sample has
only L = 209…222 output columns, and dW_tᵀ (C_in, C_out) = X_t @ dy2ᵀ per sample is a GEMM with K = L. Here the
padded inputs of m samples lie one below the other in one channel-major block Q (C_in, m·S): each sample takes
Hs = H + P_h rows of pitch Wp = W + P_w (its data, then P_h zero rows shared with the sample below; P_w zero columns
left of each row, shared with the row to the left), after P_h zero rows on top. Output column n·S + r·Wp + q
(S = Hs·Wp) is sample n's (r, q), tap (i, j) reads Q[:, i·Wp + j:][:, :N], N = (m − 1)·S + L:
    y2 (C_out, L)       = Σ_t W_t (C_out, C_in) @ Q_t (C_in, L)          per sample (y2 stays in L1 over the taps)
    dW_tᵀ (C_in, C_out) += Q_t @ dy2ᵀ                                      per block, K = N (dy2 zero in junk columns)
    dQ_t (C_in, L)      += W_tᵀ @ dy2                                      per sample, into overlapping views of dQ
and dx is dQ's interior. Blocks are fixed by the batch chunks (parallel.chunks) and BLOCK, never by the thread
count, and dW is summed in chunk order: one thread and two give the same bits. Measured on one core: 16 → 32
channels at 14×14 (digits-cnn), batch 64, backward 3.4 against conv_shift's 3.7 ms, forward equal; with 32 input
channels (workload h) backward was slower (24.6 against 19.6 ms at 16×16), so those stay on conv_shift.
"""
import numpy as np

from .. import parallel
from .._jit import njit
from ..blas import gemm
from . import conv_kernels as k
from .conv_shift import taps_to_dW

BLOCK = 512 << 10       # bytes of a block's padded input and output gradient (Q, dy2) at most: they stay in L2
MAX_L = 1024            # output columns per sample below which one GEMM per sample is too short for BLAS
MIN_CHANNELS, MAX_CHANNELS = 16, 32     # C_in: below, conv_shift does not run (im2col); from 32 on, it is faster


def fits(layer):
    """Whether Conv2D `layer` runs here: groups 1, dilation 1, stride 1, 'same' padding of an odd kernel (the shared
    padding), MIN_CHANNELS ≤ C_in < MAX_CHANNELS, and few output columns per sample."""
    if not (layer.fast and layer.s == (1, 1) and MIN_CHANNELS <= layer.in_shapes[0][0] < MAX_CHANNELS):
        return False
    (ph, pw), (kh, kw), (_, H, W) = layer.pads, layer.k, layer.in_shapes[0]
    return kh == 2 * ph + 1 and kw == 2 * pw + 1 and (H - 1) * (W + pw) + W <= MAX_L


@njit(cache=True, nogil=True, error_model="numpy")
def pad_block(x, Q, ph, pw, Hs, Wp):
    """Q[c, (ph + n·Hs + r)·Wp + pw + q] = x[n, c, r, q]; Q's other entries (ph zero rows above each sample and pw
    zero columns left of each row, shared with the sample above and the row to the left) are never written: Q is
    made zero once (its scratch) and keeps them. Entries of samples beyond B (a smaller block in the same
    buffer) may hold old values; no tap of these B samples reads them."""
    B, C, H, W = x.shape
    for c in range(C):
        dst = Q[c]
        for n in range(B):
            src = x[n, c]
            for r in range(H):
                at = (ph + n * Hs + r) * Wp + pw
                for q in range(W):
                    dst[at + q] = src[r, q]


@njit(cache=True, nogil=True, error_model="numpy")
def crop_block(dQ, dx, ph, pw, Hs, Wp):
    """dx[n, c, r, q] = dQ[c, (ph + n·Hs + r)·Wp + pw + q] (the inverse of pad_block)."""
    B, C, H, W = dx.shape
    for n in range(B):
        for c in range(C):
            for r in range(H):
                at = (ph + n * Hs + r) * Wp + pw
                src = dQ[c, at:at + W]
                dst = dx[n, c, r]
                for q in range(W):
                    dst[q] = src[q]


@njit(cache=True, nogil=True, error_model="numpy")
def gemm_fwd(x, Q, Wk, b, y, y2, kh, kw, ph, pw, Hs, Wp, sub):
    """y = W ⋆ x + b for this chunk; Q (blocks, C_in, ≥ sub·S + (ph + 1)·Wp) keeps `sub` samples a block for
    backward; Wk (taps, C_out, C_in); y2 (C_out, L) scratch. The GEMMs run per sample: y2 stays in L1 through
    the taps (with a block's N columns each tap would read and write y2 in L2)."""
    B, C = x.shape[:2]
    HO, WO = y.shape[2], y.shape[3]
    S = Hs * Wp
    L = (HO - 1) * Wp + WO
    for a in range(0, B, sub):
        e = min(a + sub, B)
        Qb = Q[a // sub, :, :(e - a) * S + (ph + 1) * Wp]              # (C_in, m·S + (ph + 1)·Wp)
        pad_block(x[a:e], Qb, ph, pw, Hs, Wp)
        for n in range(e - a):
            for t in range(kh * kw):
                off = n * S + (t // kw) * Wp + t % kw
                gemm(Wk[t], Qb[:, off:off + L], y2, False, False, t > 0)   # (C_out, C_in) @ (C_in, L)
            k.rows_to_nchw(y2, b, y[a + n:a + n + 1], Wp, L)


@njit(cache=True, nogil=True, error_model="numpy")
def gemm_bwd(dy, Q, WkT, dW, db, dx, dy2buf, dQ, dwt, kh, kw, ph, pw, Hs, Wp, sub, need_dx):
    """dW (C_out, C_in·K_h·K_w), db: this chunk's sums; dx when need_dx. WkT (taps, C_in, C_out); dy2buf (C_out, ≥ N)
    zero outside the columns nchw_to_rows writes (the same in every block); dQ (C_in, S + (ph + 1)·Wp) and dwt
    (taps, C_in, C_out) scratch. dW's GEMMs take a block's N columns at once (K = N), dx's one sample at a time
    (its dQ stays in L1); a sample's dQ never reaches another sample's values (the padding between them)."""
    B, O, HO, WO = dy.shape
    T, C = WkT.shape[0], WkT.shape[1]
    S = Hs * Wp
    L = (HO - 1) * Wp + WO
    dbs = np.empty(O, dy.dtype)
    db[:] = 0
    for a in range(0, B, sub):
        e = min(a + sub, B)
        N = (e - a - 1) * S + L
        Qb = Q[a // sub, :, :(e - a) * S + (ph + 1) * Wp]              # (C_in, m·S + (ph + 1)·Wp)
        dy2 = dy2buf[:, :N]                                           # (C_out, N)
        k.nchw_to_rows(dy[a:e], dy2, dbs, Wp, S)
        for o in range(O):
            db[o] += dbs[o]
        for t in range(T):
            off = (t // kw) * Wp + t % kw
            gemm(Qb[:, off:off + N], dy2, dwt[t], True, False, a > 0)  # (C_in, N) @ (N, C_out)
        if need_dx:
            for n in range(e - a):
                dQ[:, L:] = 0
                for t in range(T):
                    off = (t // kw) * Wp + t % kw
                    gemm(WkT[t], dy2[:, n * S:n * S + L], dQ[:, off:off + L], False, False, t > 0)   # (C_in, L)
                crop_block(dQ, dx[a + n:a + n + 1], ph, pw, Hs, Wp)
    taps_to_dW(dwt, dW, B)


def _geometry(layer, x_shape, n):
    """(Hs, Wp, S, L, sub, width) for a chunk of n samples: rows and columns a sample takes in a block, S = Hs·Wp,
    output columns of the last sample, samples per block (blocks of equal size) and a block's columns."""
    (ph, pw), (O, HO, WO), C = layer.pads, layer.out_shape, x_shape[1]
    Hs, Wp = x_shape[2] + ph, x_shape[3] + pw
    S = Hs * Wp
    most = max(1, BLOCK // ((C + O) * S * 4))
    sub = -(-n // -(-n // most)) if n else 1
    return Hs, Wp, S, (HO - 1) * Wp + WO, sub, sub * S + (ph + 1) * Wp


def _plan(layer, key, arrays, make):
    """Per-chunk argument tuples kept on the layer while the arrays they slice are the same objects (buffers
    reused between steps; the plan holds them, so an object seen again is the same memory): the loop's items then
    do no Python beyond their kernel call."""
    plans = layer.__dict__.setdefault("_gemm_plans", {})
    got = plans.get(key)
    if got is None or len(got[0]) != len(arrays) or any(a is not b for a, b in zip(arrays, got[0])):
        got = plans[key] = (arrays, [make(i, a, e) for i, (a, e) in enumerate(layer.parts)])
    return got[1]


def _taps(layer, key, order, shape):
    """W's taps in `order` (a transpose of (C_out, C_in, K_h, K_w)) copied into a kept buffer of `shape`."""
    W = layer.p["W"]
    out = k.scratch(layer, key, shape, W.dtype)
    out.reshape(W.transpose(order).shape)[...] = W.transpose(order)
    return out


def forward_parts(layer, x, training):
    """Conv2D.forward_parts on this path: (y (B, C_out, H_out, W_out), part), part(i) for layer.parts[i]."""
    B, C = x.shape[:2]
    (ph, pw), (O, HO, WO), (kh, kw) = layer.pads, layer.out_shape, layer.k
    Wk = _taps(layer, "Wk", (2, 3, 0, 1), (kh * kw, O, C))                                  # (taps, C_out, C_in)
    b = layer.p["b"] if "b" in layer.p else k.scratch(layer, "b0", (O,), x.dtype, zero=True)
    y = k.scratch(layer, "y", (B, O, HO, WO), x.dtype) if training else np.empty((B, O, HO, WO), x.dtype)
    x = np.require(x, requirements="C")
    L = (HO - 1) * (x.shape[3] + pw) + WO
    layer.parts = parallel.chunks(B, C * kh * kw * L * x.itemsize)

    def make(i, a, e):                                                 # samples a … e−1
        Hs, Wp, S, L, sub, width = _geometry(layer, x.shape, e - a)
        return (x[a:e], k.scratch(layer, ("Q", i), (-(-(e - a) // sub), C, width), x.dtype, zero=True), Wk, b,
                y[a:e], k.scratch(layer, ("gy2", i), (O, L), x.dtype), kh, kw, ph, pw, Hs, Wp, sub)
    args = _plan(layer, "fwd", (x, y, Wk, b), make)
    layer.xshape = x.shape
    return y, lambda i: gemm_fwd(*args[i])


def backward_parts(layer, dy, before=None, after=None):
    """Conv2D.backward_parts on this path: (dx or None,), dW and db written into layer.g; dy C-contiguous."""
    O = dy.shape[1]
    (ph, pw), (kh, kw), C = layer.pads, layer.k, layer.xshape[1]
    T = kh * kw
    WkT = _taps(layer, "WkT", (2, 3, 1, 0), (T, C, O))                                     # (taps, C_in, C_out)
    dx = k.scratch(layer, "dx", layer.xshape if layer.need_dx else (0,) * 4, dy.dtype)

    def make(i, a, e):                                                 # samples a … e−1
        Hs, Wp, S, L, sub, width = _geometry(layer, layer.xshape, e - a)
        return (dy[a:e], layer._bufs[("Q", i)], WkT, dx[a:e],
                k.scratch(layer, ("gdy2", i), (O, (sub - 1) * S + L), dy.dtype, zero=True),
                k.scratch(layer, ("gdQ", i), (C, S + (ph + 1) * Wp), dy.dtype),
                k.scratch(layer, ("dwt", i), (T, C, O), dy.dtype), kh, kw, ph, pw, Hs, Wp, sub, layer.need_dx)
    args = _plan(layer, "bwd", (dy, dx, WkT) + tuple(layer._bufs[("Q", i)] for i in range(len(layer.parts))), make)

    def part(i, dW, db):
        q = args[i]
        gemm_bwd(q[0], q[1], q[2], dW, db, *q[3:])
    k.weight_grads(layer, len(layer.parts), O, C * T, dy.dtype, part, before, after, dx)
    return (dx if layer.need_dx else None,)
