"""Multi-head self-attention: A = softmax(QKᵀ/√d_k), Z = AV per head, heads concatenated, then W_O."""
from math import sqrt

import numpy as np
from numba import njit

from .. import parallel
from ..errors import ShapeError
from ..hparams import HP
from .base import Fix, Layer, Param, fmt, register
from .conv_kernels import scratch


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"nsz", "contract"})
def _masked_logits(S, scale, valid, causal, A):
    """A[b,h,t,s] = scale·(S[b,h,t,s] − max_s S[b,h,t,s]) over allowed keys, −inf elsewhere.

    A key s is allowed for query t when valid[b,s] (and s ≤ t if causal); a padded query row
    (valid[b,t] false) or a row with no allowed key is all −inf."""
    B, H, T, _ = S.shape
    ninf = -np.inf * scale                              # −inf in S's dtype
    for b in range(B):
        full = not causal
        for s in range(T):
            full = full and valid[b, s]
        for h in range(H):
            for t in range(T):
                row, out = S[b, h, t], A[b, h, t]
                if full:                                # every key allowed: branch-free loops
                    mx = row[0]
                    for s in range(1, T):
                        mx = max(mx, row[s])
                    for s in range(T):
                        out[s] = (row[s] - mx) * scale
                    continue
                n = t + 1 if causal else T
                mx = ninf
                if valid[b, t]:
                    for s in range(n):
                        if valid[b, s]:
                            mx = max(mx, row[s])
                if mx == ninf:
                    out[:] = ninf
                    continue
                for s in range(T):
                    out[s] = (row[s] - mx) * scale if (s < n and valid[b, s]) else ninf


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


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
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


