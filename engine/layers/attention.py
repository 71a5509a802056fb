"""Multi-head self-attention: A = softmax(QKᵀ/√d_k), Z = AV per head, heads concatenated, then W_O."""
from math import sqrt

import numpy as np
from numba import njit

from ..errors import ShapeError
from ..hparams import HP
from .base import Fix, Layer, Param, fmt, register
from .conv_kernels import scratch


@njit(cache=True, nogil=True, error_model="numpy")
def _masked_logits(S, scale, valid, causal, A):
    """A[b,h,t,s] = scale·(S[b,h,t,s] − max_s S[b,h,t,s]) over allowed keys, −inf elsewhere.

    A key s is allowed for query t when valid[b,s] (and s ≤ t if causal); a padded query row
    (valid[b,t] false) or a row with no allowed key is all −inf."""
    B, H, T, _ = S.shape
    for b in range(B):
        for h in range(H):
            for t in range(T):
                n = t + 1 if causal else T
                mx = -np.inf
                if valid[b, t]:
                    for s in range(n):
                        if valid[b, s]:
                            mx = max(mx, S[b, h, t, s])
                if mx == -np.inf:
                    A[b, h, t, :] = -np.inf
                    continue
                for s in range(T):
                    A[b, h, t, s] = (S[b, h, t, s] - mx) * scale if (s < n and valid[b, s]) else -np.inf


@njit(cache=True, nogil=True, error_model="numpy")
def _normalize_rows(A):
    """Divide each row of exp-values A (B, h, T, T) by its sum; all-zero rows (nothing allowed) stay zero."""
    B, H, T, _ = A.shape
    for b in range(B):
        for h in range(H):
            for t in range(T):
                tot = 0.0
                for s in range(T):
                    tot += A[b, h, t, s]
                if tot > 0:
                    inv = 1.0 / tot
                    for s in range(T):
                        A[b, h, t, s] *= inv


def masked_softmax(S, scale, valid, causal, A):
    """A = softmax_s(scale·S) over allowed keys (see _masked_logits); rows with no allowed key are 0, never NaN."""
    _masked_logits(S, S.dtype.type(scale), valid, causal, A)
    np.exp(A, out=A)                                    # numpy's SIMD exp; exp(−inf) = 0
    _normalize_rows(A)


@njit(cache=True, nogil=True, error_model="numpy")
def masked_softmax_bwd(A, dA, scale, dS):
    """dS = scale · A ⊙ (dA − Σ_s dA ⊙ A) row by row (masked entries have A = 0, so dS = 0 there)."""
    B, H, T, _ = A.shape
    for b in range(B):
        for h in range(H):
            for t in range(T):
                r = 0.0
                for s in range(T):
                    r += dA[b, h, t, s] * A[b, h, t, s]
                for s in range(T):
                    dS[b, h, t, s] = scale * A[b, h, t, s] * (dA[b, h, t, s] - r)


def _divisor_near(d, h):
    """The divisor of d closest to h (the smaller one on a tie)."""
    divs = [k for k in range(1, d + 1) if d % k == 0]
    return min(divs, key=lambda k: (abs(k - h), k))


