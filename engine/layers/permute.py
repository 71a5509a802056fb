"""Permute: reorders the axes of each sample, e.g. (C, H, W) → (H, W, C) with axes 1, 2, 0."""
import numpy as np

from ..errors import ConfigError, ShapeError
from ..hparams import HP
from .base import Layer, fmt, register

SOURCE = '''class Permute(nn.Module):
    """Reorders the axes (the batch axis stays first)."""

    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)
'''


@register
class Permute(Layer):
    category = "reshape"
    doc = "Reorders the axes of each sample: output axis i is input axis axes[i] (the batch axis stays first)."
    hparams = (HP("axes", "ints", (1, 0), min=0, max=31, doc="The new order of the sample's axes, e.g. 1,0 or 1,2,0"),)
    fused = None

    def compute_output_shape(self, in_shapes):
        s, axes = tuple(in_shapes[0]), tuple(self.config["axes"])
        if sorted(axes) != list(range(len(axes))):
            raise ConfigError(f"{self.where}: axes {fmt(axes)} must hold each of 0 … {len(axes) - 1} once")
        if len(axes) != len(s):
            raise ShapeError(f"{self.where} reorders {len(axes)} axes but its input {fmt(s)} has {len(s)}")
        return tuple(s[a] for a in axes)

    def formulas(self, in_shapes):
        s, out = tuple(in_shapes[0]), self.compute_output_shape(in_shapes)
        return {"shape": f"{fmt(s)} with axes {fmt(self.config['axes'])} → {fmt(out)}",
                "params": "no trainable parameters = 0", "macs": "no multiply-adds (copies) = 0"}

    def compute_mask(self, in_masks):
        """A sequence keeps its mask while its step axis stays first."""
        return super().compute_mask(in_masks) if self.config["axes"][0] == 0 else None

    def _perm(self):
        return (0,) + tuple(a + 1 for a in self.config["axes"])

    def forward(self, x, training=False):
        return np.ascontiguousarray(x.transpose(self._perm()))                    # (B, *out_shape)

    def backward(self, dy):
        return (np.ascontiguousarray(dy.transpose(np.argsort(self._perm()))),)    # (B, *in_shape)

    def to_onnx(self, ctx, ins):
        return ctx.op("Transpose", [ins[0]], self.name, perm=list(self._perm()))

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"Permute({', '.join(map(str, self._perm()))})", helpers=("Permute",), sources={"Permute": SOURCE})

    def torch_reference(self, xs, p, torch):
        return xs[0].permute(*self._perm())

    @classmethod
    def samples(cls):
        return [({}, [(3, 4)]), ({"axes": (1, 2, 0)}, [(2, 3, 4)]), ({"axes": (0, 2, 1)}, [(4, 2, 3)]), ({"axes": (0, 1)}, [(4, 3)], {"mask": True})]
