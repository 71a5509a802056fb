"""The kernels of MultiHeadSelfAttention: per sample and head, QKᵀ, masked softmax and AV in one pass.

Each (sample, head) works on a T×T tile that stays in cache: the scores are written straight into the
attention weights A and normalised there, and the backward's dL/dα becomes dL/dS in one tile. The GEMMs are
numpy's cblas on row-strided blocks of the [q | k | v] buffer (engine.blas.gemm), so no head is copied.
"""
import numpy as np
from .._jit import njit, overload, types

from ..blas import gemm
from ..kernels import softmax_bwd

_SUMS = {"reassoc", "nsz", "contract", "arcp"}      # lets row sums vectorise; NaN and ±inf still propagate


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def exp_nonpos(a, bits):
    """a ← exp(a) in place for float32 a ≤ 0 (flat, C-contiguous): Cephes' expf, within 2 ulp of exp;
    0 at −inf and below −87 (where exp is < 2⁻¹²⁵), NaN stays NaN; bits (int32, a's size) is scratch."""
    f = bits.view(np.float32)
    lo = np.float32(-87.0)
    for i in range(a.size):
        x = a[i]
        xc = x if x > lo else lo
        n = np.int32(xc * np.float32(1.44269504) - np.float32(0.5))     # round(x·log₂e) for x ≤ 0
        nf = np.float32(n)
        r = xc - nf * np.float32(0.693359375) + nf * np.float32(2.12194440e-4)   # x − n·ln 2, |r| ≤ ln 2 / 2
        p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        bits[i] = (n + np.int32(127)) << 23                              # the float 2ⁿ
        a[i] = p * r * r + r + np.float32(1.0) if x > lo else (np.float32(0.0) if x <= lo else x)
    for i in range(a.size):
        a[i] *= f[i]


def _exp(a, bits):
    """a ← exp(a) in place for flat a ≤ 0 (compiled per dtype: exp_nonpos for float32, libm's exp else)."""


@overload(_exp)
def _exp_impl(a, bits):
    if a.dtype == types.float32:
        return lambda a, bits: exp_nonpos(a, bits)

    def libm(a, bits):
        for i in range(a.size):
            a[i] = np.exp(a[i])
    return libm


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def _softmax_rows(S, scale, valid, causal, bits, kvalid):
    """S (T, T') ← softmax_s(scale·S[t, s]) in place over the keys query t may see (kvalid[s], s ≤ t if causal);
    a padded query row (not valid[t]) or one with no key allowed becomes 0, never NaN. bits: T·T' int32 scratch.
    Self-attention passes its one mask as both valid (queries) and kvalid (keys)."""
    T, K = S.shape
    full = not causal
    for s in range(K):
        full = full and kvalid[s]
    for t in range(T):
        full = full and valid[t]
    for t in range(T):                                  # scale·(S − row max) over allowed keys, −inf elsewhere
        row = S[t]
        mx = row[0]                                     # in S's dtype
        if full:                                        # every key allowed: branch-free loops
            for s in range(1, K):
                v = row[s]
                mx = v if v > mx else mx                # a select: vectorises (NaN reaches the row below)
            for s in range(K):
                row[s] = (row[s] - mx) * scale
            continue
        n = min(t + 1, K) if causal else K
        seen = False
        for s in range(n):
            if valid[t] and kvalid[s] and (not seen or row[s] > mx):
                mx, seen = row[s], True
        for s in range(K):
            row[s] = (row[s] - mx) * scale if (seen and s < n and kvalid[s]) else -np.inf
    _exp(S.reshape(-1), bits)                           # the whole tile at once; exp(−inf) = 0
    z = S.dtype.type(0)
    for t in range(T):
        row = S[t]
        tot = z                                         # in S's dtype: terms in [0, 1], the largest 1
        for s in range(K):
            tot += row[s]
        if tot > 0:                                     # else nothing was allowed: the row stays 0
            inv = 1.0 / tot
            for s in range(K):
                row[s] *= inv


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def attend(qkv, valid, causal, scale, h, A, Z):
    """A[b, j] = masked softmax(scale·q kᵀ) and Z[b, :, head j] = A[b, j] v for every sample b and head j.

    qkv (n, T, 3D) = [q | k | v] with heads of d_k = D / h columns each; valid (n, T); A (n, h, T, T); Z (n, T, D)."""
    n, T, D3 = qkv.shape
    D = D3 // 3
    dk = D // h
    bits = np.empty(T * T, np.int32)
    for b in range(n):
        for j in range(h):
            c = j * dk
            q, k, v = qkv[b, :, c:c + dk], qkv[b, :, D + c:D + c + dk], qkv[b, :, 2 * D + c:2 * D + c + dk]
            S = A[b, j]                                                 # (T, T)
            gemm(q, k, S, True)                                         # (T, dk) @ (dk, T)
            _softmax_rows(S, scale, valid[b], causal, bits, valid[b])
            gemm(S, v, Z[b, :, c:c + dk])                               # (T, T) @ (T, dk)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def attend_bwd(qkv, A, dZ, scale, h, dqkv):
    """dqkv = [dq | dk | dv] from dZ (n, T, D), the gradient of attend's Z; shapes as attend.

    dα = dz vᵀ, dv = αᵀ dz, dS = scale · α ⊙ (dα − Σ_s dα ⊙ α) row by row (0 where α is masked), dq = dS k,
    dk = dSᵀ q."""
    n, T, D3 = qkv.shape
    D = D3 // 3
    dk = D // h
    G = np.empty((T, T), qkv.dtype)                                     # dα, then dS
    for b in range(n):
        for j in range(h):
            c = j * dk
            q, k, v = qkv[b, :, c:c + dk], qkv[b, :, D + c:D + c + dk], qkv[b, :, 2 * D + c:2 * D + c + dk]
            dz, a = dZ[b, :, c:c + dk], A[b, j]
            gemm(dz, v, G, True)                                        # (T, dk) @ (dk, T)
            gemm(a, dz, dqkv[b, :, 2 * D + c:2 * D + c + dk], False, True)   # (T, T)ᵀ @ (T, dk)
            for t in range(T):
                r = G.dtype.type(0)
                for s in range(T):
                    r += G[t, s] * a[t, s]
                for s in range(T):
                    G[t, s] = scale * a[t, s] * (G[t, s] - r)
            gemm(G, k, dqkv[b, :, c:c + dk])                            # (T, T) @ (T, dk)
            gemm(G, q, dqkv[b, :, D + c:D + c + dk], False, True)       # (T, T)ᵀ @ (T, dk)


