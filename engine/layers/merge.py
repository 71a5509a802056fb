"""Layers that merge several inputs: Add, Subtract, Multiply (numpy/ONNX broadcasting per sample) and Concatenate."""
import numpy as np

from .. import fused as F
from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register


def _check_count(layer, in_shapes):
    if len(in_shapes) < 2:
        raise ShapeError(f"{layer.where} needs at least two inputs but has {len(in_shapes)}: "
                         "connect another layer to it")


# the generated model.py's alignment of inputs of different ranks (a module-level function: helpers are
# defined in name order, a function is looked up when called)
ALIGN = '''def batch_broadcast(xs):
    """Inputs (B, …) of different ranks with 1-axes inserted after the batch axis: broadcasting per sample."""
    r = max(x.dim() for x in xs)
    return [x.reshape(x.shape[:1] + (1,) * (r - x.dim()) + x.shape[1:]) for x in xs]
'''


def binary_torch(name, symbol, op):
    """The generated model.py's module of a two-input layer: x1 symbol x2, broadcast per sample."""
    return f'''class {name}(nn.Module):
    """x1 {symbol} x2, broadcast per sample (batch_broadcast)."""

    def forward(self, a, b):
        a, b = batch_broadcast([a, b])
        return a {op} b
'''


def _aligned(xs, rank):
    """Each (B, …) input with 1-axes inserted after the batch axis up to rank + 1 axes (broadcasting per sample)."""
    return [x.reshape(x.shape[:1] + (1,) * (rank + 1 - x.ndim) + x.shape[1:]) for x in xs]


class _Broadcast(Layer):
    """Two or more inputs combined elementwise; shapes broadcast as numpy/ONNX do, the batch axis excluded."""

    category = "merge"
    n_inputs = None       # 2: exactly two inputs (x₁ − x₂, x₁ / x₂)
    symbol = ""           # the operator as the user reads it: "+", "−", "⊙"

    def compute_output_shape(self, in_shapes):
        if self.n_inputs == 2 and len(in_shapes) != 2:
            raise ShapeError(f"{self.where} needs exactly two inputs (x₁ {self.symbol} x₂) but has {len(in_shapes)}")
        _check_count(self, in_shapes)
        try:
            return tuple(np.broadcast_shapes(*[tuple(s) for s in in_shapes]))
        except ValueError:
            pass
        shape = tuple(in_shapes[0])
        for i, s in enumerate(in_shapes[1:], 2):
            try:
                shape = tuple(np.broadcast_shapes(shape, tuple(s)))
            except ValueError:
                raise ShapeError(f"{self.where}: input {i} {fmt(s)} does not broadcast with "
                                 f"{'input 1' if i == 2 else f'inputs 1–{i - 1}'} {fmt(shape)}: aligned at their last "
                                 "axes, each pair of sizes must be equal or 1 (e.g. (T, F) with (F,)): make them match "
                                 "(e.g. a Dense with matching units) or use Concatenate") from None
        return shape

    def macs(self, in_shapes):
        return int(np.prod(self.compute_output_shape(in_shapes))) * (len(in_shapes) - 1)

    def formulas(self, in_shapes):
        f = super().formulas(in_shapes)
        n, out = len(in_shapes), self.compute_output_shape(in_shapes)
        size = int(np.prod(out))
        ins = ", ".join(fmt(s) for s in in_shapes)
        same = all(tuple(s) == out for s in in_shapes)
        f["shape"] = (f"y = {self.equation(n)} per value; "
                      + (f"every input is {fmt(out)} → {fmt(out)}" if same else
                         f"{ins} broadcast (aligned at the last axis, 1s stretched) → {fmt(out)}"))
        f["macs"] = f"(inputs − 1)·output values = ({n} − 1)·{size} = {(n - 1) * size:,}"
        return f

    def equation(self, n):
        """y's formula for n inputs, e.g. x1 + x2."""
        return f" {self.symbol} ".join(f"x{i + 1}" for i in range(n))

    def compute_mask(self, in_masks):
        """The AND of the masks of the (T, F) inputs whose T is the output's (a broadcast (F,) has none)."""
        t = self.out_shape[0] if len(self.out_shape) == 2 else None
        ms = [m for m, s in zip(in_masks, self.in_shapes) if m is not None and len(s) == 2 and s[0] == t]
        if not ms or t is None:
            return None
        return np.logical_and.reduce(ms) if len(ms) > 1 else ms[0]

    def _reduce(self, d, i):
        """d (B, …out) summed over the axes input i was broadcast along, in input i's shape (B, …in)."""
        s, out = tuple(self.in_shapes[i]), tuple(self.out_shape)
        if s == out:
            return d
        lead = len(out) - len(s)
        axes = tuple(range(1, 1 + lead)) + tuple(1 + lead + j for j, n in enumerate(s) if n == 1 and out[lead + j] != 1)
        return d.sum(axis=axes).reshape((len(d),) + s)

    def _setup(self, xs):
        """Inputs aligned for broadcasting and the output dtype."""
        return _aligned(xs, len(self.out_shape)), np.result_type(*xs)

    def _emit(self, name):
        from ..torch_export import Emitted
        return Emitted(f"{name}()", helpers=(name, "batch_broadcast"),
                       sources={name: getattr(type(self), "TORCH"), "batch_broadcast": ALIGN})

    def _onnx_inputs(self, ctx, ins):
        """ins with 1-axes after the batch axis where an input has fewer axes than the output (ONNX aligns right)."""
        r, out = len(self.out_shape), []
        for i, (x, s) in enumerate(zip(ins, self.in_shapes)):
            if len(s) < r:
                axes = ctx.const(f"{self.name}/axes{i}", list(range(1, 1 + r - len(s))), np.int64)
                x = ctx.op("Unsqueeze", [x, axes], f"{self.name}/aligned{i}")
            out.append(x)
        return out


