"""Flatten and Reshape."""
from math import prod

import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register


class _Reshaping(Layer):
    category = "reshape"

    def forward(self, x, training=False):
        self.xshape = x.shape
        return x.reshape((x.shape[0],) + self.out_shape)

    def backward(self, dy):
        return (dy.reshape(self.xshape),)

    def to_onnx(self, ctx, ins):
        shape = ctx.const(f"{self.name}/shape", (0,) + self.out_shape, np.int64)   # 0 copies the batch size
        return ctx.op("Reshape", [ins[0], shape], self.name)

    def torch_reference(self, xs, p, torch):
        return xs[0].reshape((len(xs[0]),) + self.out_shape)


@register
class Flatten(_Reshaping):
    doc = "Flattens each sample to one axis: (C, H, W) → (C·H·W,)."

    def compute_output_shape(self, in_shapes):
        return (prod(in_shapes[0]),)

    def fused(self, b):
        b.alias()                                                      # same values, same buffer

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        return Emitted("nn.Flatten()")

    def formulas(self, in_shapes):
        s = in_shapes[0]
        return {"shape": "·".join(map(str, s)) + f" = {prod(s):,} → {fmt((prod(s),))}",
                "params": "no trainable parameters = 0", "macs": "no multiply-adds (a view of the same values) = 0"}

    @classmethod
    def samples(cls):
        return [({}, [(2, 3, 2)])]


@register
class Reshape(_Reshaping):
    doc = "Reshapes each sample; one axis may be −1 (inferred)."
    hparams = (HP("shape", "ints", (-1,), min=-1, max=1 << 20, doc="Target shape, e.g. 1,28,28"),)

    def compute_output_shape(self, in_shapes):
        n, target = prod(in_shapes[0]), self.config["shape"]
        if target.count(-1) > 1 or 0 in target:
            raise ShapeError(f"{self.where}: target {fmt(target)} may hold at most one −1 and no 0")
        known = prod(t for t in target if t != -1)
        if (-1 in target and n % known) or (-1 not in target and known != n):
            raise ShapeError(f"{self.where} cannot reshape {fmt(in_shapes[0])} ({n} values) into "
                             f"{fmt(target)}: the number of values must stay {n}")
        return tuple(n // known if t == -1 else t for t in target)

    def fused(self, b):
        b.alias()

    def to_torch(self):
        from ..torch_export.emitters import Emitted, _args
        return Emitted(f"Reshape({_args(*self.out_shape)})", helpers=("Reshape",), sources={"Reshape": TORCH_RESHAPE})

    @classmethod
    def samples(cls):
        return [({"shape": (3, -1)}, [(6,)])]


TORCH_RESHAPE = '''class Reshape(nn.Module):
    """Reshapes each sample to shape (the batch axis stays)."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(len(x), *self.shape)
'''