# ---- O(T) memory: key blocks with a running softmax (FlashAttention), for long sequences ----
QBLOCK, KBLOCK = 128, 256          # query rows and key columns per score block (QBLOCK·KBLOCK floats of scratch)


@njit(cache=True, nogil=True)
def _allowed(qvalid, kvalid, causal, t, s):
    """Query t may see key s: both valid and, when causal, s ≤ t."""
    return qvalid[t] and kvalid[s] and (not causal or s <= t)


@njit(cache=True, nogil=True)
def _block_full(qvalid, kvalid, causal, t0, t1, s0, s1):
    """Every query t0 … t1−1 may see every key s0 … s1−1 (no per-element mask needed)."""
    if causal and s1 - 1 > t0:
        return False
    for t in range(t0, t1):
        if not qvalid[t]:
            return False
    for s in range(s0, s1):
        if not kvalid[s]:
            return False
    return True


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def flash_attend(q, k, v, qvalid, kvalid, causal, scale, h, Z, lse):
    """Z as `attend` / `cross_attend` make it, holding one QBLOCK×KBLOCK score block at a time, and lse[b, j, t] =
    log Σ_s exp(scale·q_t·k_s) over the keys query t may see (+inf when it may see none: its row of Z is 0).

    Per query block: running max m, running sum l and accumulator a; for each key block S = q kᵀ,
    m' = max(m, max_s S), a ← a·e^{scale(m−m')} + e^{scale(S−m')} v, l ← l·e^{scale(m−m')} + Σ_s e^{scale(S−m')};
    finally z = a / l. q (n, T, D), k and v (n, S, D) (any strides: views of [q | k | v] buffers), heads of
    d_k = D / h columns; qvalid (n, T), kvalid (n, S); Z (n, T, D), lse (n, h, T)."""
    n, T, D = q.shape
    S = k.shape[1]
    dk = D // h
    bq, bk = min(T, QBLOCK), min(S, KBLOCK)
    buf = np.empty(bq * bk, q.dtype)
    bits = np.empty(bq * bk, np.int32)
    acc = np.empty((bq, dk), q.dtype)
    m = np.empty(bq, q.dtype)
    l = np.empty(bq, np.float64)
    for b in range(n):
        qv, kv = qvalid[b], kvalid[b]
        for j in range(h):
            c = j * dk
            qb, kb, vb = q[b, :, c:c + dk], k[b, :, c:c + dk], v[b, :, c:c + dk]
            for t0 in range(0, T, bq):
                t1 = min(t0 + bq, T)
                nq = t1 - t0
                m[:] = -np.inf
                l[:] = 0.0
                acc[...] = 0
                send = min(t1, S) if causal else S
                for s0 in range(0, send, bk):
                    s1 = min(s0 + bk, send)
                    nk = s1 - s0
                    P = buf[:nq * nk].reshape(nq, nk)                   # (nq, nk) scores of this block
                    gemm(qb[t0:t1], kb[s0:s1], P, True)                 # (nq, dk) @ (dk, nk)
                    full = _block_full(qv, kv, causal, t0, t1, s0, s1)
                    for r in range(nq):
                        row = P[r]
                        mx, seen = row[0], full
                        if full:
                            for s in range(1, nk):
                                mx = max(mx, row[s])
                        else:
                            for s in range(nk):
                                if _allowed(qv, kv, causal, t0 + r, s0 + s) and (not seen or row[s] > mx):
                                    mx, seen = row[s], True
                        if not seen:                                    # nothing allowed in this block
                            row[:] = -np.inf
                            continue
                        mn = max(m[r], mx)
                        alpha = np.exp((m[r] - mn) * scale)             # 0 on the first allowed block
                        m[r] = mn
                        l[r] *= alpha
                        acc[r] *= alpha
                        if full:                                        # branch-free: vectorises
                            for s in range(nk):
                                row[s] = (row[s] - mn) * scale
                        else:
                            for s in range(nk):
                                row[s] = (row[s] - mn) * scale if _allowed(qv, kv, causal, t0 + r, s0 + s) \
                                    else -np.inf
                    _exp(P.reshape(-1), bits[:nq * nk])                 # e^{scale(S − m')}, 0 where not allowed
                    for r in range(nq):
                        tot = 0.0
                        row = P[r]
                        for s in range(nk):
                            tot += row[s]
                        l[r] += tot
                    gemm(P, vb[s0:s1], acc[:nq], False, False, True)    # acc += (nq, nk) @ (nk, dk)
                for r in range(nq):
                    z = Z[b, t0 + r, c:c + dk]
                    if l[r] > 0:
                        inv = 1.0 / l[r]
                        for e in range(dk):
                            z[e] = acc[r, e] * inv
                        lse[b, j, t0 + r] = m[r] * scale + np.log(l[r])
                    else:
                        z[:] = 0
                        lse[b, j, t0 + r] = np.inf


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def flash_attend_bwd(q, k, v, Z, dZ, lse, qvalid, kvalid, causal, scale, h, dq, dk_, dv):
    """dq (n, T, D), dk_ and dv (n, S, D) as `attend_bwd` makes them, recomputing α = exp(scale·q kᵀ − lse) block
    by block (any strides: views of [dq | dk | dv] buffers).

    With D_t = Σ_e dz_te z_te (= Σ_s dα_ts α_ts): dv = αᵀ dz, dS = scale · α ⊙ (dz vᵀ − D), dq = dS k, dk = dSᵀ q.
    Key blocks outside, query blocks inside; shapes as flash_attend, dZ (n, T, D)."""
    n, T, D = q.shape
    S = k.shape[1]
    dk = D // h
    bq, bk = min(T, QBLOCK), min(S, KBLOCK)
    buf = np.empty(bq * bk, q.dtype)
    gbuf = np.empty(bq * bk, q.dtype)
    bits = np.empty(bq * bk, np.int32)
    Dt = np.empty(T, q.dtype)
    for b in range(n):
        qv, kv = qvalid[b], kvalid[b]
        for j in range(h):
            c = j * dk
            qb, kb, vb = q[b, :, c:c + dk], k[b, :, c:c + dk], v[b, :, c:c + dk]
            dqb, dkb, dvb = dq[b, :, c:c + dk], dk_[b, :, c:c + dk], dv[b, :, c:c + dk]
            dqb[...] = 0
            dkb[...] = 0
            dvb[...] = 0
            z, dz, ls = Z[b, :, c:c + dk], dZ[b, :, c:c + dk], lse[b, j]
            for t in range(T):
                r = 0.0
                for e in range(dk):
                    r += dz[t, e] * z[t, e]
                Dt[t] = r
            for s0 in range(0, S, bk):
                s1 = min(s0 + bk, S)
                nk = s1 - s0
                any_key = False
                for s in range(s0, s1):
                    any_key = any_key or kv[s]
                if not any_key:                                         # no query sees these keys: dk = dv = 0
                    continue
                for t0 in range(s0 - s0 % bq if causal else 0, T, bq):
                    t1 = min(t0 + bq, T)
                    nq = t1 - t0
                    P = buf[:nq * nk].reshape(nq, nk)                   # (nq, nk) α of this block
                    G = gbuf[:nq * nk].reshape(nq, nk)                  # dα, then dS
                    gemm(qb[t0:t1], kb[s0:s1], P, True)                 # (nq, dk) @ (dk, nk)
                    full = _block_full(qv, kv, causal, t0, t1, s0, s1)
                    for r in range(nq):
                        row, lt = P[r], ls[t0 + r]
                        if full:
                            for s in range(nk):
                                row[s] = row[s] * scale - lt
                        else:
                            for s in range(nk):
                                row[s] = row[s] * scale - lt if _allowed(qv, kv, causal, t0 + r, s0 + s) \
                                    else -np.inf
                    _exp(P.reshape(-1), bits[:nq * nk])                 # ≤ 0 up to rounding (lse ≥ the row max)
                    gemm(P, dz[t0:t1], dvb[s0:s1], False, True, True)   # dv += (nk, nq) @ (nq, dk)
                    gemm(dz[t0:t1], vb[s0:s1], G, True)                 # dα = (nq, dk) @ (dk, nk)
                    for r in range(nq):
                        dt = Dt[t0 + r]
                        for s in range(nk):
                            G[r, s] = scale * P[r, s] * (G[r, s] - dt)
                    gemm(G, kb[s0:s1], dqb[t0:t1], False, False, True)  # dq += (nq, nk) @ (nk, dk)
                    gemm(G, qb[t0:t1], dkb[s0:s1], False, True, True)   # dk += (nk, nq) @ (nq, dk)