@register
class Add(_Broadcast):
    doc = ("y = x₁ + x₂ + …: elementwise sum of two or more inputs (residual connections); shapes broadcast as in "
           "numpy, e.g. (T, F) + (F,).")
    symbol = "+"
    TORCH = '''class Add(nn.Module):
    """Elementwise sum of two or more inputs, broadcast per sample (batch_broadcast)."""

    def forward(self, *xs):
        xs = batch_broadcast(xs)
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y
'''

    def forward(self, *xs, training=False):
        xs, dt = self._setup(xs)
        y = np.zeros(np.broadcast_shapes(*(x.shape for x in xs)), dt)
        for x in xs:
            y += x
        return y

    def backward(self, dy):
        return tuple(self._reduce(dy, i) for i in range(len(self.in_shapes)))

    def fused(self, b):
        if any(b.shape(s) != b.shape() for s in b.srcs):
            raise F.Unsupported("broadcasting Add")
        o = b.out()
        for i in range(len(b.srcs)):                                   # y = x₀, then y += xᵢ; dxᵢ += dy
            b.row(F.COPY if i == 0 else F.ADDTO, a=b.src(i), o=o, n1=b.size(), grad_of=i)

    def to_onnx(self, ctx, ins):
        return ctx.op("Add" if len(ins) == 2 else "Sum", self._onnx_inputs(ctx, ins), self.name)

    def to_torch(self):
        return self._emit("Add")

    def torch_reference(self, xs, p, torch):
        return sum(_aligned(xs, len(self.out_shape)))

    @classmethod
    def samples(cls):
        return [({}, [(4,), (4,)]), ({}, [(2, 3), (2, 3), (2, 3)]), ({}, [(4, 3), (3,)]),
                ({}, [(2, 1, 4), (3, 1), (4,)]), ({}, [(4, 3), (4, 3)], {"mask": True})]