@register
class MultiHeadSelfAttention(Layer):
    category = "attention"
    doc = ("Self-attention over a sequence (T, d_model): q_t = W_Q x_t, k_t = W_K x_t, v_t = W_V x_t; "
           "α_{t→s} = softmax_s(q_t·k_s/√d_k); z_t = Σ_s α_{t→s} v_s per head; heads concatenated, then W_O. "
           "Padded steps are never attended to and give zero output.")
    hparams = (
        HP("heads", "int", 4, min=1, max=1024, doc="Number of heads h"),
        HP("d_k", "int", 0, min=0, max=1 << 16, doc="Width of each head; 0 = d_model / heads"),
        HP("causal", "bool", False, doc="Step t attends only to steps s ≤ t (no look-ahead)"),
    )
    taps_doc = {"attention": "(B, heads, T, T) attention weights α_{t→s}: valid rows sum to 1, "
                             "padded key columns and padded query rows are 0"}

    def _dk(self, d):
        return self.config["d_k"] or d // self.config["heads"]

    def compute_output_shape(self, in_shapes):
        (s,) = in_shapes
        self._expect_rank(s, (2,), "a sequence (steps, d_model)")
        d, h = s[1], self.config["heads"]
        if not self.config["d_k"] and d % h:
            k = _divisor_near(d, h)
            fix = Fix("set", f"set heads to {k}", config=(("heads", k),))
            raise ShapeError(f"{self.where}: d_model = {d} (input {fmt(s)}) is not divisible by heads = {h}, so "
                             f"d_k = d_model/heads is not whole: {fix.text} (or set d_k)", fix=fix)
        return s

    def params(self, in_shapes):
        d = in_shapes[0][1]
        D = self.config["heads"] * self._dk(d)
        ps = {}
        for n in "qkv":
            ps[f"W{n}"] = Param((D, d), "glorot_uniform", decay=True)     # (h·d_k, d_model), rows: head-major
            ps[f"b{n}"] = Param((D,), "zeros")
        ps["Wo"] = Param((d, D), "glorot_uniform", decay=True)            # (d_model, h·d_k)
        ps["bo"] = Param((d,), "zeros")
        return ps

    def macs(self, in_shapes):
        T, d = in_shapes[0]
        D = self.config["heads"] * self._dk(d)
        return T * 4 * d * D + 2 * T * T * D

    def formulas(self, in_shapes):
        """One line each for shape, params and MACs with this node's numbers."""
        T, d = in_shapes[0]
        h, dk = self.config["heads"], self._dk(d)
        D = h * dk
        f = {"shape": f"(T, d_model) → (T, d_model) = {fmt((T, d))}"}
        if D == d:
            f["params"] = f"4·d_model² + 4·d_model = 4·{d}² + 4·{d} = {4 * d * d + 4 * d:,}"
            f["macs"] = (f"T·4·d_model² + 2·T²·d_model = {T}·4·{d}² + 2·{T}²·{d} = "
                         f"{T * 4 * d * d + 2 * T * T * d:,}")
        else:
            f["params"] = (f"4·d_model·h·d_k + 3·h·d_k + d_model = 4·{d}·{h}·{dk} + 3·{h}·{dk} + {d} = "
                           f"{4 * d * D + 3 * D + d:,}")
            f["macs"] = (f"T·4·d_model·h·d_k + 2·T²·h·d_k = {T}·4·{d}·{D} + 2·{T}²·{D} = "
                         f"{T * 4 * d * D + 2 * T * T * D:,}")
        return f

    # ---- compute ----
    def forward(self, x, training=False):
        B, T, d = x.shape
        h = self.config["heads"]
        dk = self._dk(d)
        D = h * dk
        p = self.p
        W = np.concatenate([p["Wq"], p["Wk"], p["Wv"]])                 # (3D, d)
        b = np.concatenate([p["bq"], p["bk"], p["bv"]])                 # (3D,)
        self.x2 = np.ascontiguousarray(x).reshape(B * T, d)             # (B·T, d)
        qkv = np.matmul(self.x2, W.T, out=scratch(self, "qkv", (B * T, 3 * D), x.dtype))   # (B·T, 3D)
        qkv += b
        self.W = W
        q, k, v = qkv.reshape(B, T, 3, h, dk).transpose(2, 0, 3, 1, 4)  # each (B, h, T, dk), views
        self.q, self.k, self.v = q, k, v
        m = self.in_masks[0] if self.in_masks else None
        self.valid = np.ones((B, T), np.bool_) if m is None else np.ascontiguousarray(m, dtype=np.bool_)
        self.masked = m is not None and not self.valid.all()
        S = np.matmul(q, k.transpose(0, 1, 3, 2), out=scratch(self, "S", (B, h, T, T), x.dtype))  # q_t·k_s
        A = np.empty_like(S)                                            # fresh: the tap outlives this step
        self.scale = 1.0 / sqrt(dk)
        masked_softmax(S, self.scale, self.valid, self.config["causal"], A)
        self.A = A
        self.taps["attention"] = A
        Z = np.matmul(A, v)                                             # (B, h, T, dk)
        self.Zc = scratch(self, "Zc", (B * T, D), x.dtype)              # (B·T, D) heads concatenated
        self.Zc.reshape(B, T, h, dk)[...] = Z.transpose(0, 2, 1, 3)
        y = self.Zc @ p["Wo"].T                                         # (B·T, d)
        y += p["bo"]
        if self.masked:
            y *= self.valid.reshape(B * T, 1)                           # padded steps output 0
        return y.reshape(B, T, d)

    def backward(self, dy):
        B, T, d = dy.shape
        h = self.config["heads"]
        dk = self._dk(d)
        D = h * dk
        p, g = self.p, self.g
        dy2 = np.ascontiguousarray(dy).reshape(B * T, d)                # (B·T, d)
        if self.masked:
            dy2 = dy2 * self.valid.reshape(B * T, 1)
        np.matmul(dy2.T, self.Zc, out=g["Wo"])                          # (d, D)
        np.sum(dy2, axis=0, out=g["bo"])
        dZ = np.matmul(dy2, p["Wo"], out=scratch(self, "dZ", (B * T, D), dy.dtype))
        dZ = dZ.reshape(B, T, h, dk).transpose(0, 2, 1, 3)              # (B, h, T, dk)
        dqkv = scratch(self, "dqkv", (B, T, 3, h, dk), dy.dtype)
        dq, dk_, dv = dqkv.transpose(2, 0, 3, 1, 4)                     # each (B, h, T, dk), views
        A = self.A
        dA = np.matmul(dZ, self.v.transpose(0, 1, 3, 2), out=scratch(self, "dA", (B, h, T, T), dy.dtype))
        np.matmul(A.transpose(0, 1, 3, 2), dZ, out=dv)                  # (B, h, T, dk)
        dS = scratch(self, "dS", (B, h, T, T), dy.dtype)
        masked_softmax_bwd(A, dA, dA.dtype.type(self.scale), dS)                       # dL/d(q_t·k_s)
        np.matmul(dS, self.k, out=dq)                                   # (B, h, T, dk)
        np.matmul(dS.transpose(0, 1, 3, 2), self.q, out=dk_)            # (B, h, T, dk)
        dqkv2 = dqkv.reshape(B * T, 3 * D)                              # (B·T, 3D)
        dW = np.matmul(dqkv2.T, self.x2, out=scratch(self, "dW", (3 * D, d), dy.dtype))   # (3D, d)
        db = dqkv2.sum(axis=0)                                          # (3D,)
        for i, n in enumerate("qkv"):
            g[f"W{n}"][...] = dW[i * D:(i + 1) * D]
            g[f"b{n}"][...] = db[i * D:(i + 1) * D]
        if not self.need_dx:
            return (None,)
        return ((dqkv2 @ self.W).reshape(B, T, d),)                     # (B, T, d)

    @classmethod
    def samples(cls):
        return [({"heads": 2}, [(4, 6)]),
                ({"heads": 2}, [(5, 4)], {"mask": True}),
                ({"heads": 3, "d_k": 2, "causal": True}, [(4, 5)]),
                ({"heads": 1, "causal": True}, [(5, 3)], {"mask": True})]