# ---- cross-attention (CrossAttention): queries from one sequence, keys and values from another ----
@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def cross_attend(q, kv, qvalid, kvalid, scale, h, A, Z):
    """A[b, j] = masked softmax(scale·q kᵀ) (T, S) and Z[b, :, head j] = A[b, j] v for every sample b and head j.

    q (n, T, D), kv (n, S, 2D) = [k | v], heads of d_k = D / h columns; qvalid (n, T), kvalid (n, S); A (n, h, T, S);
    Z (n, T, D)."""
    n, T, D = q.shape
    S = kv.shape[1]
    dk = D // h
    bits = np.empty(T * S, np.int32)
    for b in range(n):
        for j in range(h):
            c = j * dk
            qb, k, v = q[b, :, c:c + dk], kv[b, :, c:c + dk], kv[b, :, D + c:D + c + dk]
            P = A[b, j]                                                 # (T, S)
            gemm(qb, k, P, True)                                        # (T, dk) @ (dk, S)
            _softmax_rows(P, scale, qvalid[b], False, bits, kvalid[b])
            gemm(P, v, Z[b, :, c:c + dk])                               # (T, S) @ (S, dk)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def cross_attend_bwd(q, kv, A, dZ, scale, h, dq, dkv):
    """dq (n, T, D) and dkv = [dk | dv] (n, S, 2D) from dZ (n, T, D), the gradient of cross_attend's Z.

    dα = dz vᵀ, dv = αᵀ dz, dS = scale · α ⊙ (dα − Σ_s dα ⊙ α) (kernels.softmax_bwd), dq = dS k, dk = dSᵀ q."""
    n, T, D = q.shape
    S = kv.shape[1]
    dk = D // h
    G = np.empty((T, S), q.dtype)                                       # dα, then dS / scale
    for b in range(n):
        for j in range(h):
            c = j * dk
            qb, k, v = q[b, :, c:c + dk], kv[b, :, c:c + dk], kv[b, :, D + c:D + c + dk]
            dz, a = dZ[b, :, c:c + dk], A[b, j]
            gemm(dz, v, G, True)                                        # (T, dk) @ (dk, S)
            gemm(a, dz, dkv[b, :, D + c:D + c + dk], False, True)       # (T, S)ᵀ @ (T, dk)
            softmax_bwd(a, G, G, 1)                                     # α ⊙ (dα − Σ_s dα ⊙ α), row by row
            G *= scale
            gemm(G, k, dq[b, :, c:c + dk])                              # (T, S) @ (S, dk)
            gemm(G, qb, dkv[b, :, c:c + dk], False, True)               # (T, S)ᵀ @ (T, dk)
