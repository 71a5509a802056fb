"""Multi-head self-attention: A = softmax(QKᵀ/√d_k), Z = AV per head, heads concatenated, then W_O."""
from math import sqrt

import numpy as np
from .. import kernels as kn
from .. import parallel
from ..errors import ShapeError
from ..hparams import HP
from .attention_kernels import attend, flash_attend, flash_attend_bwd
from .attention_rows import rows_bwd, rows_fwd, stack_qkv
from .base import Fix, Layer, Param, fmt, register
from .conv_kernels import chunk_sum, scratch


TILE_MAX_T = 128          # up to this T a sample's (heads, T, T) weights are kept for the backward (faster there);
                          # longer sequences run in key blocks with a running softmax, O(T) memory


class _Later:
    """A tap computed on its first read (see LazyTaps)."""

    def __init__(self, fn):
        self.fn = fn


class LazyTaps(dict):
    """Layer taps whose _Later values are computed when read and then kept (until the next forward)."""

    def __getitem__(self, k):
        v = dict.__getitem__(self, k)
        if isinstance(v, _Later):
            v = v.fn()
            dict.__setitem__(self, k, v)
        return v

    def get(self, k, default=None):
        return self[k] if k in self else default

    def items(self):
        return [(k, self[k]) for k in self]

    def values(self):
        return [self[k] for k in self]


def _divisor_near(d, h):
    """The divisor of d closest to h (the smaller one on a tie)."""
    divs = [k for k in range(1, d + 1) if d % k == 0]
    return min(divs, key=lambda k: (abs(k - h), k))


def check_heads(layer, d, shape):
    """ShapeError (with a one-click fix) unless d_model = d splits into the layer's heads (or d_k is set)."""
    h = layer.config["heads"]
    if not layer.config["d_k"] and d % h:
        k = _divisor_near(d, h)
        fix = Fix("set", f"set heads to {k}", config=(("heads", k),))
        raise ShapeError(f"{layer.where}: d_model = {d} ({shape}) is not divisible by heads = {h}, so "
                         f"d_k = d_model/heads is not whole: {fix.text} (or set d_k)", fix=fix)