@register
class Subtract(_Broadcast):
    doc = "y = x₁ − x₂: elementwise difference of two inputs; shapes broadcast as in numpy, e.g. (T, F) − (F,)."
    fused = None          # runs on the per-layer path
    symbol = "−"
    n_inputs = 2
    TORCH = binary_torch("Subtract", "−", "-")

    def forward(self, a, b, training=False):
        (a, b), dt = self._setup((a, b))
        return np.subtract(a, b, dtype=dt)

    def backward(self, dy):
        return self._reduce(dy, 0), self._reduce(-dy, 1)

    def to_onnx(self, ctx, ins):
        return ctx.op("Sub", self._onnx_inputs(ctx, ins), self.name)

    def to_torch(self):
        return self._emit("Subtract")

    def torch_reference(self, xs, p, torch):
        a, b = _aligned(xs, len(self.out_shape))
        return a - b

    @classmethod
    def samples(cls):
        return [({}, [(4,), (4,)]), ({}, [(4, 3), (3,)]), ({}, [(2, 3), (2, 1)]),
                ({}, [(4, 3), (4, 3)], {"mask": True})]


@register
class Multiply(_Broadcast):
    doc = ("y = x₁ ⊙ x₂ ⊙ …: elementwise product of two or more inputs (gates, attention weights); shapes "
           "broadcast as in numpy, e.g. (T, F) ⊙ (T, 1).")
    fused = None          # runs on the per-layer path
    symbol = "⊙"
    TORCH = '''class Multiply(nn.Module):
    """Elementwise product of two or more inputs, broadcast per sample (batch_broadcast)."""

    def forward(self, *xs):
        xs = batch_broadcast(xs)
        y = xs[0]
        for x in xs[1:]:
            y = y * x
        return y
'''

    def forward(self, *xs, training=False):
        self.xs, dt = self._setup(xs)
        y = np.ones(np.broadcast_shapes(*(x.shape for x in self.xs)), dt)
        for x in self.xs:
            y *= x
        return y

    def backward(self, dy):
        out = []
        for i in range(len(self.xs)):                                  # dxᵢ = dy ⊙ Π_{j≠i} xⱼ, reduced
            d = np.array(dy, dtype=np.result_type(dy, *self.xs))
            for j, x in enumerate(self.xs):
                if j != i:
                    d = d * x
            out.append(self._reduce(d, i))
        return tuple(out)

    def to_onnx(self, ctx, ins):
        xs = self._onnx_inputs(ctx, ins)
        y = xs[0]
        for i, x in enumerate(xs[1:], 1):
            y = ctx.op("Mul", [y, x], self.name if i == len(xs) - 1 else f"{self.name}/product{i}")
        return y

    def to_torch(self):
        return self._emit("Multiply")

    def torch_reference(self, xs, p, torch):
        y = 1
        for x in _aligned(xs, len(self.out_shape)):
            y = y * x
        return y

    @classmethod
    def samples(cls):
        return [({}, [(4,), (4,)]), ({}, [(2, 3), (2, 3), (2, 3)]), ({}, [(4, 3), (4, 1)]),
                ({}, [(2, 2, 3), (3,)]), ({}, [(4, 3), (4, 3)], {"mask": True})]


@register
class Concatenate(Layer):
    category = "merge"
    doc = "Joins two or more inputs along an axis (batch axis excluded; −1 is the last)."
    hparams = (HP("axis", "int", -1, min=-8, max=7, doc="Axis to join along, batch excluded"),)
    n_inputs = None
    TORCH = '''class Concatenate(nn.Module):
    """Joins the inputs along dim (dim 0 is the batch)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)
'''

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

    def to_onnx(self, ctx, ins):
        return ctx.op("Concat", ins, self.name, axis=self._axis(len(self.in_shapes[0])) + 1)   # +1: batch axis

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"Concatenate(dim={self._axis(len(self.in_shapes[0])) + 1})", helpers=("Concatenate",),
                       sources={"Concatenate": self.TORCH})

    def torch_reference(self, xs, p, torch):
        return torch.cat(xs, dim=self.a)

    @classmethod
    def samples(cls):
        return [({}, [(3,), (2,)]), ({"axis": 0}, [(2, 3), (1, 3), (2, 3)])]
