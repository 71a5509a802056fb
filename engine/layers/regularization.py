"""Dropout (inverted: scaled at training time, identity at evaluation)."""
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
        self.mask = (self.rng.random(x.shape, dtype=x.dtype) >= rate) * x.dtype.type(1 / (1 - rate))
        return x * self.mask

    def backward(self, dy):
        return (dy if self.mask is None else dy * self.mask,)

    @classmethod
    def samples(cls):
        return [({"rate": 0.3}, [(6,)]), ({"rate": 0.5}, [(2, 3, 3)])]
