"""Dropout (inverted: scaled at training time, identity at evaluation)."""
import numpy as np

from .. import fused as F
from .. import kernels as k
from ..hparams import HP
from .base import Layer, register


@register
class Dropout(Layer):
    category = "regularization"
    doc = "Zeroes a fraction `rate` of values while training and scales the rest by 1/(1−rate)."
    hparams = (HP("rate", "float", 0.5, min=0.0, max=0.95, doc="Fraction of values dropped"),)

    def forward(self, x, training=False):
        rate = self.config["rate"]
        if not training or rate == 0.0:
            self.mask = None
            return x
        self.mask = self._draw(x.shape, x.dtype)
        y = np.empty(x.shape, x.dtype)
        k.scale_by(np.ascontiguousarray(x).reshape(-1), self.mask.reshape(-1), y.reshape(-1), 1)
        return y

    def _draw(self, shape, dtype, out=None):
        """Mask of 0 and 1/(1 − rate), keeping each value with probability 1 − rate (self.rng's next draws)."""
        rate = self.config["rate"]
        return np.multiply(self.rng.random(shape, dtype=dtype) >= rate, dtype.type(1 / (1 - rate)), out=out)

    def backward(self, dy):
        if self.mask is None:
            return (dy,)
        dx = np.empty(dy.shape, self.mask.dtype)
        k.scale_by(np.ascontiguousarray(dy, dtype=dx.dtype).reshape(-1), self.mask.reshape(-1), dx.reshape(-1), 1)
        return (dx,)

    def fused(self, b):
        if self.config["rate"] == 0.0:
            return b.alias()
        size, shape = b.size(), b.shape()
        m = b.buffer("mask", size)
        b.before_step(lambda acts, nb: self._draw((nb,) + shape, acts.dtype,
                                                  out=acts[m * nb:(m + size) * nb].reshape((nb,) + shape)))
        b.row(F.DROPOUT, a=b.src(), b=m, o=b.out(), n1=size)

    def to_onnx(self, ctx, ins):
        return ctx.op("Identity", ins, self.name)                      # dropout is the identity at inference

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        return Emitted(f"nn.Dropout({self.config['rate']})")            # inverted, as ours

    def torch_reference(self, xs, p, torch):
        """Inverted dropout x·m/(1 − rate), m the values this layer kept (torch cannot draw our mask)."""
        if self.mask is None:
            return xs[0]
        return xs[0] * torch.tensor(self.mask != 0, dtype=xs[0].dtype) / (1 - self.config["rate"])

    @classmethod
    def samples(cls):
        return [({"rate": 0.3}, [(6,)]), ({"rate": 0.5}, [(2, 3, 3)])]
