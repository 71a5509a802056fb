"""Divide: x₁ / x₂ of two inputs, broadcasting per sample as Add does (ONNX Div of two computed tensors)."""
import numpy as np

from .base import register
from .merge import _aligned, _Broadcast, binary_torch


@register
class Divide(_Broadcast):
    doc = ("y = x₁ / x₂: elementwise quotient of two inputs (dy/dx₁ = 1/x₂, dy/dx₂ = −x₁/x₂²); shapes broadcast as in "
           "numpy, e.g. (T, F) / (T, 1); a zero in x₂ gives ±∞ or NaN.")
    fused = None          # runs on the per-layer path
    symbol = "/"
    n_inputs = 2
    TORCH = binary_torch("Divide", "/", "/")

    def forward(self, a, b, training=False):
        (self.a, self.b), dt = self._setup((a, b))
        return np.divide(self.a, self.b, dtype=dt)

    def backward(self, dy):
        q = np.divide(dy, self.b)                                      # dy / x₂
        return self._reduce(q, 0), self._reduce(-q * self.a / self.b, 1)

    def to_onnx(self, ctx, ins):
        return ctx.op("Div", self._onnx_inputs(ctx, ins), self.name)

    def to_torch(self):
        return self._emit("Divide")

    def torch_reference(self, xs, p, torch):
        a, b = _aligned(xs, len(self.out_shape))
        return a / b

    @classmethod
    def samples(cls):
        pos = {"domain": (0.5, 2.0)}                                   # denominators away from 0
        return [({}, [(4,), (4,)], pos), ({}, [(4, 3), (3,)], pos), ({}, [(2, 3), (2, 1)], pos),
                ({}, [(4, 3), (4, 3)], {**pos, "mask": True}), ({}, [(2, 3), (2, 3)], {"domain": (-2.0, -0.5)})]
