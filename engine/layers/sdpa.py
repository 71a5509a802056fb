"""Scaled dot-product attention of three given sequences (no weights): softmax(scale·QKᵀ) V per head, with
grouped-query heads, a causal option and a softcap (ONNX's Attention operator, PyTorch's
F.scaled_dot_product_attention)."""
from math import sqrt

import numpy as np

from .. import parallel
from ..errors import ShapeError
from ..hparams import HP
from . import attention as att
from .attention import LazyTaps, _Later
from .attention_kernels import flash_attend, flash_attend_bwd
from .base import Layer, fmt, register
from .sdpa_kernels import sdpa_attend, sdpa_attend_bwd


def _c(x, dt):
    """x as a writable C-contiguous array of dtype dt (a copy only when needed)."""
    a = np.ascontiguousarray(x, dtype=dt)
    return a if a.flags.writeable else a.copy()


@register
class ScaledDotProductAttention(Layer):
    fused = None          # runs on the per-layer path
    reads_lengths = True
    category = "attention"
    n_inputs = 3
    doc = ("Attention of given queries, keys and values (no weights of its own): input 1 (T, h·d_k) the queries, "
           "input 2 (S, h_kv·d_k) the keys, input 3 (S, h_kv·d_v) the values; per head j, α_{t→s} = "
           "softmax_s(scale·q_t·k_s) (with a softcap c: softmax_s(c·tanh(scale·q_t·k_s/c))) and z_t = Σ_s α_{t→s} v_s, "
           "key/value head ⌊j·h_kv/h⌋ serving query head j; heads concatenated. Padded key (or value) steps are never "
           "attended to; padded query steps give zero output.")
    hparams = (
        HP("heads", "int", 1, min=1, max=1024, doc="Number of query heads h: the queries' width is h·d_k"),
        HP("kv_heads", "int", 0, min=0, max=1024, doc="Number of key/value heads h_kv (grouped-query attention, h "
                                                      "a multiple of h_kv); 0 = heads"),
        HP("causal", "bool", False, doc="Query step t attends only to key steps s ≤ t"),
        HP("scale", "float", 0.0, min=0.0, max=1e6, doc="Factor on q·k; 0 = 1/√d_k"),
        HP("softcap", "float", 0.0, min=0.0, max=1e6, doc="c: scores become c·tanh(scale·q·k/c); 0 = off"),
    )
    taps_doc = {"attention": "(B, heads, T, S) attention weights α_{t→s} (query step t of input 1, key step s of "
                             "input 2): valid rows sum to 1, padded key columns and padded query rows are 0; "
                             "after a forward in key blocks (beyond 128 steps) computed when first read"}

    def _heads(self):
        h = self.config["heads"]
        return h, self.config["kv_heads"] or h

    def _dims(self, in_shapes):
        """(T, S, d_k, d_v) of the inputs (checked by compute_output_shape)."""
        (T, dq), (S, _), (_, dvs) = in_shapes
        h, hkv = self._heads()
        return T, S, dq // h, dvs // hkv

    def _scale(self, dk):
        return self.config["scale"] or 1.0 / sqrt(dk)

    def compute_output_shape(self, in_shapes):
        q, k, v = in_shapes
        for i, s, what in ((1, q, "queries"), (2, k, "keys"), (3, v, "values")):
            self._expect_rank(s, (2,), f"a sequence (steps, features) of {what} at input {i}")
        h, hkv = self._heads()
        if h % hkv:
            raise ShapeError(f"{self.where}: heads = {h} is not a multiple of kv_heads = {hkv} (each key/value head "
                             f"serves heads/kv_heads query heads): set kv_heads to a divisor of {h}")
        if q[1] % h:
            raise ShapeError(f"{self.where}: the queries' width {q[1]} (input 1 {fmt(q)}) is not divisible by heads "
                             f"= {h}, so d_k is not whole")
        dk = q[1] // h
        if k[1] != hkv * dk:
            raise ShapeError(f"{self.where}: the keys' width {k[1]} (input 2 {fmt(k)}) must be kv_heads·d_k = "
                             f"{hkv}·{dk} = {hkv * dk}, d_k = {q[1]}/{h} from the queries")
        if k[0] != v[0]:
            raise ShapeError(f"{self.where}: keys (input 2 {fmt(k)}) and values (input 3 {fmt(v)}) need the same "
                             f"number of steps, got {k[0]} and {v[0]}")
        if v[1] % hkv:
            raise ShapeError(f"{self.where}: the values' width {v[1]} (input 3 {fmt(v)}) is not divisible by "
                             f"kv_heads = {hkv}, so d_v is not whole")
        return (q[0], h * (v[1] // hkv))

    def compute_mask(self, in_masks):
        """The queries' mask: output step t is valid where query step t is."""
        return in_masks[0] if in_masks else None

    def macs(self, in_shapes):
        T, S, dk, dv = self._dims(in_shapes)
        return self.config["heads"] * T * S * (dk + dv)

    def work(self, in_shapes):
        """Per sample: the attention maps h·T·S."""
        T, S, _, _ = self._dims(in_shapes)
        return self.config["heads"] * T * S

    def formulas(self, in_shapes):
        T, S, dk, dv = self._dims(in_shapes)
        h, hkv = self._heads()
        return {"shape": (f"(T, h·d_k), (S, h_kv·d_k), (S, h_kv·d_v) → (T, h·d_v) = ({T}, {h}·{dv}) = "
                          f"{fmt(self.compute_output_shape(in_shapes))}"),
                "params": "no trainable parameters = 0",
                "macs": (f"h·T·S·(d_k + d_v) = {h}·{T}·{S}·({dk} + {dv}) = {self.macs(in_shapes):,}"
                         + (f" (h_kv = {hkv} key/value heads)" if hkv != h else ""))}

    # ---- compute ----
    def forward(self, q, k, v, training=False):
        B, T, _ = q.shape
        S = k.shape[1]
        h, hkv = self._heads()
        dt = q.dtype
        q, k, v = _c(q, dt), _c(k, dt), _c(v, dt)                       # (B, T, h·d_k), (B, S, h_kv·d_k), (B, S, ·)
        dk, dv = q.shape[2] // h, v.shape[2] // hkv
        mq, mk, mv = (list(self.in_masks) + [None] * 3)[:3]
        qvalid = np.ones((B, T), np.bool_) if mq is None else np.ascontiguousarray(mq, dtype=np.bool_)   # (B, T)
        kvalid = np.ones((B, S), np.bool_)                              # (B, S): valid in keys and values
        for m in (mk, mv):
            if m is not None:
                kvalid &= np.asarray(m, dtype=np.bool_)
        scale, cap = dt.type(self._scale(dk)), dt.type(self.config["softcap"])
        causal = self.config["causal"]
        Z = np.empty((B, T, h * dv), dt)                                # (B, T, h·d_v)
        self.qkv, self.valid, self.scale_ = (q, k, v), (qvalid, kvalid), scale
        if not isinstance(self.taps, LazyTaps):
            self.taps = LazyTaps(self.taps)
        if max(T, S) > att.TILE_MAX_T and not cap and dk == dv:        # key blocks, O(T + S) memory
            kx, vx = self._grouped(k), self._grouped(v)                 # (B, S, h·d_k): a key/value head per head
            lse = np.empty((B, h, T), dt)                               # (B, h, T) log Σ_s exp(scale·q_t·k_s)

            def run(ab):                                                # samples a … b−1
                a, b = ab
                flash_attend(q[a:b], kx[a:b], vx[a:b], qvalid[a:b], kvalid[a:b], causal, scale, h, Z[a:b], lse[a:b])

            parallel.run(run, self._chunks(B, T, S))
            self.A, self.flash = None, (kx, vx, Z.copy(), lse)         # Z kept: the output may be changed later
            self.taps["attention"] = _Later(self.attention_maps)
            return Z
        A = np.empty((B, h, T, S), dt)                                  # fresh: the tap outlives this step

        def run(ab):                                                    # samples a … b−1
            a, b = ab
            sdpa_attend(q[a:b], k[a:b], v[a:b], qvalid[a:b], kvalid[a:b], causal, scale, cap, h, hkv, A[a:b],
                        Z[a:b])

        parallel.run(run, self._chunks(B, T, S))
        self.A, self.flash = A, None
        self.taps["attention"] = A
        return Z

    def _grouped(self, x):
        """(B, S, h_kv·d) → (B, S, h·d): key/value head c repeated for its h/h_kv query heads (x itself when 1)."""
        h, hkv = self._heads()
        B, S, D = x.shape
        if h == hkv:
            return x
        return np.repeat(x.reshape(B, S, hkv, D // hkv), h // hkv, axis=2).reshape(B, S, h * (D // hkv))

    def _chunks(self, B, T, S):
        """Batch runs for engine.parallel of about 64k attention weights each."""
        return parallel.chunks(B, self.config["heads"] * T * S, target=1 << 16) if B else []

    def attention_maps(self, samples=None):
        """(n, heads, T, S) attention weights of the given samples of the last forward (all when None); after a
        forward in key blocks, computed for those samples only."""
        q, k, v = self.qkv
        idx = np.arange(len(q)) if samples is None else np.arange(len(q))[np.atleast_1d(np.asarray(samples, np.int64))]
        if self.A is not None:
            return self.A if samples is None else self.A[idx]
        (qvalid, kvalid), (h, hkv) = self.valid, self._heads()
        A = np.empty((len(idx), h, q.shape[1], k.shape[1]), q.dtype)
        Z = np.empty((1, q.shape[1], h * (v.shape[2] // hkv)), q.dtype)  # (1, T, h·d_v), not kept
        for i, b in enumerate(idx):
            sdpa_attend(q[b:b + 1], k[b:b + 1], v[b:b + 1], qvalid[b:b + 1], kvalid[b:b + 1], self.config["causal"],
                        self.scale_, q.dtype.type(0), h, hkv, A[i:i + 1], Z)
        return A

    def attention_scores(self, samples=None):
        """(n, heads, T, S) scores z_ts = scale·q_t·k_s, or c·tanh(scale·q_t·k_s/c) with a softcap c (float64), of
        the given samples of the last forward (all when None); padded keys included (their α is 0); None before."""
        if getattr(self, "qkv", None) is None:
            return None
        q, k, _ = self.qkv
        h, hkv = self._heads()
        idx = np.arange(len(q)) if samples is None else np.arange(len(q))[np.atleast_1d(np.asarray(samples, np.int64))]
        n, T, S, dk = len(idx), q.shape[1], k.shape[1], q.shape[2] // h
        q = q[idx].astype(np.float64).reshape(n, T, h, dk).transpose(0, 2, 1, 3)                     # (n, h, T, d_k)
        k = np.repeat(k[idx].astype(np.float64).reshape(n, S, hkv, dk).transpose(0, 2, 1, 3), h // hkv, axis=1)
        z = self._scale(dk) * (q @ k.transpose(0, 1, 3, 2))              # (n, h, T, S); head j reads kv head j·h_kv/h
        c = float(self.config["softcap"])
        return c * np.tanh(z / c) if c else z

    def backward(self, dy):
        if not self.need_dx:                                            # no weights: nothing else to compute
            return None, None, None
        q, k, v = self.qkv
        B, T, _ = q.shape
        h, hkv = self._heads()
        dZ = _c(dy, q.dtype)                                            # (B, T, h·d_v)
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        if self.flash is not None:
            (qvalid, kvalid), (kx, vx, Z, lse) = self.valid, self.flash
            dkx, dvx = (np.empty_like(kx), np.empty_like(vx)) if h != hkv else (dk, dv)

            def run(ab):
                a, b = ab
                flash_attend_bwd(q[a:b], kx[a:b], vx[a:b], Z[a:b], dZ[a:b], lse[a:b], qvalid[a:b], kvalid[a:b],
                                 self.config["causal"], self.scale_, h, dq[a:b], dkx[a:b], dvx[a:b])

            parallel.run(run, self._chunks(B, T, k.shape[1]))
            if h != hkv:                                                # a key/value head sums its query heads'
                S, g = k.shape[1], h // hkv
                dk[...] = dkx.reshape(B, S, hkv, g, -1).sum(3).reshape(k.shape)     # (B, S, h_kv·d_k)
                dv[...] = dvx.reshape(B, S, hkv, g, -1).sum(3).reshape(v.shape)
            return dq, dk, dv
        cap = q.dtype.type(self.config["softcap"])

        def run(ab):
            a, b = ab
            sdpa_attend_bwd(q[a:b], k[a:b], v[a:b], self.A[a:b], dZ[a:b], self.scale_, cap, h, hkv, dq[a:b],
                            dk[a:b], dv[a:b])

        parallel.run(run, self._chunks(B, T, k.shape[1]))
        return dq, dk, dv

    @classmethod
    def samples(cls):
        return [({"heads": 2}, [(4, 6), (5, 6), (5, 4)]),
                ({"heads": 2, "causal": True}, [(4, 6), (4, 6), (4, 6)], {"masks": True}),
                ({"heads": 4, "kv_heads": 2}, [(3, 8), (5, 4), (5, 6)], {"masks": True}),
                ({"heads": 3, "kv_heads": 1, "causal": True, "softcap": 1.5}, [(5, 6), (4, 2), (4, 3)],
                 {"masks": True}),
                ({"heads": 1, "scale": 0.3, "softcap": 2.0}, [(1, 2), (4, 2), (4, 3)])]

    # ---- exporters ----
    def to_onnx(self, ctx, ins):
        """MatMul/Softmax form with grouped heads (B, h_kv, g, T, ·): A = softmax(scale·QKᵀ) (softcap: of
        c·tanh(scale·QKᵀ/c)) with padded keys (the key stream's lengths) and, if causal, s > t masked; Z = AV;
        padded query steps 0 (the query stream's lengths)."""
        n = self.name
        T, S, dk, dv = self._dims(self.in_shapes)
        h, hkv = self._heads()
        g = h // hkv
        qs, ks = (list(getattr(ctx, "in_streams", ())) + [None, None])[:2]

        def heads(x, steps, d, perm, what):                              # (B, steps, ·) → (B, h_kv, ·, …)
            shape = (0, steps, hkv, g, d) if what == "q" else (0, steps, hkv, 1, d)
            y = ctx.op("Reshape", [x, ctx.const(f"{n}/{what}_shape", shape, np.int64)], f"{n}/{what}_heads")
            return ctx.op("Transpose", [y], f"{n}/{what}", perm=perm)

        q = heads(ins[0], T, dk, [0, 2, 3, 1, 4], "q")                   # (B, h_kv, g, T, d_k)
        kt = heads(ins[1], S, dk, [0, 2, 3, 4, 1], "k")                  # (B, h_kv, 1, d_k, S)
        v = heads(ins[2], S, dv, [0, 2, 3, 1, 4], "v")                   # (B, h_kv, 1, S, d_v)
        s = ctx.op("MatMul", [q, kt], f"{n}/qk")                         # (B, h_kv, g, T, S)
        s = ctx.op("Mul", [s, ctx.const(f"{n}/scale", self._scale(dk))], f"{n}/scores")
        c = self.config["softcap"]
        if c:
            s = ctx.op("Div", [s, ctx.const(f"{n}/cap_in", c)], f"{n}/cap_div")
            s = ctx.op("Mul", [ctx.op("Tanh", [s], f"{n}/cap_tanh"), ctx.const(f"{n}/cap", c)], f"{n}/capped")
        neg = ctx.const(f"{n}/neg", -1e30)
        if self.config["causal"]:
            tri = ctx.const(f"{n}/causal", np.tril(np.ones((T, S), bool)), bool)                   # (T, S): s ≤ t
            s = ctx.op("Where", [tri, s, neg], f"{n}/causal_s")
        keys = ctx.op("Unsqueeze", [ctx.valid_steps(S, ks), ctx.const(f"{n}/axes123", [1, 2, 3], np.int64)],
                      f"{n}/keys")                                       # (B, 1, 1, 1, S)
        s = ctx.op("Where", [keys, s, neg], f"{n}/masked")
        a = ctx.op("Softmax", [s], f"{n}/attention", axis=-1)            # (B, h_kv, g, T, S)
        z = ctx.op("MatMul", [a, v], f"{n}/context")                     # (B, h_kv, g, T, d_v)
        z = ctx.op("Transpose", [z], f"{n}/context_t", perm=[0, 3, 1, 2, 4])
        z = ctx.op("Reshape", [z, ctx.const(f"{n}/concat_shape", (0, T, h * dv), np.int64)], f"{n}/concat")
        rows = ctx.op("Unsqueeze", [ctx.valid_steps(T, qs), ctx.const(f"{n}/axis2", [2], np.int64)], f"{n}/rows_b")
        return ctx.op("Mul", [z, ctx.op("Cast", [rows], f"{n}/rows", to=1)], n)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        h, hkv = self._heads()
        dk = self._dims(self.in_shapes)[2]
        return Emitted(f"ScaledDotProductAttention(heads={h}, kv_heads={hkv}, causal={self.config['causal']}, "
                       f"scale={self._scale(dk)!r}, softcap={self.config['softcap']!r})", {},
                       helpers=("ScaledDotProductAttention",), sources={"ScaledDotProductAttention": TORCH_SOURCE},
                       call="{self}({x0}, {x1}, {x2}, {mask}, {mask1})", uses_mask=True)

    def torch_reference(self, xs, p, torch):
        """The forward through torch.nn.functional.scaled_dot_product_attention (every step valid); with a
        softcap, its written-out form (torch's has none)."""
        h, hkv = self._heads()
        dk = self._dims(self.in_shapes)[2]
        return _torch_sdpa(torch, *xs, h, hkv, self.config["causal"], self._scale(dk), self.config["softcap"])


def _torch_sdpa(torch, q, k, v, h, hkv, causal, scale, softcap, key_mask=None):
    """(B, T, h·d_v) in torch ops; key_mask (B, S) bool of valid keys or None."""
    F = torch.nn.functional
    B, T, S = q.shape[0], q.shape[1], k.shape[1]
    q = q.reshape(B, T, h, -1).transpose(1, 2)                          # (B, h, T, d_k)
    k = k.reshape(B, S, hkv, -1).transpose(1, 2)                        # (B, h_kv, S, d_k)
    v = v.reshape(B, S, hkv, -1).transpose(1, 2)                        # (B, h_kv, S, d_v)
    allowed = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
    if causal:
        tri = torch.ones(T, S, dtype=torch.bool).tril()                 # (T, S)
        allowed = tri if allowed is None else allowed & tri
    if softcap:
        k, v = k.repeat_interleave(h // hkv, 1), v.repeat_interleave(h // hkv, 1)   # (B, h, S, ·)
        s = softcap * torch.tanh(q @ k.transpose(-1, -2) * (scale / softcap))       # (B, h, T, S)
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        z = torch.softmax(s, -1) @ v                                    # (B, h, T, d_v)
    else:
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale, enable_gqa=hkv < h)
    return z.transpose(1, 2).reshape(B, T, -1)                          # (B, T, h·d_v)


TORCH_SOURCE = '''class ScaledDotProductAttention(nn.Module):
    """α_{t→s} = softmax_s(scale·q_t·k_s) (softcap c: of c·tanh(scale·q_t·k_s/c)) over the valid key steps s
    (and s ≤ t if causal) per head, z_t = Σ_s α_{t→s} v_s, key/value head j // (heads/kv_heads) serving query
    head j; heads concatenated; padded query steps output 0."""

    def __init__(self, heads, kv_heads, causal, scale, softcap):
        super().__init__()
        self.heads, self.kv_heads, self.causal, self.scale, self.softcap = heads, kv_heads, causal, scale, softcap

    def forward(self, q, k, v, mask=None, key_mask=None):
        B, T, S, h, hkv = q.shape[0], q.shape[1], k.shape[1], self.heads, self.kv_heads
        q = q.reshape(B, T, h, -1).transpose(1, 2)                                    # (B, h, T, d_k)
        k = k.reshape(B, S, hkv, -1).transpose(1, 2).repeat_interleave(h // hkv, 1)   # (B, h, S, d_k)
        v = v.reshape(B, S, hkv, -1).transpose(1, 2).repeat_interleave(h // hkv, 1)  # (B, h, S, d_v)
        s = q @ k.transpose(-1, -2) * self.scale                                      # (B, h, T, S)
        if self.softcap:
            s = self.softcap * torch.tanh(s / self.softcap)
        if self.causal:
            s = s.masked_fill(~torch.ones(T, S, dtype=torch.bool, device=s.device).tril(), float("-inf"))
        if key_mask is not None:
            s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        z = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, -1)              # (B, T, h·d_v)
        return z if mask is None else z * mask[..., None]
'''
