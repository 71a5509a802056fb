"""Layers that merge several inputs: Add and Concatenate."""
import numpy as np

from .. import fused as F
from .. import kernels as k
from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register


def _check_count(layer, in_shapes):
    if len(in_shapes) < 2:
        raise ShapeError(f"{layer.where} needs at least two inputs but has {len(in_shapes)}: "
                         "connect another layer to it")


@register
class Add(Layer):
    category = "merge"
    doc = "Elementwise sum of two or more inputs of the same shape (residual connections)."
    n_inputs = None

    def compute_output_shape(self, in_shapes):
        _check_count(self, in_shapes)
        for i, s in enumerate(in_shapes[1:], 2):
            if s != in_shapes[0]:
                raise ShapeError(f"{self.where} needs inputs of equal shape, but input 1 is "
                                 f"{fmt(in_shapes[0])} and input {i} is {fmt(s)}: make them match "
                                 "(e.g. a Dense with matching units) or use Concatenate")
        return in_shapes[0]

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0])) * (len(in_shapes) - 1)

    def formulas(self, in_shapes):
        f = super().formulas(in_shapes)
        n, size = len(in_shapes), int(np.prod(in_shapes[0]))
        f["shape"] = f"every input is {fmt(in_shapes[0])} → {fmt(in_shapes[0])}"
        f["macs"] = f"(inputs − 1)·values = ({n} − 1)·{size} = {(n - 1) * size:,} additions"
        return f

    def forward(self, *xs, training=False):
        self.n = len(xs)
        y = np.empty(xs[0].shape, np.result_type(*xs))
        for i, x in enumerate(xs):
            k.add_into(np.ascontiguousarray(x, dtype=y.dtype).reshape(-1), y.reshape(-1), 1 if i == 0 else 2)
        return y

    def backward(self, dy):
        return (dy,) * self.n

    def fused(self, b):
        o = b.out()
        for i in range(len(b.srcs)):                                   # y = x₀, then y += xᵢ; dxᵢ += dy
            b.row(F.COPY if i == 0 else F.ADDTO, a=b.src(i), o=o, n1=b.size(), grad_of=i)

    @classmethod
    def samples(cls):
        return [({}, [(4,), (4,)]), ({}, [(2, 3), (2, 3), (2, 3)])]


@register
class Concatenate(Layer):
    category = "merge"
    doc = "Joins two or more inputs along an axis (batch axis excluded; −1 is the last)."
    hparams = (HP("axis", "int", -1, min=-8, max=7, doc="Axis to join along, batch excluded"),)
    n_inputs = None

    def _axis(self, rank):
        a = self.config["axis"]
        if not -rank <= a < rank:
            raise ShapeError(f"{self.where} joins along axis {a} but its inputs have only {rank} axes")
        return a % rank

    def compute_output_shape(self, in_shapes):
        _check_count(self, in_shapes)
        s0 = in_shapes[0]
        a = self._axis(len(s0))
        for i, s in enumerate(in_shapes[1:], 2):
            if len(s) != len(s0) or s[:a] + s[a + 1:] != s0[:a] + s0[a + 1:]:
                raise ShapeError(f"{self.where} needs inputs that agree on every axis but {a}; input 1 is "
                                 f"{fmt(s0)} and input {i} is {fmt(s)}")
        return s0[:a] + (sum(s[a] for s in in_shapes),) + s0[a + 1:]

    fused = None

    def forward(self, *xs, training=False):
        self.a = self._axis(xs[0].ndim - 1) + 1
        self.cuts = np.cumsum([x.shape[self.a] for x in xs])[:-1]
        return np.concatenate(xs, axis=self.a)

    def backward(self, dy):
        return tuple(np.split(dy, self.cuts, axis=self.a))

    @classmethod
    def samples(cls):
        return [({}, [(3,), (2,)]), ({"axis": 0}, [(2, 3), (1, 3), (2, 3)])]
