"""Flatten and Reshape."""
from math import prod

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


@register
class Flatten(_Reshaping):
    doc = "Flattens each sample to one axis: (C, H, W) → (C·H·W,)."

    def compute_output_shape(self, in_shapes):
        return (prod(in_shapes[0]),)

    def fused(self, b):
        b.alias()                                                      # same values, same buffer

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

    @classmethod
    def samples(cls):
        return [({"shape": (3, -1)}, [(6,)])]
