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
    doc = "max(0, x); gradient 1 where x > 0."

    def forward(self, x, training=False):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return (dy * self.mask,)


@register
class Sigmoid(_Activation):
    doc = "σ(x) = 1 / (1 + e^(−x)); pair with BCE for binary outputs."

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
    doc = "Softmax over the last axis; pair with categorical cross-entropy."

    def forward(self, x, training=False):
        x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])   # (M, C)
        y = np.empty_like(x2)
        k.softmax_rows(x2, y)
        self.y = y.reshape(x.shape)
        return self.y

    def backward(self, dy):
        y = self.y
        return (y * (dy - np.sum(dy * y, axis=-1, keepdims=True)),)
