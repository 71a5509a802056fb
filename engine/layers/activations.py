"""Elementwise and softmax activations; each declares its ONNX node, PyTorch module and torch reference."""
import numpy as np

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
    """An activation without weights; `formula()` is its equation with this node's numbers."""

    category = "activation"
    onnx_op = None        # the ONNX operator computing it in one node, if there is one
    onnx_attrs = {}       # config key -> that operator's attribute
    torch_name = None     # (nn.Module, torch.nn.functional function) mirroring it, e.g. ("ReLU", "relu")
    torch_args = ()       # config keys passed to both, in order

    def formula(self):
        return self.doc.split(";")[0].rstrip(".")

    def formulas(self, in_shapes):
        f = super().formulas(in_shapes)
        where = f" over the last axis (C = {in_shapes[0][-1]})" if "over the last axis" in self.doc else " per value"
        return {**f, "shape": f"{self.formula().replace(' over the last axis', '')}{where}; {f['shape']}"}

    def to_onnx(self, ctx, ins):
        return ctx.op(self.onnx_op, ins, self.name, **{a: float(self.config[k]) for k, a in self.onnx_attrs.items()})

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"nn.{self.torch_name[0]}({', '.join(repr(self.config[k]) for k in self.torch_args)})")

    def torch_reference(self, xs, p, torch):
        return getattr(torch.nn.functional, self.torch_name[1])(xs[0], *(self.config[k] for k in self.torch_args))

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({}, [(2, 3, 4)]), ({}, [(4, 3)], {"mask": True})]


class _Stored(_Activation):
    """An activation whose kernels compute y = fwd(x) and dx = bwd(y, dy) from its output alone."""

    fwd = bwd = None      # kernels of engine/kernels.py: fwd(x, y), bwd(y, dy, dx, flag)

    def forward(self, x, training=False):
        self.y = np.empty(x.shape, x.dtype)
        _each(type(self).fwd, x, self.y)
        return self.y

    def backward(self, dy):
        dx = np.empty_like(self.y)
        bwd = type(self).bwd
        _each(lambda y, d, o: bwd(y, d, o, 1), self.y, dy.astype(self.y.dtype, copy=False), dx)
        return (dx,)


@register
class ReLU(_Stored):
    doc = "y = max(0, x); gradient 1 where x > 0."
    fwd, bwd = k.relu_fwd, k.relu_bwd
    fused = _elementwise(F.RELU)
    onnx_op, torch_name = "Relu", ("ReLU", "relu")


@register
class Sigmoid(_Stored):
    doc = "y = σ(x) = 1 / (1 + e^(−x)); pair with BCE for binary outputs."
    fwd, bwd = k.sigmoid, k.sigmoid_bwd
    fused = _elementwise(F.SIGMOID)
    onnx_op, torch_name = "Sigmoid", ("Sigmoid", "sigmoid")


@register
class Tanh(_Stored):
    doc = "y = tanh(x); zero-centred squashing to (−1, 1)."
    fwd, bwd = k.tanh_fwd, k.tanh_bwd
    fused = _elementwise(F.TANH)
    onnx_op, torch_name = "Tanh", ("Tanh", "tanh")


def _softmax(x):
    """(x as (M, C), softmax of each row (M, C)) for x (…, C)."""
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])   # (M, C)
    y = np.empty_like(x2)
    k.softmax_rows(x2, y)
    return x2, y


@register
class Softmax(_Activation):
    doc = "y_i = e^(x_i) / Σ_j e^(x_j) over the last axis; pair with categorical cross-entropy."


    def forward(self, x, training=False):
        self.y = _softmax(x)[1].reshape(x.shape)
        return self.y

    def backward(self, dy):
        c = self.y.shape[-1]
        dx = np.empty_like(self.y)
        k.softmax_bwd(self.y.reshape(-1, c), _flat(dy, self.y.dtype).reshape(-1, c), dx.reshape(-1, c), 1)  # (M, C)
        return (dx,)

    def fused(self, b):
        c = b.shape()[-1]
        b.row(F.SOFTMAX, a=b.src(), o=b.out(), n1=b.size() // c, n2=c)

    def to_onnx(self, ctx, ins):
        return ctx.op("Softmax", ins, self.name, axis=-1)

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted("nn.Softmax(dim=-1)")

    def torch_reference(self, xs, p, torch):
        return torch.softmax(xs[0], dim=-1)


@register
class LogSoftmax(_Activation):
    doc = ("y_i = x_i − ln Σ_j e^(x_j) over the last axis; log-probabilities: as the output layer, categorical "
           "cross-entropy reads its input as logits, the same loss as with Softmax.")
    fused = None          # the per-layer path; as the head the loss takes its input (the fused logits path)


    def forward(self, x, training=False):
        x2, p = _softmax(x)                                    # (M, C) each
        m = np.argmax(x2, axis=1)[:, None]                     # ln Σ e^x = x_m − ln p_m: p_m ≥ 1/C never underflows
        lse = np.take_along_axis(x2, m, 1) - np.log(np.take_along_axis(p, m, 1))
        self.prob = p.reshape(x.shape)
        return (x2 - lse).reshape(x.shape)

    def backward(self, dy):
        dy = np.asarray(dy, self.prob.dtype)
        return (dy - self.prob * dy.sum(axis=-1, keepdims=True),)     # dx = dy − softmax(x)·Σ dy

    def to_onnx(self, ctx, ins):
        return ctx.op("LogSoftmax", ins, self.name, axis=-1)

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted("nn.LogSoftmax(dim=-1)")

    def torch_reference(self, xs, p, torch):
        return torch.log_softmax(xs[0], dim=-1)