def masked_softmax(S, scale, valid, causal, A, bits=None):
    """A = softmax_s(scale·S) over allowed keys (see _masked_logits); rows with no allowed key are 0, never NaN.

    bits: int32 scratch of A's size, for float32 (exp_nonpos; numpy's exp for other dtypes)."""
    _masked_logits(S, scale, valid, causal, A)
    if A.dtype == np.float32:
        exp_nonpos(A.reshape(-1), np.empty(A.size, np.int32) if bits is None else bits.reshape(-1))
    else:
        np.exp(A, out=A)                                # exp(−inf) = 0
    _normalize_rows(A)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMS)
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
    fused = None          # runs on the per-layer path
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
    def _chunks(self, B, T, d, D):
        """Batch runs for engine.parallel of about 512 steps each (rows of the projections' GEMMs; numpy's
        batched matmuls cost more per call the smaller the batch, so chunks stay large)."""
        return parallel.chunks(B, T, target=512) if B else []

    def forward(self, x, training=False):
        B, T, d = x.shape
        h = self.config["heads"]
        dk = self._dk(d)
        D = h * dk
        p = self.p
        W = np.concatenate([p["Wq"], p["Wk"], p["Wv"]])                 # (3D, d)
        bias = np.concatenate([p["bq"], p["bk"], p["bv"]])              # (3D,)
        x2 = np.ascontiguousarray(x).reshape(B * T, d)                  # (B·T, d)
        qkv = scratch(self, "qkv", (B * T, 3 * D), x.dtype)             # (B·T, 3D) [q | k | v], heads within each
        m = self.in_masks[0] if self.in_masks else None
        valid = np.ones((B, T), np.bool_) if m is None else np.ascontiguousarray(m, dtype=np.bool_)   # (B, T)
        masked = m is not None and not valid.all()
        A = np.empty((B, h, T, T), x.dtype)                             # fresh: the tap outlives this step
        Zc = scratch(self, "Zc", (B * T, D), x.dtype)                   # (B·T, D) heads concatenated
        y = np.empty((B * T, d), x.dtype)                               # (B·T, d)
        scale = x.dtype.type(1.0 / sqrt(dk))
        causal, Wo, bo = self.config["causal"], p["Wo"], p["bo"]

        S = scratch(self, "S", (B, h, T, T), x.dtype)                    # (B, h, T, T) q_t·k_s
        bits = scratch(self, "bits", (B, h, T, T), np.int32)             # exp_nonpos's scratch

        def run(ab):                                                    # samples a … b−1
            a, b = ab
            r = slice(a * T, b * T)
            np.matmul(x2[r], W.T, out=qkv[r])                           # (n·T, 3D)
            qkv[r] += bias
            q, k, v = qkv[r].reshape(b - a, T, 3, h, dk).transpose(2, 0, 3, 1, 4)   # each (n, h, T, dk), views
            np.matmul(q, k.transpose(0, 1, 3, 2), out=S[a:b])           # (n, h, T, T)
            masked_softmax(S[a:b], scale, valid[a:b], causal, A[a:b], bits[a:b])
            np.matmul(A[a:b], v, out=Zc[r].reshape(b - a, T, h, dk).transpose(0, 2, 1, 3))    # (n, h, T, dk) view
            np.matmul(Zc[r], Wo.T, out=y[r])                            # (n·T, d)
            y[r] += bo
            if masked:
                y[r] *= valid[a:b].reshape(-1, 1)                       # padded steps output 0

        parallel.run(run, self._chunks(B, T, d, D))
        self.x2, self.W, self.qkv, self.valid, self.masked, self.A, self.Zc = x2, W, qkv, valid, masked, A, Zc
        self.scale = scale
        self.q, self.k, self.v = qkv.reshape(B, T, 3, h, dk).transpose(2, 0, 3, 1, 4)   # (B, h, T, dk) views: the
        self.taps["attention"] = A                                                     # attention view's q_t·k_s
        return y.reshape(B, T, d)

    def backward(self, dy):
        B, T, d = dy.shape
        h = self.config["heads"]
        dk = self._dk(d)
        D = h * dk
        p, g = self.p, self.g
        dt = self.qkv.dtype
        dy2 = np.ascontiguousarray(dy, dtype=dt).reshape(B * T, d)     # (B·T, d)
        if self.masked:
            dy2 = dy2 * self.valid.reshape(B * T, 1)                    # padded steps pass nothing back
        dZ = scratch(self, "dZ", (B * T, D), dt)                        # (B·T, D)
        dqkv = scratch(self, "dqkv", (B * T, 3 * D), dt)                # (B·T, 3D) [dq | dk | dv]
        dA = scratch(self, "dA", self.A.shape, dt)                      # (B, h, T, T) dL/dα
        dS = scratch(self, "dS", self.A.shape, dt)                      # (B, h, T, T) dL/d(q_t·k_s)
        dx = np.empty((B * T, d), dt) if self.need_dx else None         # (B·T, d)
        dW = scratch(self, "dW", (3 * D, d), dt)                        # (3D, d) [dW_Q | dW_K | dW_V]
        db = scratch(self, "db", (3 * D,), dt)                          # (3D,)
        x2, W, qkv, A, Zc, Wo = self.x2, self.W, self.qkv, self.A, self.Zc, p["Wo"]

        def rows(ab):                                                   # samples a … b−1: dq, dk, dv, dx
            a, b = ab
            r, n = slice(a * T, b * T), b - a
            np.matmul(dy2[r], Wo, out=dZ[r])                            # (n·T, D)
            dz = dZ[r].reshape(n, T, h, dk).transpose(0, 2, 1, 3)       # (n, h, T, dk)
            q, k, v = qkv[r].reshape(n, T, 3, h, dk).transpose(2, 0, 3, 1, 4)
            dq, dk_, dv = dqkv[r].reshape(n, T, 3, h, dk).transpose(2, 0, 3, 1, 4)   # views into dqkv
            np.matmul(dz, v.transpose(0, 1, 3, 2), out=dA[a:b])         # (n, h, T, T)
            np.matmul(A[a:b].transpose(0, 1, 3, 2), dz, out=dv)         # (n, h, T, dk)
            masked_softmax_bwd(A[a:b], dA[a:b], self.scale, dS[a:b])
            np.matmul(dS[a:b], k, out=dq)                               # (n, h, T, dk)
            np.matmul(dS[a:b].transpose(0, 1, 3, 2), q, out=dk_)        # (n, h, T, dk)
            if dx is not None:
                np.matmul(dqkv[r], W, out=dx[r])                        # (n·T, d)

        def weights(i):                                                 # whole-batch GEMMs, split by output rows
            if i == 0:
                np.matmul(dy2.T, Zc, out=g["Wo"])                       # (d, D)
                np.sum(dy2, axis=0, out=g["bo"])
            else:
                c = slice((i - 1) * D, i * D)                           # W_Q, W_K or W_V
                np.matmul(dqkv[:, c].T, x2, out=dW[c])                  # (D, d)
                np.sum(dqkv[:, c], axis=0, out=db[c])

        parallel.run(rows, self._chunks(B, T, d, D))
        parallel.run(weights, range(4))
        for i, k in enumerate("qkv"):
            g[f"W{k}"][...] = dW[i * D:(i + 1) * D]
            g[f"b{k}"][...] = db[i * D:(i + 1) * D]
        if dx is None:
            return (None,)
        return (dx.reshape(B, T, d),)

    @classmethod
    def samples(cls):
        return [({"heads": 2}, [(4, 6)]),
                ({"heads": 2}, [(5, 4)], {"mask": True}),
                ({"heads": 3, "d_k": 2, "causal": True}, [(4, 5)]),
                ({"heads": 1, "causal": True}, [(5, 3)], {"mask": True})]