@register
class MultiHeadSelfAttention(Layer):
    fused = None          # runs on the per-layer path
    reads_lengths = True
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
                             "padded key columns and padded query rows are 0; computed when first read "
                             "(attention_maps(samples) computes only the samples asked for)"}

    def _dk(self, d):
        return self.config["d_k"] or d // self.config["heads"]

    def compute_output_shape(self, in_shapes):
        (s,) = in_shapes
        self._expect_rank(s, (2,), "a sequence (steps, d_model)")
        check_heads(self, s[1], f"input {fmt(s)}")
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

    def work(self, in_shapes):
        """Per sample: the attention maps h·T², q, k, v and the heads' outputs 4·T·h·d_k."""
        T, d = in_shapes[0]
        return self.config["heads"] * T * T + 4 * T * self.config["heads"] * self._dk(d)

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
        """Batch runs for engine.parallel of about 512 steps each (the rows of the projections' GEMMs, which lose
        speed below a few hundred rows; 256 measured no faster on workload e)."""
        return parallel.chunks(B, T, target=512) if B else []

    def forward(self, x, training=False, epilogue=None):
        """y (B, T, d); epilogue(r0, r1, y2) runs on rows r0 … r1−1 of y2 = y as (B·T, d) as soon as its chunk is
        done, on the same thread (fusion_sublayer.SublayerAddNorm: the residual LayerNorm while the rows are in cache)."""
        y, run, chunks = self.forward_parts(x, epilogue)
        parallel.run(run, chunks)
        return y

    def _plan(self, shape, dt, wdt, fresh):
        """(h, d_k, D, scale, W_QKV, b_QKV, qkv, Z, y or None when fresh, every step valid) for an input shape and
        dtypes: the sizes and kept buffers of forward_parts, made once per shape (fewer Python calls per step)."""
        key = (shape, dt, wdt, fresh, self.config["heads"], self.config["d_k"])
        plan = self.__dict__.setdefault("_plans", {})
        if key not in plan:
            B, T, d = shape
            h = self.config["heads"]
            dk = self._dk(d)
            D = h * dk
            plan.clear()
            plan[key] = (h, dk, D, dt.type(1.0 / sqrt(dk)), np.empty((3 * D, d), wdt), np.empty(3 * D, wdt),
                         np.empty((B * T, 3 * D), dt), np.empty((B * T, D), dt),   # (B·T, 3D) [q | k | v], (B·T, D)
                         None if fresh else np.empty((B * T, d), dt), np.ones((B, T), np.bool_))
        return plan[key]

    def forward_parts(self, x, epilogue=None, chunks=None):
        """(y, run, chunks): forward's set-up; run((a, b)) fills samples a … b−1 of y (fusion_block: several layers
        per chunk in one loop). chunks: sample runs (default _chunks), kept for backward."""
        B, T, d = x.shape
        p = self.p
        h, dk, D, scale, W, bias, qkv, Zc, y, every = self._plan(x.shape, x.dtype, p["Wq"].dtype, epilogue is None)
        stack_qkv(p["Wq"], p["Wk"], p["Wv"], p["bq"], p["bk"], p["bv"], W, bias)   # (3D, d), (3D,)
        x2 = np.ascontiguousarray(x).reshape(B * T, d)                  # (B·T, d)
        m = self.in_masks[0] if self.in_masks else None
        valid = every if m is None else np.ascontiguousarray(m, dtype=np.bool_)   # (B, T), read only
        masked = m is not None and not valid.all()
        tile = T <= TILE_MAX_T
        A = np.empty((B, h, T, T), x.dtype) if tile else None           # fresh: the tap outlives this step
        lse = None if tile else np.empty((B, h, T), x.dtype)            # (B, h, T) log Σ_s exp(scale·q_t·k_s)
        if y is None:
            y = np.empty((B * T, d), x.dtype)                           # (B·T, d) returned: fresh
        causal, Wo, bo = self.config["causal"], p["Wo"], p["bo"]

        def run(ab):                                                    # samples a … b−1
            a, b = ab
            if tile:                                                    # the whole chunk in one kernel call
                rows_fwd(x2, W, bias, qkv, valid, causal, scale, h, A, Zc, Wo, bo, y, masked, a, b)
                if epilogue is not None:
                    epilogue(a * T, b * T, y)
                return
            r = slice(a * T, b * T)                                     # long sequences: key blocks
            kn.dense_fwd(x2[r], W, bias, qkv[r])                        # (n·T, 3D) = x Wᵀ + b
            qn = qkv[r].reshape(b - a, T, 3 * D)                        # (n, T, 3D)
            flash_attend(qn[..., :D], qn[..., D:2 * D], qn[..., 2 * D:], valid[a:b], valid[a:b], causal, scale,
                         h, Zc[r].reshape(b - a, T, D), lse[a:b])       # Z (n, T, D), lse (n, h, T)
            kn.dense_fwd(Zc[r], Wo, bo, y[r])                           # (n·T, d)
            if masked:
                y[r] *= valid[a:b].reshape(-1, 1)                       # padded steps output 0
            if epilogue is not None:
                epilogue(a * T, b * T, y)

        self.chunks = self._chunks(B, T, d, D) if chunks is None else chunks
        self.x2, self.W, self.qkv, self.valid, self.masked, self.A, self.Zc = x2, W, qkv, valid, masked, A, Zc
        self.scale, self.lse = scale, lse
        if not isinstance(self.taps, LazyTaps):
            self.taps = LazyTaps(self.taps)
        self.taps["attention"] = A if tile else _Later(self.attention_maps)
        return y.reshape(B, T, d), run, self.chunks

    q = property(lambda self: self._heads(0), doc="(B, h, T, d_k) queries of the last forward (a view): the "
                 "attention view's q_t·k_s")
    k = property(lambda self: self._heads(1), doc="(B, h, T, d_k) keys of the last forward (a view)")
    v = property(lambda self: self._heads(2), doc="(B, h, T, d_k) values of the last forward (a view)")

    def _heads(self, i):
        B, T = self.valid.shape
        return self.qkv.reshape(B, T, 3, self.config["heads"], -1)[:, :, i].transpose(0, 2, 1, 3)

    def attention_maps(self, samples=None):
        """(n, heads, T, T) attention weights α_{t→s} of the given samples of the last forward (all when None)."""
        B, T = self.valid.shape
        idx = np.arange(B) if samples is None else np.arange(B)[np.atleast_1d(np.asarray(samples, np.int64))]
        if self.A is not None:
            return self.A[idx]
        h = self.config["heads"]
        qkv = self.qkv.reshape(B, T, -1)                                 # (B, T, 3D)
        A = np.empty((len(idx), h, T, T), qkv.dtype)
        Z = np.empty((1, T, qkv.shape[2] // 3), qkv.dtype)              # (1, T, D), not kept
        for i, b in enumerate(idx):
            attend(qkv[b:b + 1], self.valid[b:b + 1], self.config["causal"], self.scale, h, A[i:i + 1], Z)
        return A

    def backward(self, dy, prologue=None, add_to=None):
        """(dx,); prologue(i, r0, r1) first writes rows r0 … r1−1 of dy in chunk i's own loop (SublayerAddNorm:
        the residual LayerNorm's backward); add_to: an array of x's shape, C-contiguous, that dx is added to (and
        returned; it may be dy itself: each chunk reads its rows of dy before)."""
        size, run, finish = self.backward_parts(dy, prologue, add_to)
        return finish(chunk_sum(self, len(self.chunks), size, self.qkv.dtype, run))

    def backward_parts(self, dy, prologue=None, add_to=None):
        """(size, run, finish): backward's set-up; run(i, o) does forward's chunk i and writes its share of the
        weight gradients into o (size values); finish(Σ_i o) sets the gradients and returns (dx,)."""
        B, T, d = dy.shape
        h = self.config["heads"]
        dk = self._dk(d)
        D = h * dk
        p, g = self.p, self.g
        dt = self.qkv.dtype
        dy0 = dy2 = np.ascontiguousarray(dy, dtype=dt).reshape(B * T, d)     # (B·T, d)
        if self.masked:                                                 # padded steps pass nothing back
            dy2 = scratch(self, "dym", dy2.shape, dt) if prologue else dy2 * self.valid.reshape(B * T, 1)
        dZ = scratch(self, "dZ", (B * T, D), dt)                        # (B·T, D)
        dqkv = scratch(self, "dqkv", (B * T, 3 * D), dt)                # (B·T, 3D) [dq | dk | dv]
        dx = None if not self.need_dx else np.empty((B * T, d), dt) if add_to is None else add_to.reshape(B * T, d)
        chunks = self.chunks
        x2, W, qkv, A, Zc, Wo = self.x2, self.W, self.qkv, self.A, self.Zc, p["Wo"]

        flag = 0 if dx is None else 1 if add_to is None else 2
        dxa = dx if dx is not None else dZ[:0]
        remask = self.masked and prologue is not None

        def rows(i, o):                                                 # samples a … b−1: dq, dk, dv, dx and
            a, b = chunks[i]                                            # their share o of every weight gradient
            if prologue is not None:
                prologue(i, a * T, b * T)
            if A is not None:                                           # the rest in one kernel call
                rows_bwd(dy0, dy2, remask, self.valid, Wo, dZ, qkv, A, self.scale, h, dqkv, Zc, x2, W, dxa, flag, o,
                         a, b)
                return
            r, n = slice(a * T, b * T), b - a                           # long sequences: key blocks
            if remask:
                np.multiply(dy0[r], self.valid[a:b].reshape(-1, 1), out=dy2[r])
            kn.dense_dx(dy2[r], Wo, dZ[r], 1)                           # (n·T, D)
            qn, dn = qkv[r].reshape(n, T, 3 * D), dqkv[r].reshape(n, T, 3 * D)   # (n, T, 3D)
            flash_attend_bwd(qn[..., :D], qn[..., D:2 * D], qn[..., 2 * D:], Zc[r].reshape(n, T, D),
                             dZ[r].reshape(n, T, D), self.lse[a:b], self.valid[a:b], self.valid[a:b],
                             self.config["causal"], self.scale, h, dn[..., :D], dn[..., D:2 * D], dn[..., 2 * D:])
            kn.dense_dw(Zc[r], dy2[r], o[:d * D].reshape(d, D), o[d * D:d * D + d])          # (d, D), (d,)
            if dx is not None:                                          # after the last read of dy2's rows
                kn.dense_dx(dqkv[r], W, dx[r], flag)                    # (n·T, d)
            kn.dense_dw(x2[r], dqkv[r], o[d * D + d:-3 * D].reshape(3 * D, d), o[-3 * D:])   # (3D, d), (3D,)

        def finish(tot):                                                # [dW_O, db_O, dW_QKV, db_QKV]
            if tot is None:                                             # written already (fusion_block)
                return (None if dx is None else dx.reshape(B, T, d),)
            g["Wo"][...] = tot[:d * D].reshape(d, D)
            g["bo"][...] = tot[d * D:d * D + d]
            dW, db = tot[d * D + d:-3 * D].reshape(3 * D, d), tot[-3 * D:]
            for i, k in enumerate("qkv"):
                g[f"W{k}"][...] = dW[i * D:(i + 1) * D]
                g[f"b{k}"][...] = db[i * D:(i + 1) * D]
            return (None if dx is None else dx.reshape(B, T, d),)

        return d * D + d + 3 * D * d + 3 * D, rows, finish             # [dW_Q | dW_K | dW_V], [db_Q | db_K | db_V]

    def grads(self):
        """The gradient arrays in the order backward_parts lays out a chunk's share."""
        return [self.g[k] for k in ("Wo", "bo", "Wq", "Wk", "Wv", "bq", "bk", "bv")]

    # ---- exporters ----
    def to_onnx(self, ctx, ins):
        """MatMul/Softmax form: A = softmax(QKᵀ/√d_k) with padded (and future, if causal) keys masked, Z = AV, W_O."""
        n, p, (T, d) = self.name, self.p, self.in_shapes[0]
        h = self.config["heads"]
        dk = self._dk(d)
        heads = ctx.const(f"{n}/heads_shape", (0, T, h, dk), np.int64)

        def proj(k, perm):                                               # (B, T, d) → (B, h, T, d_k) or its ᵀ
            y = ctx.op("MatMul", [ins[0], ctx.const(f"{n}/W{k}_t", p[f"W{k}"].T)], f"{n}/{k}_matmul")
            y = ctx.op("Add", [y, ctx.const(f"{n}/b{k}", p[f"b{k}"])], f"{n}/{k}_flat")     # (B, T, h·d_k)
            y = ctx.op("Reshape", [y, heads], f"{n}/{k}_heads")                             # (B, T, h, d_k)
            return ctx.op("Transpose", [y], f"{n}/{k}", perm=perm)

        q = proj("q", [0, 2, 1, 3])                                      # (B, h, T, d_k)
        kt = proj("k", [0, 2, 3, 1])                                     # (B, h, d_k, T)
        v = proj("v", [0, 2, 1, 3])                                      # (B, h, T, d_k)
        s = ctx.op("MatMul", [q, kt], f"{n}/qk")                         # (B, h, T, T)
        s = ctx.op("Mul", [s, ctx.const(f"{n}/scale", 1 / np.sqrt(dk))], f"{n}/scores")
        valid = ctx.valid_steps(T)                                       # (B, T) bool
        keys = ctx.op("Unsqueeze", [valid, ctx.const(f"{n}/axes12", [1, 2], np.int64)], f"{n}/keys")   # (B, 1, 1, T)
        if self.config["causal"]:
            past = ctx.const(f"{n}/causal", np.tril(np.ones((T, T), bool)), np.bool_)       # (T, T): s ≤ t
            keys = ctx.op("And", [keys, past], f"{n}/allowed")                             # (B, 1, T, T)
        s = ctx.op("Where", [keys, s, ctx.const(f"{n}/neg", -1e30)], f"{n}/masked")
        a = ctx.op("Softmax", [s], f"{n}/attention", axis=-1)            # (B, h, T, T)
        z = ctx.op("MatMul", [a, v], f"{n}/context")                     # (B, h, T, d_k)
        z = ctx.op("Transpose", [z], f"{n}/context_t", perm=[0, 2, 1, 3])                  # (B, T, h, d_k)
        z = ctx.op("Reshape", [z, ctx.const(f"{n}/concat_shape", (0, T, h * dk), np.int64)], f"{n}/concat")
        y = ctx.op("MatMul", [z, ctx.const(f"{n}/Wo_t", p["Wo"].T)], f"{n}/o_matmul")
        y = ctx.op("Add", [y, ctx.const(f"{n}/bo", p["bo"])], f"{n}/out")                  # (B, T, d)
        rows = ctx.op("Cast", [ctx.op("Unsqueeze", [valid, ctx.const(f"{n}/axis2", [2], np.int64)], f"{n}/rows_b")],
                      f"{n}/rows", to=1)                                 # (B, T, 1) float: padded steps → 0
        return ctx.op("Mul", [y, rows], n)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        d, c = self.in_shapes[0][-1], self.config
        causal = ", causal=True" if c["causal"] else ""
        names = {f"W{n}": f"{n}.weight" for n in "qkv"} | {f"b{n}": f"{n}.bias" for n in "qkv"}
        return Emitted(f"MultiHeadSelfAttention({d}, heads={c['heads']}, d_k={self._dk(d)}{causal})",
                       names | {"Wo": "out.weight", "bo": "out.bias"}, helpers=("MultiHeadSelfAttention",),
                       sources={"MultiHeadSelfAttention": TORCH_MHSA}, call="{self}({x0}, {mask})", uses_mask=True)

    def torch_reference(self, xs, p, torch):
        """softmax(QKᵀ/√d_k)V per head, heads concatenated, then W_O (nn.MultiheadAttention in test_attention)."""
        F, x = torch.nn.functional, xs[0]
        B, T, d = x.shape
        h, dk = self.config["heads"], self._dk(d)
        q, k, v = (F.linear(x, p[f"W{n}"], p[f"b{n}"]).reshape(B, T, h, dk).transpose(1, 2) for n in "qkv")
        s = q @ k.transpose(-1, -2) / dk ** 0.5                          # (B, h, T, T)
        if self.config["causal"]:
            s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        return F.linear((torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, h * dk), p["Wo"], p["bo"])

    @classmethod
    def samples(cls):
        return [({"heads": 2}, [(4, 6)]),
                ({"heads": 2}, [(5, 4)], {"mask": True}),
                ({"heads": 3, "d_k": 2, "causal": True}, [(4, 5)]),
                ({"heads": 1, "causal": True}, [(5, 3)], {"mask": True})]


TORCH_MHSA = '''class MultiHeadSelfAttention(nn.Module):
    """α_{t→s} = softmax_s(q_t·k_s/√d_k) over the allowed keys (valid, and s ≤ t if causal), z_t = Σ_s α_{t→s} v_s
    per head, heads concatenated, then W_O; padded steps output 0."""

    def __init__(self, d_model, heads, d_k, causal=False):
        super().__init__()
        self.heads, self.d_k, self.causal = heads, d_k, causal
        self.q = nn.Linear(d_model, heads * d_k)
        self.k = nn.Linear(d_model, heads * d_k)
        self.v = nn.Linear(d_model, heads * d_k)
        self.out = nn.Linear(heads * d_k, d_model)

    def forward(self, x, mask=None):
        B, T, _ = x.shape
        q, k, v = (f(x).view(B, T, self.heads, self.d_k).transpose(1, 2) for f in (self.q, self.k, self.v))
        s = q @ k.transpose(-2, -1) / self.d_k ** 0.5                              # (B, h, T, T)
        allowed = torch.ones(T, T, dtype=torch.bool, device=x.device)
        if self.causal:
            allowed = allowed.tril()
        if mask is not None:
            allowed = allowed & mask[:, None, None, :] & mask[:, None, :, None]    # (B, 1, T, T)
        none = ~allowed.any(-1, keepdim=True)                                     # rows without a key: 0
        a = torch.softmax(s.masked_fill(~allowed, float("-inf")).masked_fill(none, 0.0), -1).masked_fill(none, 0.0)
        z = (a @ v).transpose(1, 2).reshape(B, T, -1)                             # (B, T, h·d_k)
        y = self.out(z)                                                           # (B, T, d_model)
        return y if mask is None else y * mask[..., None]
'''
