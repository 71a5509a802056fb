"""Batch normalisation over the channel axis (the first sample axis: features of (F,), channels of (C, H, W))."""
import numpy as np

from ..hparams import HP
from . import conv_kernels as k
from .base import Layer, Param, fmt, register


@register
class BatchNorm(Layer):
    category = "normalization"
    doc = "Normalises each channel with batch statistics while training and running statistics at evaluation."
    hparams = (
        HP("momentum", "float", 0.1, min=0.0, max=1.0,
           doc="Running stat update r ← (1 − momentum)·r + momentum·batch stat (PyTorch's convention)"),
        HP("eps", "float", 1e-5, min=1e-12, max=1.0, doc="ε added to the variance"),
    )

    def compute_output_shape(self, in_shapes):
        self._expect_rank(in_shapes[0], (1, 2, 3), "features (F,), (C, L) or an image (C, H, W)")
        return in_shapes[0]

    def params(self, in_shapes):
        c = (in_shapes[0][0],)
        return {"gamma": Param(c, "ones"), "beta": Param(c, "zeros"),
                "running_mean": Param(c, "zeros", trainable=False),
                "running_var": Param(c, "ones", trainable=False)}

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0]))                      # one multiply-add per value

    def formulas(self, in_shapes):
        s = in_shapes[0]
        c = s[0]
        return {"shape": f"output shape = input shape = {fmt(s)}",
                "params": f"γ and β per channel: 2·C = 2·{c} = {2 * c:,} (running mean and variance are not trained)",
                "macs": "one multiply-add per value = " + "·".join(map(str, s)) + f" = {int(np.prod(s)):,}"}

    def forward(self, x, training=False):
        x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)    # (B, C, S)
        C, p = x3.shape[1], self.p
        scale = k.scratch(self, "scale", (C,), x.dtype)
        shift = k.scratch(self, "shift", (C,), x.dtype)
        y = k.scratch(self, "y", x.shape, x.dtype) if training else np.empty(x.shape, x.dtype)
        self.training, self.x3 = training, x3
        if training:
            self.mean = k.scratch(self, "mean", (C,), np.float64)
            self.inv = k.scratch(self, "inv", (C,), np.float64)
            k.bn_train_fwd(x3, p["gamma"], p["beta"], y.reshape(x3.shape), self.mean, self.inv, scale, shift,
                           p["running_mean"], p["running_var"], self.config["momentum"], self.config["eps"])
        else:
            k.bn_eval_coefs(p["gamma"], p["beta"], p["running_mean"], p["running_var"], self.config["eps"],
                            scale, shift)
            k.affine(x3, scale, shift, y.reshape(x3.shape))
        return y

    def backward(self, dy):
        x3, p, g = self.x3, self.p, self.g
        dy3 = np.ascontiguousarray(dy).reshape(x3.shape)                    # (B, C, S)
        dx = k.scratch(self, "dx", dy.shape if self.need_dx else (1, 1, 1), dy.dtype)
        dx3 = dx.reshape(x3.shape) if self.need_dx else dx
        if self.training:
            k.bn_train_bwd(x3, dy3, p["gamma"], self.mean, self.inv, dx3, g["gamma"], g["beta"], self.need_dx)
        else:
            k.bn_eval_bwd(x3, dy3, p["gamma"], p["running_mean"], p["running_var"], self.config["eps"],
                          dx3, g["gamma"], g["beta"], self.need_dx)
        return (dx if self.need_dx else None,)

    @classmethod
    def samples(cls):
        return [({}, [(3,)]), ({}, [(3, 4)]), ({"momentum": 0.3}, [(2, 3, 4)]), ({"eps": 1e-3}, [(3, 2, 5)])]
