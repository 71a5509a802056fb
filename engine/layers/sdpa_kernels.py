"""The kernels of ScaledDotProductAttention: per sample and query head, q kᵀ, an optional softcap, the masked
softmax of attention_kernels (the one softmax of the code base) and A v; a key/value head serves g = h / h_kv
consecutive query heads (grouped-query attention), and values may be wider or narrower than queries and keys."""
import numpy as np

from .._jit import njit
from ..blas import gemm
from ..kernels import softmax_bwd
from .attention_kernels import _SUMS, _softmax_rows


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def _cap(P, scale, softcap):
    """P ← softcap·tanh(scale·P/softcap) in place (the scores before the softmax, which then takes scale 1)."""
    r = scale / softcap
    for t in range(P.shape[0]):
        for s in range(P.shape[1]):
            P[t, s] = softcap * np.tanh(P[t, s] * r)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def sdpa_attend(q, k, v, qvalid, kvalid, causal, scale, softcap, h, hkv, A, Z):
    """A[b, j] = masked softmax(scale·q_j k_{j//g}ᵀ) (with softcap > 0: of softcap·tanh(scale·q kᵀ/softcap)) and
    Z[b, :, head j] = A[b, j] v_{j//g} for every sample b and query head j.

    q (n, T, h·d_k), k (n, S, h_kv·d_k), v (n, S, h_kv·d_v); qvalid (n, T), kvalid (n, S); A (n, h, T, S);
    Z (n, T, h·d_v)."""
    n, T, Dq = q.shape
    S = k.shape[1]
    dk, dv, g = Dq // h, v.shape[2] // hkv, h // hkv
    bits = np.empty(T * S, np.int32)
    for b in range(n):
        for j in range(h):
            c = j // g
            P = A[b, j]                                                 # (T, S)
            gemm(q[b, :, j * dk:(j + 1) * dk], k[b, :, c * dk:(c + 1) * dk], P, True)   # (T, dk) @ (dk, S)
            if softcap > 0:
                _cap(P, scale, softcap)
                _softmax_rows(P, 1.0, qvalid[b], causal, bits, kvalid[b])
            else:
                _softmax_rows(P, scale, qvalid[b], causal, bits, kvalid[b])
            gemm(P, v[b, :, c * dv:(c + 1) * dv], Z[b, :, j * dv:(j + 1) * dv])          # (T, S) @ (S, dv)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
def sdpa_attend_bwd(q, k, v, A, dZ, scale, softcap, h, hkv, dq, dk_, dv_):
    """dq (n, T, h·d_k), dk_ (n, S, h_kv·d_k), dv_ (n, S, h_kv·d_v) from dZ (n, T, h·d_v), the gradient of
    sdpa_attend's Z; a key/value head sums the gradients of its g query heads.

    dα = dz vᵀ, dv = αᵀ dz, dS = α ⊙ (dα − Σ_s dα ⊙ α) (kernels.softmax_bwd) times scale, or with a softcap
    scale·(1 − tanh²(scale·q·k/softcap)); dq = dS k, dk = dSᵀ q. A padded query row has α = 0, so it passes 0."""
    n, T, Dq = q.shape
    S = k.shape[1]
    dk, dv, g = Dq // h, v.shape[2] // hkv, h // hkv
    G = np.empty((T, S), q.dtype)                                       # dα, then dS
    R = np.empty((T, S), q.dtype)                                       # q kᵀ again (softcap only)
    dk_[...] = 0
    dv_[...] = 0
    for b in range(n):
        for j in range(h):
            c = j // g
            qh, kh, vh = q[b, :, j * dk:(j + 1) * dk], k[b, :, c * dk:(c + 1) * dk], v[b, :, c * dv:(c + 1) * dv]
            dz, a = dZ[b, :, j * dv:(j + 1) * dv], A[b, j]
            gemm(dz, vh, G, True)                                       # dα = (T, dv) @ (dv, S)
            gemm(a, dz, dv_[b, :, c * dv:(c + 1) * dv], False, True, True)   # dv += (T, S)ᵀ @ (T, dv)
            softmax_bwd(a, G, G, 1)                                     # α ⊙ (dα − Σ_s dα ⊙ α), row by row
            if softcap > 0:
                gemm(qh, kh, R, True)                                   # (T, dk) @ (dk, S)
                r = scale / softcap
                for t in range(T):
                    for s in range(S):
                        th = np.tanh(R[t, s] * r)
                        G[t, s] *= scale * (1.0 - th * th)
            else:
                G *= scale
            gemm(G, kh, dq[b, :, j * dk:(j + 1) * dk])                  # dq = (T, S) @ (S, dk)
            gemm(G, qh, dk_[b, :, c * dk:(c + 1) * dk], False, True, True)   # dk += (T, S)ᵀ @ (T, dk)
