"""RotaryEmbedding (RoPE): each head's feature pairs of a sequence (T, F) rotated by the angle t·θ_i of step t."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register


def angles(T, r, base):
    """(T, r/2) float64: t·θ_i with θ_i = base^(−2i/r)."""
    return np.arange(T)[:, None] * base ** (-np.arange(0, r, 2) / r)


def tables(T, heads, d, r, interleaved, base):
    """(C, S, perm): y = x ⊙ C + x[:, perm] ⊙ S on a (T, heads·d) sequence, C and S (T, heads·d) float64.

    Pair i of a head is (i, i + r/2), or (2i, 2i + 1) when interleaved: y_a = x_a cos − x_b sin,
    y_b = x_b cos + x_a sin; features from r on pass unchanged (C = 1, S = 0); perm swaps each pair."""
    a = angles(T, r, base)                                             # (T, r/2)
    j = np.arange(d)
    first = (j % 2 == 0) if interleaved else (j < r // 2)             # the a of a pair (else its b)
    pair = np.where(interleaved, j // 2, j % (r // 2 if r else 1))    # i of each rotated feature
    partner = np.where(interleaved, j ^ 1, np.where(first, j + r // 2, j - r // 2))
    rot = j < r
    C = np.where(rot, np.cos(a[:, np.where(rot, pair, 0)]), 1.0)       # (T, d)
    S = np.where(rot, np.sin(a[:, np.where(rot, pair, 0)]) * np.where(first, -1.0, 1.0), 0.0)
    perm = np.where(rot, partner, j)
    heads_perm = (np.arange(heads)[:, None] * d + perm).ravel()        # (heads·d,)
    return np.tile(C, heads), np.tile(S, heads), heads_perm


@register
class RotaryEmbedding(Layer):
    category = "attention"
    mixes_positions = False  # output step t reads input step t only: the receptive field goes on (engine/receptive.py)
    doc = ("Rotary position embedding (RoPE) of a sequence (T, F) split into heads of d = F/heads features: the "
           "pairs (x_a, x_b) of the first rotary_dim features of each head become (x_a cos tθ_i − x_b sin tθ_i, "
           "x_b cos tθ_i + x_a sin tθ_i) at step t, θ_i = base^(−2i/rotary_dim); no weights.")
    hparams = (HP("heads", "int", 1, min=1, max=4096, doc="Heads F is split into (d = F/heads features each)"),
               HP("rotary_dim", "int", 0, min=0, max=1 << 16, doc="Features rotated per head (even; 0: all d)"),
               HP("interleaved", "bool", False, doc="Pairs (2i, 2i + 1) (else (i, i + rotary_dim/2), as GPT-NeoX)"),
               HP("base", "float", 10000.0, min=1.0, max=1e12, doc="θ_i = base^(−2i/rotary_dim)"))
    fused = None          # runs on the per-layer path
    TORCH = '''class RotaryEmbedding(nn.Module):
    """RoPE on (B, T, heads·d): per head, the first r features rotated in pairs by t·base^(-2i/r); no weights."""

    def __init__(self, heads, r, interleaved, base):
        super().__init__()
        self.heads, self.r, self.interleaved = heads, r, interleaved
        self.register_buffer("inv_freq", base ** (-torch.arange(0, r, 2, dtype=torch.float64) / r), persistent=False)

    def forward(self, x):
        B, T, F = x.shape
        x = x.reshape(B, T, self.heads, F // self.heads)                            # (B, T, H, d)
        a = torch.arange(T, dtype=torch.float64)[:, None] * self.inv_freq           # (T, r/2)
        cos, sin = a.cos()[:, None].to(x.dtype), a.sin()[:, None].to(x.dtype)      # (T, 1, r/2)
        rot, rest = x[..., :self.r], x[..., self.r:]
        if self.interleaved:
            x1, x2 = rot[..., 0::2], rot[..., 1::2]
            rot = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
        else:
            x1, x2 = rot.chunk(2, dim=-1)
            rot = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        return torch.cat((rot, rest), dim=-1).reshape(B, T, F)
'''

    def _dims(self, shape):
        """(heads, d, r) for an input (T, F), or a ShapeError naming what does not fit."""
        self._expect_rank(shape, (2,), "a sequence (steps, features)")
        h, F = self.config["heads"], shape[1]
        if F % h:
            raise ShapeError(f"{self.where} splits F = {F} features into heads = {h}, but {F} is not a multiple of "
                             f"{h}: set heads to a divisor of {F}")
        d = F // h
        r = self.config["rotary_dim"] or d
        if r > d or r % 2:
            raise ShapeError(f"{self.where} rotates rotary_dim = {r} features of each head of d = {F}/{h} = {d}: it "
                             f"must be even and at most {d} (0 rotates all {d})")
        return h, d, r

    def compute_output_shape(self, in_shapes):
        self._dims(in_shapes[0])
        return tuple(in_shapes[0])

    def macs(self, in_shapes):
        h, _, r = self._dims(in_shapes[0])
        return 2 * in_shapes[0][0] * h * r

    def formulas(self, in_shapes):
        T, F = in_shapes[0]
        h, d, r = self._dims(in_shapes[0])
        return {"shape": f"output shape = input shape (T, heads·d) = ({T}, {h}·{d}) = {fmt((T, F))}",
                "params": "cos/sin of t·base^(−2i/r) from the step index, nothing trained = 0",
                "macs": f"2·T·heads·rotary_dim = 2·{T}·{h}·{r} = {2 * T * h * r:,}"}

    def table(self, T, dtype=np.float64):
        """(C, S, perm) for T steps (see tables), C and S in dtype."""
        h, d, r = self._dims((T, self.in_shapes[0][1]))
        C, S, perm = tables(T, h, d, r, self.config["interleaved"], self.config["base"])
        return C.astype(dtype), S.astype(dtype), perm

    def forward(self, x, training=False):
        key = (x.shape[1], x.dtype)
        if getattr(self, "_key", None) != key:
            self._key, self._t = key, self.table(*key)
        C, S, perm = self._t
        return x * C + x[..., perm] * S                                   # (B, T, F)

    def backward(self, dy):
        if not self.need_dx:
            return (None,)
        C, S, perm = self._t
        return (dy * C + (dy * S)[..., perm],)                            # perm swaps pairs: its own inverse

    def to_onnx(self, ctx, ins):
        """x·C + Gather(x, perm)·S: the decomposed form (the RotaryEmbedding operator needs opset 23)."""
        C, S, perm = self.table(self.in_shapes[0][0])
        n = self.name
        swapped = ctx.op("Gather", [ins[0], ctx.const(f"{n}/perm", perm, np.int64)], f"{n}/pairs_swapped", axis=2)
        a = ctx.op("Mul", [ins[0], ctx.const(f"{n}/cos", C)], f"{n}/x_cos")
        b = ctx.op("Mul", [swapped, ctx.const(f"{n}/sin", S)], f"{n}/x_sin")
        return ctx.op("Add", [a, b], n)

    def to_torch(self):
        from ..torch_export import Emitted
        h, d, r = self._dims(self.in_shapes[0])
        return Emitted(f"RotaryEmbedding({h}, {r}, {self.config['interleaved']}, {self.config['base']!r})",
                       helpers=("RotaryEmbedding",), sources={"RotaryEmbedding": self.TORCH})

    def torch_reference(self, xs, p, torch):
        """The exported module itself (TORCH), run on xs."""
        h, d, r = self._dims(self.in_shapes[0])
        ns = {"torch": torch, "nn": torch.nn}
        exec(self.TORCH, ns)
        return ns["RotaryEmbedding"](h, r, self.config["interleaved"], self.config["base"])(xs[0])

    @classmethod
    def samples(cls):
        return [({}, [(4, 6)]), ({"heads": 2, "interleaved": True}, [(5, 8)]),
                ({"heads": 2, "rotary_dim": 2}, [(3, 8)]),
                ({"heads": 3, "rotary_dim": 2, "interleaved": True, "base": 100.0}, [(4, 12)]),
                ({"heads": 2}, [(5, 4)], {"mask": True})]
