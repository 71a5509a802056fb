"""Elementwise and softmax activations."""
from math import erf, exp

import numpy as np
from numba import njit

from .. import fused as F
from .. import parallel
from .. import kernels as k
from .base import Layer, register


def _flat(a, dtype=None):
    """a as a flat C-contiguous array (a copy only when a is not contiguous)."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def _each(kernel, *arrays):
    """kernel(*flat chunks) on batch chunks of same-shape arrays (on the threads granted, engine.parallel)."""
    rows = [np.ascontiguousarray(a).reshape(len(a), a.size // max(len(a), 1)) for a in arrays]   # (B, n) each
    parallel.over_batch(lambda *c: kernel(*(r.reshape(-1) for r in c)), *rows, target=parallel.STREAM)


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
    doc = "max(0, x); gradient 1 where x > 0."

    def forward(self, x, training=False):
        self.y = np.empty(x.shape, x.dtype)
        _each(k.relu_fwd, x, self.y)
        return self.y

    def backward(self, dy):
        dx = np.empty_like(self.y)
        _each(lambda y, d, o: k.relu_bwd(y, d, o, 1), self.y, dy.astype(self.y.dtype, copy=False), dx)
        return (dx,)

    fused = _elementwise(F.RELU)


@register
class Sigmoid(_Activation):
    doc = "σ(x) = 1 / (1 + e^(−x)); pair with BCE for binary outputs."

    def forward(self, x, training=False):
        self.y = np.empty(x.shape, x.dtype)
        _each(k.sigmoid, x, self.y)
        return self.y

    def backward(self, dy):
        dx = np.empty_like(self.y)
        _each(lambda y, d, o: k.sigmoid_bwd(y, d, o, 1), self.y, dy.astype(self.y.dtype, copy=False), dx)
        return (dx,)

    fused = _elementwise(F.SIGMOID)


@register
class Tanh(_Activation):
    doc = "tanh(x); zero-centred squashing to (−1, 1)."

    def forward(self, x, training=False):
        self.y = np.empty(x.shape, x.dtype)
        _each(k.tanh_fwd, x, self.y)
        return self.y

    def backward(self, dy):
        dx = np.empty_like(self.y)
        _each(lambda y, d, o: k.tanh_bwd(y, d, o, 1), self.y, dy.astype(self.y.dtype, copy=False), dx)
        return (dx,)

    fused = _elementwise(F.TANH)


@register
class Softmax(_Activation):
    doc = "Softmax over the last axis; pair with categorical cross-entropy."

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


# ---- GELU (exact, erf form) ----
@njit(cache=True, nogil=True, error_model="numpy")
def _gelu(x, y, dydx):
    """y = x·Φ(x) = ½x(1 + erf(x/√2)); dy/dx = Φ(x) + x·φ(x), elementwise on flat arrays."""
    for i in range(x.size):
        v = x.flat[i]
        c = 0.5 * (1.0 + erf(v * 0.7071067811865476))
        y.flat[i] = v * c
        dydx.flat[i] = c + v * exp(-0.5 * v * v) * 0.3989422804014327     # φ(x) = e^(−x²/2)/√(2π)


@register
class GELU(_Activation):
    fused = None          # runs on the per-layer path
    doc = "GELU(x) = x·Φ(x) = ½x(1 + erf(x/√2)), Φ the standard normal CDF (the transformer feed-forward activation)."

    def forward(self, x, training=False):
        x = np.ascontiguousarray(x)
        y, self.d = np.empty_like(x), np.empty_like(x)
        _gelu(x, y, self.d)
        return y

    def backward(self, dy):
        return (dy * self.d,)

