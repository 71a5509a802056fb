"""Merges that reduce over their inputs value by value: Maximum, Minimum, Average (Keras' merge layers; ONNX Max,
Min, Mean), broadcasting per sample as Add does."""
import numpy as np

from .base import register
from .merge import _aligned, _Broadcast


class _Pick(_Broadcast):
    """y = the largest (smallest) input at each value; its gradient goes to that input (the first on a tie)."""

    pick = None           # np.argmax or np.argmin
    onnx_op = ""          # Max or Min

    def equation(self, n):
        return f"{self.onnx_op.lower()}({', '.join(f'x{i + 1}' for i in range(n))})"

    def forward(self, *xs, training=False):
        xs, dt = self._setup(xs)
        shape = np.broadcast_shapes(*(x.shape for x in xs))
        stack = np.stack([np.broadcast_to(x, shape) for x in xs]).astype(dt, copy=False)   # (n, B, …)
        self.arg = type(self).pick(stack, axis=0)[None]                                    # (1, B, …)
        return np.take_along_axis(stack, self.arg, 0)[0]

    def backward(self, dy):
        return tuple(self._reduce(np.where(self.arg[0] == i, dy, 0), i) for i in range(len(self.in_shapes)))

    def to_onnx(self, ctx, ins):
        return ctx.op(self.onnx_op, self._onnx_inputs(ctx, ins), self.name)

    def to_torch(self):
        return self._emit(self.type)

    def torch_reference(self, xs, p, torch):
        xs = _aligned(xs, len(self.out_shape))
        y = xs[0]
        for x in xs[1:]:
            y = torch.maximum(y, x) if self.onnx_op == "Max" else torch.minimum(y, x)
        return y

    @classmethod
    def samples(cls):
        return [({}, [(4,), (4,)]), ({}, [(2, 3), (2, 3), (2, 3)]), ({}, [(4, 3), (3,)]),
                ({}, [(4, 3), (4, 3)], {"mask": True})]


def _module(name, fn, what):
    return f'''class {name}(nn.Module):
    """{what} of two or more inputs, value by value, broadcast per sample (batch_broadcast)."""

    def forward(self, *xs):
        xs = batch_broadcast(xs)
        y = xs[0]
        for x in xs[1:]:
            y = {fn}
        return y
'''


@register
class Maximum(_Pick):
    doc = "y = max(x₁, x₂, …) value by value; the gradient goes to the largest input; shapes broadcast as in numpy."
    fused = None
    pick, onnx_op = np.argmax, "Max"
    TORCH = _module("Maximum", "torch.maximum(y, x)", "The largest")


@register
class Minimum(_Pick):
    doc = "y = min(x₁, x₂, …) value by value; the gradient goes to the smallest input; shapes broadcast as in numpy."
    fused = None
    pick, onnx_op = np.argmin, "Min"
    TORCH = _module("Minimum", "torch.minimum(y, x)", "The smallest")


@register
class Average(_Broadcast):
    doc = "y = (x₁ + x₂ + …)/n, the mean of the inputs value by value; shapes broadcast as in numpy."
    fused = None
    TORCH = _module("Average", "y + x", "The mean").replace("        return y\n", "        return y / len(xs)\n")

    def equation(self, n):
        return f"({' + '.join(f'x{i + 1}' for i in range(n))})/{n}"

    def forward(self, *xs, training=False):
        xs, dt = self._setup(xs)
        y = np.zeros(np.broadcast_shapes(*(x.shape for x in xs)), dt)
        for x in xs:
            y += x
        return y / len(xs)

    def backward(self, dy):
        n = len(self.in_shapes)
        return tuple(self._reduce(dy / n, i) for i in range(n))

    def to_onnx(self, ctx, ins):
        return ctx.op("Mean", self._onnx_inputs(ctx, ins), self.name)

    def to_torch(self):
        return self._emit("Average")

    def torch_reference(self, xs, p, torch):
        return sum(_aligned(xs, len(self.out_shape))) / len(xs)

    samples = _Pick.samples
