"""Elementwise and softmax activations."""
import numpy as np

from .. import kernels as k
from .base import Layer, register


class _Activation(Layer):
    category = "activation"

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({}, [(2, 3, 4)])]


@register
class ReLU(_Activation):
    doc = "max(0, x); gradient 1 where x > 0 (spec §1)."

    def forward(self, x, training=False):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return (dy * self.mask,)


@register
class Sigmoid(_Activation):
    doc = "σ(x) = 1 / (1 + e^(−x)); pair with BCE for binary outputs (spec §13)."

    def forward(self, x, training=False):
        self.y = np.empty_like(x)
        k.sigmoid(x.ravel(), self.y.ravel())
        return self.y

    def backward(self, dy):
        return (dy * self.y * (1 - self.y),)


@register
class Tanh(_Activation):
    doc = "tanh(x); zero-centred squashing to (−1, 1)."

    def forward(self, x, training=False):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        return (dy * (1 - self.y * self.y),)


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
        y = self.y
        return (y * (dy - np.sum(dy * y, axis=-1, keepdims=True)),)


# ---- GELU (exact, erf form) ----
from math import erf, exp  # noqa: E402

from numba import njit  # noqa: E402


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
    doc = "GELU(x) = x·Φ(x) = ½x(1 + erf(x/√2)), Φ the standard normal CDF (the transformer feed-forward activation)."

    def forward(self, x, training=False):
        x = np.ascontiguousarray(x)
        y, self.d = np.empty_like(x), np.empty_like(x)
        _gelu(x, y, self.d)
        return y

    def backward(self, dy):
        return (dy * self.d,)

