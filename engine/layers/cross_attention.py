"""Multi-head cross-attention: queries from one sequence (the decoder), keys and values from another (the encoder)."""
from math import sqrt

import numpy as np

from .. import kernels as kn
from .. import parallel
from ..hparams import HP
from . import attention as att
from .attention import LazyTaps, _Later, check_heads
from .attention_kernels import cross_attend, cross_attend_bwd, flash_attend, flash_attend_bwd
from .base import Layer, Param, fmt, register
from .conv_kernels import chunk_sum, scratch


@register
class CrossAttention(Layer):
    fused = None          # runs on the per-layer path
    reads_lengths = True
    category = "attention"
    n_inputs = 2
    doc = ("Attention from one sequence to another: input 1 (T, d_model) gives the queries q_t = W_Q x_t, input 2 "
           "(S, d_enc), e.g. the encoder's output, the keys k_s = W_K e_s and values v_s = W_V e_s; "
           "α_{t→s} = softmax_s(q_t·k_s/√d_k); z_t = Σ_s α_{t→s} v_s per head; heads concatenated, then W_O. "
           "Padded source steps are never attended to; padded query steps give zero output.")
    hparams = (
        HP("heads", "int", 4, min=1, max=1024, doc="Number of heads h"),
        HP("d_k", "int", 0, min=0, max=1 << 16, doc="Width of each head; 0 = d_model / heads"),
    )
    taps_doc = {"attention": "(B, heads, T, S) cross-attention weights α_{t→s} (query step t of input 1, key step s "
                             "of input 2): valid rows sum to 1, padded key columns and padded query rows are 0; "
                             "above 128 steps computed when first read (attention_maps(samples) computes only the "
                             "samples asked for)"}

    def _dk(self, d):
        return self.config["d_k"] or d // self.config["heads"]

    def compute_output_shape(self, in_shapes):
        q, e = in_shapes
        self._expect_rank(q, (2,), "a sequence (steps, d_model) of queries at input 1")
        self._expect_rank(e, (2,), "a sequence (steps, features) of keys and values at input 2, e.g. the encoder's "
                                   "output")
        check_heads(self, q[1], f"input 1 {fmt(q)}")
        return q

    def compute_mask(self, in_masks):
        """The queries' mask: output step t is valid where query step t is."""
        return in_masks[0] if in_masks else None

    def params(self, in_shapes):
        d, de = in_shapes[0][1], in_shapes[1][1]
        D = self.config["heads"] * self._dk(d)
        return {"Wq": Param((D, d), "glorot_uniform", decay=True), "bq": Param((D,), "zeros"),      # (h·d_k, d_model)
                "Wk": Param((D, de), "glorot_uniform", decay=True), "bk": Param((D,), "zeros"),     # (h·d_k, d_enc)
                "Wv": Param((D, de), "glorot_uniform", decay=True), "bv": Param((D,), "zeros"),
                "Wo": Param((d, D), "glorot_uniform", decay=True), "bo": Param((d,), "zeros")}      # (d_model, h·d_k)

    def macs(self, in_shapes):
        (T, d), (S, de) = in_shapes
        D = self.config["heads"] * self._dk(d)
        return 2 * T * d * D + 2 * S * de * D + 2 * T * S * D

    def work(self, in_shapes):
        """Per sample: the attention maps h·T·S, q, the heads' outputs 2·T·h·d_k, k and v 2·S·h·d_k."""
        (T, d), (S, _) = in_shapes
        h = self.config["heads"]
        return h * T * S + 2 * (T + S) * h * self._dk(d)

    def formulas(self, in_shapes):
        (T, d), (S, de) = in_shapes
        h, dk = self.config["heads"], self._dk(d)
        D = h * dk
        return {"shape": f"(T, d_model), (S, d_enc) → (T, d_model) = {fmt((T, d))}",
                "params": (f"2·d_model·h·d_k + 2·d_enc·h·d_k + 3·h·d_k + d_model = 2·{d}·{D} + 2·{de}·{D} + 3·{D} + {d}"
                           f" = {2 * d * D + 2 * de * D + 3 * D + d:,}"),
                "macs": (f"2·T·d_model·h·d_k + 2·S·d_enc·h·d_k + 2·T·S·h·d_k = 2·{T}·{d}·{D} + 2·{S}·{de}·{D} + "
                         f"2·{T}·{S}·{D} = {self.macs(in_shapes):,}")}

    # ---- compute ----
    def forward(self, x, e, training=False):
        B, T, d = x.shape
        S, de = e.shape[1:]
        h = self.config["heads"]
        D = h * self._dk(d)
        p = self.p
        Wkv = np.concatenate([p["Wk"], p["Wv"]])                        # (2D, d_enc)
        bkv = np.concatenate([p["bk"], p["bv"]])                        # (2D,)
        x2 = np.ascontiguousarray(x).reshape(B * T, d)                  # (B·T, d)
        e2 = np.ascontiguousarray(e, dtype=x.dtype).reshape(B * S, de)  # (B·S, d_enc)
        q = scratch(self, "q", (B * T, D), x.dtype)                     # (B·T, D)
        kv = scratch(self, "kv", (B * S, 2 * D), x.dtype)               # (B·S, 2D) [k | v]
        mq, me = (list(self.in_masks) + [None, None])[:2]
        qvalid = np.ones((B, T), np.bool_) if mq is None else np.ascontiguousarray(mq, dtype=np.bool_)   # (B, T)
        kvalid = np.ones((B, S), np.bool_) if me is None else np.ascontiguousarray(me, dtype=np.bool_)   # (B, S)
        masked = not qvalid.all()
        tile = max(T, S) <= att.TILE_MAX_T                              # else key blocks, O(T + S) memory
        A = np.empty((B, h, T, S), x.dtype) if tile else None           # fresh: the tap outlives this step
        lse = None if tile else np.empty((B, h, T), x.dtype)            # (B, h, T) log Σ_s exp(scale·q_t·k_s)
        Zc = scratch(self, "Zc", (B * T, D), x.dtype)                   # (B·T, D) heads concatenated
        y = np.empty((B * T, d), x.dtype)                               # (B·T, d)
        scale = x.dtype.type(1.0 / sqrt(self._dk(d)))

        def run(ab):                                                    # samples a … b−1
            a, b = ab
            r, s = slice(a * T, b * T), slice(a * S, b * S)
            kn.dense_fwd(x2[r], p["Wq"], p["bq"], q[r])                 # (n·T, D)
            kn.dense_fwd(e2[s], Wkv, bkv, kv[s])                        # (n·S, 2D)
            qn, kvn = q[r].reshape(b - a, T, D), kv[s].reshape(b - a, S, 2 * D)       # (n, T, D), (n, S, 2D)
            if tile:
                cross_attend(qn, kvn, qvalid[a:b], kvalid[a:b], scale, h, A[a:b],
                             Zc[r].reshape(b - a, T, D))                # A (n, h, T, S), Z (n, T, D)
            else:
                flash_attend(qn, kvn[..., :D], kvn[..., D:], qvalid[a:b], kvalid[a:b], False, scale, h,
                             Zc[r].reshape(b - a, T, D), lse[a:b])      # Z (n, T, D), lse (n, h, T)
            kn.dense_fwd(Zc[r], p["Wo"], p["bo"], y[r])                 # (n·T, d)
            if masked:
                y[r] *= qvalid[a:b].reshape(-1, 1)                      # padded query steps output 0

        parallel.run(run, self._chunks(B, T + S))
        self.x2, self.e2, self.Wkv, self.qvalid, self.masked, self.A, self.scale = x2, e2, Wkv, qvalid, masked, A, scale
        self.kvalid, self.lse = kvalid, lse
        if not isinstance(self.taps, LazyTaps):
            self.taps = LazyTaps(self.taps)
        self.taps["attention"] = A if tile else _Later(self.attention_maps)
        return y.reshape(B, T, d)

    def _chunks(self, B, steps):
        """Batch runs for engine.parallel of about 512 steps each (as MultiHeadSelfAttention)."""
        return parallel.chunks(B, steps, target=512) if B else []

    def attention_maps(self, samples=None):
        """(n, heads, T, S) attention weights of the given samples of the last forward (all when None)."""
        B = self.qvalid.shape[0]
        idx = np.arange(B) if samples is None else np.arange(B)[np.atleast_1d(np.asarray(samples, np.int64))]
        if self.A is not None:
            return self.A if samples is None else self.A[idx]
        T, S, h = self.qvalid.shape[1], self.kvalid.shape[1], self.config["heads"]
        q, kv = self._bufs["q"].reshape(B, T, -1), self._bufs["kv"].reshape(B, S, -1)   # (B, T, D), (B, S, 2D)
        A = np.empty((len(idx), h, T, S), q.dtype)
        Z = np.empty((1, T, q.shape[2]), q.dtype)                       # (1, T, D), not kept
        for i, b in enumerate(idx):
            cross_attend(q[b:b + 1], kv[b:b + 1], self.qvalid[b:b + 1], self.kvalid[b:b + 1], self.scale, h,
                         A[i:i + 1], Z)
        return A

    def attention_scores(self, samples=None):
        """(n, heads, T, S) scores z_ts = q_t·k_s/√d_k (float64) of the given samples of the last forward (all
        when None), from the layer's own q and k; padded keys included (their α is 0)."""
        B, T = self.qvalid.shape
        S, h = self.kvalid.shape[1], self.config["heads"]
        idx = np.arange(B) if samples is None else np.arange(B)[np.atleast_1d(np.asarray(samples, np.int64))]
        D = self._bufs["q"].shape[1]
        q = self._bufs["q"].reshape(B, T, h, D // h)[idx].transpose(0, 2, 1, 3)             # (n, h, T, d_k)
        k = self._bufs["kv"].reshape(B, S, 2, h, D // h)[idx, :, 0].transpose(0, 2, 1, 3)  # (n, h, S, d_k)
        q, k = q.astype(np.float64), k.astype(np.float64)
        return float(self.scale) * (q @ k.transpose(0, 1, 3, 2))                           # (n, h, T, S)

    def backward(self, dy):
        B, T, d = dy.shape
        S, de = self.e2.shape[0] // B, self.e2.shape[1]
        h = self.config["heads"]
        D = h * self._dk(d)
        p, g = self.p, self.g
        dt = self.x2.dtype
        dy2 = np.ascontiguousarray(dy, dtype=dt).reshape(B * T, d)     # (B·T, d)
        if self.masked:
            dy2 = dy2 * self.qvalid.reshape(B * T, 1)                   # padded steps pass nothing back
        dZ = scratch(self, "dZ", (B * T, D), dt)                        # (B·T, D)
        dq = scratch(self, "dq", (B * T, D), dt)                        # (B·T, D)
        dkv = scratch(self, "dkv", (B * S, 2 * D), dt)                  # (B·S, 2D) [dk | dv]
        dx = np.empty((B * T, d), dt) if self.need_dx else None         # (B·T, d)
        de2 = np.empty((B * S, de), dt) if self.need_dx else None       # (B·S, d_enc)
        chunks = self._chunks(B, T + S)
        x2, e2, q, kv, A, Zc = self.x2, self.e2, self._bufs["q"], self._bufs["kv"], self.A, self._bufs["Zc"]
        nq, nkv = d * D + d + D * d + D, 2 * D * de + 2 * D            # [dW_O, db_O, dW_Q, db_Q], [dW_KV, db_KV]

        def rows(i, o):                                                 # samples a … b−1: their share o of
            a, b = chunks[i]                                            # every weight gradient
            r, s, n = slice(a * T, b * T), slice(a * S, b * S), b - a
            kn.dense_dx(dy2[r], p["Wo"], dZ[r], 1)                      # (n·T, D)
            qn, kvn, dkvn = q[r].reshape(n, T, D), kv[s].reshape(n, S, 2 * D), dkv[s].reshape(n, S, 2 * D)
            if A is not None:
                cross_attend_bwd(qn, kvn, A[a:b], dZ[r].reshape(n, T, D), self.scale, h, dq[r].reshape(n, T, D),
                                 dkvn)                                  # (n, T, D), (n, S, 2D)
            else:
                flash_attend_bwd(qn, kvn[..., :D], kvn[..., D:], Zc[r].reshape(n, T, D), dZ[r].reshape(n, T, D),
                                 self.lse[a:b], self.qvalid[a:b], self.kvalid[a:b], False, self.scale, h,
                                 dq[r].reshape(n, T, D), dkvn[..., :D], dkvn[..., D:])
            if dx is not None:
                kn.dense_dx(dq[r], p["Wq"], dx[r], 1)                   # (n·T, d)
                kn.dense_dx(dkv[s], self.Wkv, de2[s], 1)                # (n·S, d_enc)
            kn.dense_dw(Zc[r], dy2[r], o[:d * D].reshape(d, D), o[d * D:d * D + d])                  # (d, D), (d,)
            kn.dense_dw(x2[r], dq[r], o[d * D + d:nq - D].reshape(D, d), o[nq - D:nq])                # (D, d), (D,)
            kn.dense_dw(e2[s], dkv[s], o[nq:nq + 2 * D * de].reshape(2 * D, de), o[nq + 2 * D * de:])  # (2D, d_enc)

        tot = chunk_sum(self, len(chunks), nq + nkv, dt, rows)
        g["Wo"][...] = tot[:d * D].reshape(d, D)
        g["bo"][...] = tot[d * D:d * D + d]
        g["Wq"][...] = tot[d * D + d:nq - D].reshape(D, d)
        g["bq"][...] = tot[nq - D:nq]
        dW, db = tot[nq:nq + 2 * D * de].reshape(2 * D, de), tot[nq + 2 * D * de:]
        g["Wk"][...], g["Wv"][...] = dW[:D], dW[D:]
        g["bk"][...], g["bv"][...] = db[:D], db[D:]
        if dx is None:
            return None, None
        return dx.reshape(B, T, d), de2.reshape(B, S, de)

    @classmethod
    def samples(cls):
        return [({"heads": 2}, [(4, 6), (5, 4)]),
                ({"heads": 2}, [(3, 4), (5, 6)], {"masks": True}),
                ({"heads": 3, "d_k": 2}, [(5, 3), (2, 5)], {"masks": True}),
                ({"heads": 1}, [(1, 2), (4, 3)])]

    # ---- exporters ----
    def to_onnx(self, ctx, ins):
        """MatMul/Softmax form: A = softmax(QKᵀ/√d_k) with padded keys masked (the key stream's lengths), Z = AV,
        W_O, padded query steps 0 (the query stream's lengths)."""
        n, p, (T, d), (S, _) = self.name, self.p, self.in_shapes[0], self.in_shapes[1]
        h, dk = self.config["heads"], self._dk(d)
        qs, ks = (list(getattr(ctx, "in_streams", ())) + [None, None])[:2]

        def proj(k, x, steps, perm):                                     # (B, steps, ·) → (B, h, steps, d_k) or ᵀ
            y = ctx.op("MatMul", [x, ctx.const(f"{n}/W{k}_t", p[f"W{k}"].T)], f"{n}/{k}_matmul")
            y = ctx.op("Add", [y, ctx.const(f"{n}/b{k}", p[f"b{k}"])], f"{n}/{k}_flat")     # (B, steps, h·d_k)
            y = ctx.op("Reshape", [y, ctx.const(f"{n}/{k}_shape", (0, steps, h, dk), np.int64)], f"{n}/{k}_heads")
            return ctx.op("Transpose", [y], f"{n}/{k}", perm=perm)

        q = proj("q", ins[0], T, [0, 2, 1, 3])                           # (B, h, T, d_k)
        kt = proj("k", ins[1], S, [0, 2, 3, 1])                          # (B, h, d_k, S)
        v = proj("v", ins[1], S, [0, 2, 1, 3])                           # (B, h, S, d_k)
        s = ctx.op("MatMul", [q, kt], f"{n}/qk")                         # (B, h, T, S)
        s = ctx.op("Mul", [s, ctx.const(f"{n}/scale", 1 / np.sqrt(dk))], f"{n}/scores")
        keys = ctx.op("Unsqueeze", [ctx.valid_steps(S, ks), ctx.const(f"{n}/axes12", [1, 2], np.int64)],
                      f"{n}/keys")                                       # (B, 1, 1, S)
        s = ctx.op("Where", [keys, s, ctx.const(f"{n}/neg", -1e30)], f"{n}/masked")
        a = ctx.op("Softmax", [s], f"{n}/attention", axis=-1)            # (B, h, T, S)
        z = ctx.op("MatMul", [a, v], f"{n}/context")                     # (B, h, T, d_k)
        z = ctx.op("Transpose", [z], f"{n}/context_t", perm=[0, 2, 1, 3])
        z = ctx.op("Reshape", [z, ctx.const(f"{n}/concat_shape", (0, T, h * dk), np.int64)], f"{n}/concat")
        y = ctx.op("MatMul", [z, ctx.const(f"{n}/Wo_t", p["Wo"].T)], f"{n}/o_matmul")
        y = ctx.op("Add", [y, ctx.const(f"{n}/bo", p["bo"])], f"{n}/out")   # (B, T, d)
        rows = ctx.op("Unsqueeze", [ctx.valid_steps(T, qs), ctx.const(f"{n}/axis2", [2], np.int64)], f"{n}/rows_b")
        return ctx.op("Mul", [y, ctx.op("Cast", [rows], f"{n}/rows", to=1)], n)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        d, de = self.in_shapes[0][1], self.in_shapes[1][1]
        names = {f"W{k}": f"{k}.weight" for k in "qkvo"} | {f"b{k}": f"{k}.bias" for k in "qkvo"}
        return Emitted(f"CrossAttention({d}, {de}, heads={self.config['heads']}, d_k={self._dk(d)})", names,
                       helpers=("CrossAttention",), sources={"CrossAttention": TORCH_SOURCE},
                       call="{self}({x0}, {x1}, {mask}, {mask1})", uses_mask=True)

    def torch_reference(self, xs, p, torch):
        """The forward in torch ops (every step valid)."""
        x, e = xs
        B, T, d = x.shape
        S, h, dk = e.shape[1], self.config["heads"], self._dk(d)
        F = torch.nn.functional
        q = F.linear(x, p["Wq"], p["bq"]).reshape(B, T, h, dk).transpose(1, 2)          # (B, h, T, d_k)
        k = F.linear(e, p["Wk"], p["bk"]).reshape(B, S, h, dk).transpose(1, 2)          # (B, h, S, d_k)
        v = F.linear(e, p["Wv"], p["bv"]).reshape(B, S, h, dk).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / dk ** 0.5, -1)                      # (B, h, T, S)
        return F.linear((a @ v).transpose(1, 2).reshape(B, T, h * dk), p["Wo"], p["bo"])


TORCH_SOURCE = '''class CrossAttention(nn.Module):
    """α_{t→s} = softmax_s(q_t·k_s/√d_k) over the valid source steps s, q from x (the decoder), k and v from e
    (the encoder); z_t = Σ_s α_{t→s} v_s per head, heads concatenated, then W_O; padded query steps output 0."""

    def __init__(self, d_model, d_enc, heads, d_k):
        super().__init__()
        self.heads, self.d_k = heads, d_k
        self.q = nn.Linear(d_model, heads * d_k)
        self.k = nn.Linear(d_enc, heads * d_k)
        self.v = nn.Linear(d_enc, heads * d_k)
        self.o = nn.Linear(heads * d_k, d_model)

    def forward(self, x, e, mask=None, source_mask=None):
        B, T, _ = x.shape
        S = e.shape[1]
        q = self.q(x).view(B, T, self.heads, self.d_k).transpose(1, 2)                # (B, h, T, d_k)
        k = self.k(e).view(B, S, self.heads, self.d_k).transpose(1, 2)                # (B, h, S, d_k)
        v = self.v(e).view(B, S, self.heads, self.d_k).transpose(1, 2)
        s = q @ k.transpose(-2, -1) / self.d_k ** 0.5                                 # (B, h, T, S)
        if source_mask is not None:
            s = s.masked_fill(~source_mask[:, None, None, :], float("-inf"))
        z = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, -1)              # (B, T, h·d_k)
        y = self.o(z)                                                                 # (B, T, d_model)
        return y if mask is None else y * mask[..., None]
'''
