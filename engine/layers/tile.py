"""Tile: repeats each sample `repeats[i]` times along its axis i (ONNX Tile, torch's Tensor.repeat)."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register

SOURCE = '''class Tile(nn.Module):
    """Repeats each sample along its axes (the batch axis once)."""

    def __init__(self, *repeats):
        super().__init__()
        self.repeats = repeats

    def forward(self, x):
        return x.repeat(1, *self.repeats)
'''


@register
class Tile(Layer):
    category = "reshape"
    doc = "Repeats each sample along its axes: (H, W) with repeats 2,3 → (2·H, 3·W), the whole sample side by side."
    hparams = (HP("repeats", "ints", (2,), min=1, max=1 << 16, doc="Copies along each axis of the sample, e.g. 1,2"),)
    fused = None          # runs on the per-layer path (copies)

    def compute_output_shape(self, in_shapes):
        s, r = tuple(in_shapes[0]), tuple(self.config["repeats"])
        if len(r) != len(s):
            raise ShapeError(f"{self.where} repeats {len(r)} axes but its input {fmt(s)} has {len(s)}")
        return tuple(n * k for n, k in zip(s, r))

    def formulas(self, in_shapes):
        s, r = tuple(in_shapes[0]), self.config["repeats"]
        out = self.compute_output_shape(in_shapes)
        return {"shape": ", ".join(f"{n}·{k}" for n, k in zip(s, r)) + f" → {fmt(out)}",
                "params": "no trainable parameters = 0", "macs": "no multiply-adds (copies) = 0"}

    def forward(self, x, training=False):
        return np.tile(x, (1,) + tuple(self.config["repeats"]))                      # (B, *out_shape)

    def backward(self, dy):
        r, s = self.config["repeats"], self.in_shapes[0]
        d = dy.reshape((len(dy),) + tuple(v for k, n in zip(r, s) for v in (k, n)))  # (B, r0, n0, r1, n1, …)
        return (np.ascontiguousarray(d.sum(axis=tuple(range(1, 2 * len(s), 2)))),)  # (B, n0, n1, …)

    def to_onnx(self, ctx, ins):
        reps = ctx.const(f"{self.name}/repeats", (1,) + tuple(self.config["repeats"]), np.int64)
        return ctx.op("Tile", [ins[0], reps], self.name)

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"Tile({', '.join(map(str, self.config['repeats']))})", helpers=("Tile",),
                       sources={"Tile": SOURCE})

    def torch_reference(self, xs, p, torch):
        return xs[0].repeat(1, *self.config["repeats"])

    @classmethod
    def samples(cls):
        return [({"repeats": (2,)}, [(3,)]), ({"repeats": (1, 3)}, [(3, 2)], {"mask": True}),
                ({"repeats": (2, 1, 3)}, [(2, 2, 3)])]
