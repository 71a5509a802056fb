"""The kernels of MultiHeadSelfAttention: per sample and head, QKᵀ, masked softmax and AV in one pass.

Each (sample, head) works on a T×T tile that stays in cache: the scores are written straight into the
attention weights A and normalised there, and the backward's dL/dα becomes dL/dS in one tile. The GEMMs are
numpy's cblas on row-strided blocks of the [q | k | v] buffer (engine.blas.gemm), so no head is copied.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from ..blas import gemm

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
def _softmax_rows(S, scale, valid, causal, bits):
    """S (T, T) ← softmax_s(scale·S[t, s]) in place over the keys query t may see (valid[s], s ≤ t if causal);
    a padded query row (not valid[t]) or one with no key allowed becomes 0, never NaN. bits: T·T int32 scratch."""
    T = S.shape[0]
    full = not causal
    for s in range(T):
        full = full and valid[s]
    for t in range(T):                                  # scale·(S − row max) over allowed keys, −inf elsewhere
        row = S[t]
        mx = row[0]                                     # in S's dtype
        if full:                                        # every key allowed: branch-free loops
            for s in range(1, T):
                mx = max(mx, row[s])
            for s in range(T):
                row[s] = (row[s] - mx) * scale
            continue
        n = t + 1 if causal else T
        seen = False
        for s in range(n):
            if valid[t] and valid[s] and (not seen or row[s] > mx):
                mx, seen = row[s], True
        for s in range(T):
            row[s] = (row[s] - mx) * scale if (seen and s < n and valid[s]) else -np.inf
    _exp(S.reshape(-1), bits)                           # the whole tile at once; exp(−inf) = 0
    for t in range(T):
        row = S[t]
        tot = 0.0
        for s in range(T):
            tot += row[s]
        if tot > 0:                                     # else nothing was allowed: the row stays 0
            inv = 1.0 / tot
            for s in range(T):
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
            _softmax_rows(S, scale, valid[b], causal, bits)
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
                r = 0.0
                for s in range(T):
                    r += G[t, s] * a[t, s]
                for s in range(T):
                    G[t, s] = scale * a[t, s] * (G[t, s] - r)
            gemm(G, k, dqkv[b, :, c:c + dk])                            # (T, T) @ (T, dk)
            gemm(G, q, dqkv[b, :, D + c:D + c + dk], False, True)       # (T, T)ᵀ @ (T, dk)
