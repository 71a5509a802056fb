"""MultiHeadSelfAttention's work on one chunk of samples (T ≤ TILE_MAX_T: the kept T×T tiles) as one kernel call each
way: the projections, the heads' tiles and the output projection run without returning to Python between them (a
chunk had 3 kernel calls and ~10 array views made in Python forward, 5 and ~20 backward). Same kernels, same order."""
from .._jit import njit
from ..kernels import dense_dw, dense_dx, dense_fwd
from .attention_kernels import attend, attend_bwd


@njit(cache=True, nogil=True, error_model="numpy")
def rows_fwd(x2, W, bias, qkv, valid, causal, scale, h, A, Zc, Wo, bo, y, masked, a, b):
    """Samples a … b−1: qkv = x Wᵀ + b (B·T, 3D), A and Z per head (attend), y = Z W_Oᵀ + b_O (B·T, d), padded steps 0."""
    T = valid.shape[1]
    n, r0, r1 = b - a, a * T, b * T
    dense_fwd(x2[r0:r1], W, bias, qkv[r0:r1])                                  # (n·T, 3D)
    attend(qkv[r0:r1].reshape(n, T, qkv.shape[1]), valid[a:b], causal, scale, h, A[a:b],
           Zc[r0:r1].reshape(n, T, Zc.shape[1]))                               # A (n, h, T, T), Z (n, T, D)
    dense_fwd(Zc[r0:r1], Wo, bo, y[r0:r1])                                      # (n·T, d)
    if masked:                                                                  # y ·= valid, as numpy's y[r] *= valid
        for r in range(r0, r1):
            v = 1.0 if valid[r // T, r % T] else 0.0                         # y·1 = y, y·0 as numpy's
            for j in range(y.shape[1]):
                y[r, j] *= v


@njit(cache=True, nogil=True, error_model="numpy")
def rows_bwd(dy0, dy2, remask, valid, Wo, dZ, qkv, A, scale, h, dqkv, Zc, x2, W, dx, flag, o, a, b):
    """Samples a … b−1 of the backward: dy2 = dy0 ⊙ valid when remask, dZ = dy W_O, dqkv (attend_bwd), dx = dqkv W
    (flag as kernels.dense_dx), and the chunk's share o = [dW_O | db_O | dW_QKV | db_QKV]."""
    T = valid.shape[1]
    n, r0, r1 = b - a, a * T, b * T
    d, D = Wo.shape
    if remask:                                                                  # padded steps pass nothing back
        for r in range(r0, r1):
            v = 1.0 if valid[r // T, r % T] else 0.0
            for j in range(d):
                dy2[r, j] = dy0[r, j] * v
    dense_dx(dy2[r0:r1], Wo, dZ[r0:r1], 1)                                      # (n·T, D)
    attend_bwd(qkv[r0:r1].reshape(n, T, 3 * D), A[a:b], dZ[r0:r1].reshape(n, T, D), scale, h,
               dqkv[r0:r1].reshape(n, T, 3 * D))                               # (n, T, 3D)
    dense_dw(Zc[r0:r1], dy2[r0:r1], o[:d * D].reshape(d, D), o[d * D:d * D + d])   # (d, D), (d,)
    if flag:                                                                    # after the last read of dy2's rows
        dense_dx(dqkv[r0:r1], W, dx[r0:r1], flag)                               # (n·T, d)
    e = o.size - 3 * D
    dense_dw(x2[r0:r1], dqkv[r0:r1], o[d * D + d:e].reshape(3 * D, d), o[e:])   # (3D, d), (3D,)


@njit(cache=True, nogil=True, error_model="numpy")
def stack_qkv(Wq, Wk, Wv, bq, bk, bv, W, b):
    """W = [W_Q; W_K; W_V] (3D, d) and b = [b_Q | b_K | b_V] (3D,): one kernel call (two np.concatenate calls cost
    20-50 µs each in the step, the caches cold after the loops)."""
    D = Wq.shape[0]
    W[:D] = Wq
    W[D:2 * D] = Wk
    W[2 * D:] = Wv
    b[:D] = bq
    b[D:2 * D] = bk
    b[2 * D:] = bv
