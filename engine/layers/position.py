"""Position information for sequences (T, d): a fixed sinusoidal encoding or a learned embedding, added to x."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Fix, Layer, Param, fmt, register


def sinusoid(T, d):
    """PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(t / 10000^(2i/d)); (T, d) float64."""
    t = np.arange(T)[:, None]                                  # (T, 1)
    w = 10000.0 ** (-(np.arange(d) // 2 * 2) / d)              # (d,) frequency of each column
    a = t * w                                                  # (T, d)
    return np.where(np.arange(d) % 2 == 0, np.sin(a), np.cos(a))


class _Position(Layer):
    category = "attention"
    mixes_positions = False  # output step t reads input step t only: the receptive field goes on (engine/receptive.py)

    def compute_output_shape(self, in_shapes):
        self._expect_rank(in_shapes[0], (2,), "a sequence (steps, features)")
        return in_shapes[0]

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0]))                      # one add per value

    def backward(self, dy):
        return (dy,)

    def to_onnx(self, ctx, ins):
        return ctx.op("Add", [ins[0], ctx.const(f"{self.name}/positions", self.table())], self.name)


@register
class PositionalEncoding(_Position):
    fused = None          # runs on the per-layer path
    doc = ("Adds the fixed sinusoidal encoding: y_t = x_t + PE_t with PE[t, 2i] = sin(t/10000^(2i/d)), "
           "PE[t, 2i+1] = cos(t/10000^(2i/d)); no weights.")

    def formulas(self, in_shapes):
        T, d = in_shapes[0]
        return {**super().formulas(in_shapes), "params": "fixed sin/cos table, nothing trained = 0",
                "macs": f"T·d adds = {T}·{d} = {T * d}"}

    def forward(self, x, training=False):
        pe = getattr(self, "pe", None)
        if pe is None or pe.shape != x.shape[1:] or pe.dtype != x.dtype:
            self.pe = pe = sinusoid(*x.shape[1:]).astype(x.dtype)
        return x + pe

    def table(self):
        return sinusoid(*self.in_shapes[0])

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        T, d = self.in_shapes[0]
        return Emitted(f"PositionalEncoding({T}, {d})", helpers=("PositionalEncoding",),
                       sources={"PositionalEncoding": TORCH_SINUSOID})

    def torch_reference(self, xs, p, torch):
        T, d = xs[0].shape[1:]
        i = torch.arange(d, dtype=torch.float64)
        a = torch.arange(T, dtype=torch.float64)[:, None] / 10000 ** ((i - i % 2) / d)     # (T, d): t/10000^(2i/d)
        return xs[0] + torch.where(i % 2 == 0, torch.sin(a), torch.cos(a))

    @classmethod
    def samples(cls):
        return [({}, [(4, 6)]), ({}, [(3, 5)])]


@register
class PositionEmbedding(_Position):
    fused = None          # runs on the per-layer path
    doc = "Adds a learned vector per position: y_t = x_t + P_t, P of shape (max_len, d); T must be ≤ max_len."
    hparams = (HP("max_len", "int", 512, min=1, max=1 << 20, doc="Longest sequence it has positions for"),)

    def compute_output_shape(self, in_shapes):
        s = super().compute_output_shape(in_shapes)
        if s[0] > self.config["max_len"]:
            fix = Fix("set", f"set max_len to {s[0]}", config=(("max_len", s[0]),))
            raise ShapeError(f"{self.where} has positions for max_len = {self.config['max_len']} steps but the "
                             f"input {fmt(s)} has {s[0]}: {fix.text}", fix=fix)
        return s

    def params(self, in_shapes):
        return {"P": Param((self.config["max_len"], in_shapes[0][1]), "glorot_normal")}

    def formulas(self, in_shapes):
        T, d = in_shapes[0]
        L = self.config["max_len"]
        return {**super().formulas(in_shapes), "params": f"max_len·d = {L}·{d} = {L * d}",
                "macs": f"T·d adds = {T}·{d} = {T * d}"}

    def forward(self, x, training=False):
        self.T = x.shape[1]
        return x + self.p["P"][:self.T]

    def backward(self, dy):
        g = self.g["P"]
        g[...] = 0
        np.sum(dy, axis=0, out=g[:self.T])                    # (T, d)
        return (dy,) if self.need_dx else (None,)

    def table(self):
        return self.p["P"][:self.in_shapes[0][0]]

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        return Emitted(f"PositionEmbedding({self.config['max_len']}, {self.in_shapes[0][1]})", {"P": "weight"},
                       helpers=("PositionEmbedding",), sources={"PositionEmbedding": TORCH_LEARNED})

    def torch_reference(self, xs, p, torch):
        return xs[0] + p["P"][:xs[0].shape[1]]

    @classmethod
    def samples(cls):
        return [({"max_len": 6}, [(4, 3)]), ({"max_len": 3}, [(3, 2)])]


TORCH_SINUSOID = '''class PositionalEncoding(nn.Module):
    """y_t = x_t + PE_t, PE[t, 2i] = sin(t/10000^(2i/d)), PE[t, 2i+1] = cos(t/10000^(2i/d)); fixed, no weights."""

    def __init__(self, steps, d):
        super().__init__()
        t = torch.arange(steps, dtype=torch.float64)[:, None]                      # (T, 1)
        i = torch.arange(d)
        a = t * 10000.0 ** (-(i // 2 * 2) / d)                                     # (T, d)
        self.register_buffer("pe", torch.where(i % 2 == 0, torch.sin(a), torch.cos(a)).float(), persistent=False)

    def forward(self, x):
        return x + self.pe[: x.shape[1]]
'''

TORCH_LEARNED = '''class PositionEmbedding(nn.Module):
    """y_t = x_t + P_t with a learned P of shape (max_len, d)."""

    def __init__(self, max_len, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_len, d))

    def forward(self, x):
        return x + self.weight[: x.shape[1]]
'''
