"""Elementwise and softmax activations."""
import numpy as np

from .. import fused as F
from .. import kernels as k
from .base import Layer, register


def _flat(a, dtype=None):
    """a as a flat C-contiguous array (a copy only when a is not contiguous)."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def _elementwise(op):
    """The fused-path declaration of an elementwise activation: one row running `op`'s kernels."""
    def fused(self, b):
        b.row(op, a=b.src(), o=b.out(), n1=b.size())
    return fused


class _Activation(Layer):
    category = "activation"

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({}, [(2, 3, 4)])]


@register
class ReLU(_Activation):
    doc = "max(0, x); gradient 1 where x > 0 (spec §1)."

    def forward(self, x, training=False):
        self.y = np.empty(x.shape, x.dtype)
        k.relu_fwd(_flat(x), self.y.reshape(-1))
        return self.y

    def backward(self, dy):
        dx = np.empty_like(self.y)
        k.relu_bwd(self.y.reshape(-1), _flat(dy, self.y.dtype), dx.reshape(-1), 1)
        return (dx,)

    fused = _elementwise(F.RELU)


@register
class Sigmoid(_Activation):
    doc = "σ(x) = 1 / (1 + e^(−x)); pair with BCE for binary outputs (spec §13)."

    def forward(self, x, training=False):
        self.y = np.empty(x.shape, x.dtype)
        k.sigmoid(_flat(x), self.y.reshape(-1))
        return self.y

    def backward(self, dy):
        dx = np.empty_like(self.y)
        k.sigmoid_bwd(self.y.reshape(-1), _flat(dy, self.y.dtype), dx.reshape(-1), 1)
        return (dx,)

    fused = _elementwise(F.SIGMOID)


@register
class Tanh(_Activation):
    doc = "tanh(x); zero-centred squashing to (−1, 1)."

    def forward(self, x, training=False):
        self.y = np.empty(x.shape, x.dtype)
        k.tanh_fwd(_flat(x), self.y.reshape(-1))
        return self.y

    def backward(self, dy):
        dx = np.empty_like(self.y)
        k.tanh_bwd(self.y.reshape(-1), _flat(dy, self.y.dtype), dx.reshape(-1), 1)
        return (dx,)

    fused = _elementwise(F.TANH)


@register
class Softmax(_Activation):
    doc = "Softmax over the last axis; pair with categorical cross-entropy (spec §13)."

    def forward(self, x, training=False):
        x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])   # (M, C)
        y = np.empty_like(x2)
        k.softmax_rows(x2, y)
        self.y = y.reshape(x.shape)
        return self.y

    def backward(self, dy):
        c = self.y.shape[-1]
        dx = np.empty_like(self.y)
        k.softmax_bwd(self.y.reshape(-1, c), _flat(dy, self.y.dtype).reshape(-1, c), dx.reshape(-1, c), 1)  # (M, C)
        return (dx,)

    def fused(self, b):
        c = b.shape()[-1]
        b.row(F.SOFTMAX, a=b.src(), o=b.out(), n1=b.size() // c, n2=c)
