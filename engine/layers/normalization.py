"""Batch normalisation over the channel axis (the first sample axis: features of (F,), channels of (C, H, W))."""
import numpy as np

from ..hparams import HP
from . import conv_kernels as k
from .base import Layer, Param, register


@register
class BatchNorm(Layer):
    category = "normalization"
    doc = ("Normalises each channel with batch statistics while training and running statistics at evaluation: "
           "features of (F,), channels of (C, H, W), features of a (T, F) sequence over batch and valid steps.")
    hparams = (
        HP("momentum", "float", 0.1, min=0.0, max=1.0,
           doc="Running stat update r ← (1 − momentum)·r + momentum·batch stat (PyTorch's convention)"),
        HP("eps", "float", 1e-5, min=1e-12, max=1.0, doc="ε added to the variance"),
    )
    fused = None

    def compute_output_shape(self, in_shapes):
        self._expect_rank(in_shapes[0], (1, 2, 3), "features (F,), a sequence (T, F) or an image (C, H, W)")
        return in_shapes[0]

    def params(self, in_shapes):
        s = in_shapes[0]
        c = (s[-1] if len(s) == 2 else s[0],)                   # the channel axis: F of (T, F), else the first
        return {"gamma": Param(c, "ones"), "beta": Param(c, "zeros"),
                "running_mean": Param(c, "zeros", trainable=False),
                "running_var": Param(c, "ones", trainable=False)}

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0]))                      # one multiply-add per value

    def _rows(self, x):
        """x as (N, C, S), statistics per channel C over N·S values; (B, T, F) → (B·T, F, 1)."""
        x = np.ascontiguousarray(x)
        return x.reshape(-1, x.shape[2], 1) if x.ndim == 3 else x.reshape(x.shape[0], x.shape[1], -1)

    def forward(self, x, training=False):
        x3 = self._rows(x)                                     # (N, C, S)
        mask = self.in_masks[0] if self.in_masks and x.ndim == 3 else None
        self.sel = None if mask is None or mask.all() else np.asarray(mask).reshape(-1)   # (B·T,) valid steps
        if self.sel is not None:
            x3 = np.ascontiguousarray(x3[self.sel])            # (N_valid, F, 1): padded steps never count
        C, p = x3.shape[1], self.p
        scale = k.scratch(self, "scale", (C,), x.dtype)
        shift = k.scratch(self, "shift", (C,), x.dtype)
        y3 = k.scratch(self, "y", x3.shape, x.dtype) if training else np.empty(x3.shape, x.dtype)
        self.training, self.x3 = training, x3
        if training:
            self.mean = k.scratch(self, "mean", (C,), np.float64)
            self.inv = k.scratch(self, "inv", (C,), np.float64)
            k.bn_train_fwd(x3, p["gamma"], p["beta"], y3, self.mean, self.inv, scale, shift,
                           p["running_mean"], p["running_var"], self.config["momentum"], self.config["eps"])
        else:
            k.bn_eval_coefs(p["gamma"], p["beta"], p["running_mean"], p["running_var"], self.config["eps"],
                            scale, shift)
            k.affine(x3, scale, shift, y3)
        return y3.reshape(x.shape) if self.sel is None else self._scatter(y3, x.shape)

    def _scatter(self, v3, shape):
        """(N_valid, F, 1) values back to (B, T, F), zero at padded steps."""
        out = np.zeros((self.sel.size, shape[-1]), v3.dtype)  # (B·T, F)
        out[self.sel] = v3[:, :, 0]
        return out.reshape(shape)

    def backward(self, dy):
        x3, p, g = self.x3, self.p, self.g
        dy3 = self._rows(dy)
        if self.sel is not None:
            dy3 = np.ascontiguousarray(dy3[self.sel])          # (N_valid, F, 1)
        dx3 = k.scratch(self, "dx", x3.shape if self.need_dx else (1, 1, 1), dy.dtype)
        if self.training:
            k.bn_train_bwd(x3, dy3, p["gamma"], self.mean, self.inv, dx3, g["gamma"], g["beta"], self.need_dx)
        else:
            k.bn_eval_bwd(x3, dy3, p["gamma"], p["running_mean"], p["running_var"], self.config["eps"],
                          dx3, g["gamma"], g["beta"], self.need_dx)
        if not self.need_dx:
            return (None,)
        return (dx3.reshape(dy.shape) if self.sel is None else self._scatter(dx3, dy.shape),)

    @classmethod
    def samples(cls):
        return [({}, [(3,)]), ({}, [(3, 4)]), ({"momentum": 0.3}, [(2, 3, 4)]), ({"eps": 1e-3}, [(3, 2, 5)])]
