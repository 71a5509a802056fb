"""Elementwise and softmax activations; each declares its ONNX node, PyTorch module and torch reference."""
import numpy as np

from .. import fused as F
from .. import parallel
from .. import kernels as k
from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register


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


class _OverAxis(_Activation):
    """Softmax and LogSoftmax: over the last axis, or over `axis` of the sample (moved last, then back)."""

    hparams = (HP("axis", "int", -1, min=-8, max=7, doc="The sample's axis (the batch excluded) it normalises over; "
                                                         "−1: the last"),)

    def _ax(self, rank):
        a = self.config["axis"]
        if not -rank <= a < rank:
            raise ShapeError(f"{self.where} normalises over axis {a} but its input has only {rank} axes")
        return a % rank

    def compute_output_shape(self, in_shapes):
        self._ax(len(in_shapes[0]))
        return in_shapes[0]

    def formulas(self, in_shapes):
        s = in_shapes[0]
        a = self._ax(len(s))
        f = super().formulas(in_shapes)
        return f if a == len(s) - 1 else {**f, "shape": f"{self.formula().replace('the last axis', f'axis {a}')} "
                                                         f"({s[a]} values); output shape = input shape = {fmt(s)}"}

    def _moved(self, a):
        """(B, …) with the normalised axis last (a view; a itself for the last axis)."""
        ax, r = self._ax(len(self.in_shapes[0])), len(self.in_shapes[0])
        return a if ax == r - 1 else np.moveaxis(a, ax + 1, -1)

    def _back(self, a):
        ax, r = self._ax(len(self.in_shapes[0])), len(self.in_shapes[0])
        return a if ax == r - 1 else np.ascontiguousarray(np.moveaxis(a, -1, ax + 1))

    def _check_mask(self):
        m = self.in_masks[0] if self.in_masks else None
        if m is not None and len(self.in_shapes[0]) == 2 and self._ax(2) == 0 and not m.all():
            raise ShapeError(f"{self.where} normalises over the steps of a variable-length (T, F) sequence, so "
                             "padded steps would change the valid ones: use axis −1")

    def _dim(self):
        """The axis as torch and ONNX count it (the batch first): −1 for the last."""
        ax, r = self._ax(len(self.in_shapes[0])), len(self.in_shapes[0])
        return -1 if ax == r - 1 else ax + 1

    def to_onnx(self, ctx, ins):
        return ctx.op(type(self).__name__, ins, self.name, axis=self._dim())

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"nn.{type(self).__name__}(dim={self._dim()})")

    @classmethod
    def samples(cls):
        other = {"per_layer": True}                               # the fused path runs the last axis only
        return super().samples() + [({"axis": 0}, [(3, 4)], other), ({"axis": 1}, [(2, 3, 4)], other),
                                    ({"axis": -3}, [(2, 3, 2)], other)]


@register
class Softmax(_OverAxis):
    doc = "y_i = e^(x_i) / Σ_j e^(x_j) over the last axis; pair with categorical cross-entropy."


    def forward(self, x, training=False):
        self._check_mask()
        x = self._moved(x)
        self.y = _softmax(x)[1].reshape(x.shape)                # (B, …, C) with the normalised axis last
        return self._back(self.y)

    def backward(self, dy):
        c = self.y.shape[-1]
        dx = np.empty_like(self.y)
        dy = _flat(self._moved(dy), self.y.dtype)
        k.softmax_bwd(self.y.reshape(-1, c), dy.reshape(-1, c), dx.reshape(-1, c), 1)  # (M, C)
        return (self._back(dx),)

    def fused(self, b):
        if self._dim() != -1:
            raise F.Unsupported("softmax over an axis other than the last")
        c = b.shape()[-1]
        b.row(F.SOFTMAX, a=b.src(), o=b.out(), n1=b.size() // c, n2=c)

    def torch_reference(self, xs, p, torch):
        return torch.softmax(xs[0], dim=self._dim())


@register
class LogSoftmax(_OverAxis):
    doc = ("y_i = x_i − ln Σ_j e^(x_j) over the last axis; log-probabilities: as the output layer, categorical "
           "cross-entropy reads its input as logits, the same loss as with Softmax.")
    fused = None          # the per-layer path; as the head the loss takes its input (the fused logits path)


    def forward(self, x, training=False):
        self._check_mask()
        x = self._moved(x)
        x2, p = _softmax(x)                                    # (M, C) each
        m = np.argmax(x2, axis=1)[:, None]                     # ln Σ e^x = x_m − ln p_m: p_m ≥ 1/C never underflows
        lse = np.take_along_axis(x2, m, 1) - np.log(np.take_along_axis(p, m, 1))
        self.prob = p.reshape(x.shape)
        return self._back((x2 - lse).reshape(x.shape))

    def backward(self, dy):
        dy = np.asarray(self._moved(dy), self.prob.dtype)
        return (self._back(dy - self.prob * dy.sum(axis=-1, keepdims=True)),)     # dx = dy − softmax(x)·Σ dy

    def torch_reference(self, xs, p, torch):
        return torch.log_softmax(xs[0], dim=self._dim())
