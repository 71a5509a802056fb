"""MaxPool2D, AveragePool2D and GlobalAveragePool on NCHW tensors."""
import numpy as np

from .. import parallel
from ..hparams import HP
from . import conv_kernels as k
from .base import Layer, fmt, register
from .conv import out_size, pair, spatial_input


class _Pool2D(Layer):
    category = "pooling"
    hparams = (
        HP("kernel_size", "ints", (2,), min=1, max=255, doc="Window K or K_h, K_w"),
        HP("stride", "ints", (2,), min=0, max=255, doc="Step S or S_h, S_w between windows"),
    )

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        self.k, self.s = pair(self, "kernel_size"), pair(self, "stride")

    def compute_output_shape(self, in_shapes):
        c, h, w = spatial_input(self, in_shapes)
        return c, out_size(self, "H", h, 0, self.k[0], self.s[0]), out_size(self, "W", w, 0, self.k[1], self.s[1])

    def kernel_stride(self):
        return self.k, self.s

    def formulas(self, in_shapes):
        c, h, w = in_shapes[0]
        _, ho, wo = self.compute_output_shape(in_shapes)
        (kh, kw), (sh, sw) = self.k, self.s
        f = super().formulas(in_shapes)
        f["shape"] = (f"H_out = ⌊(H − K)/S⌋ + 1 = ⌊({h} − {kh})/{sh}⌋ + 1 = {ho}; "
                      f"W_out = ⌊({w} − {kw})/{sw}⌋ + 1 = {wo} → {fmt((c, ho, wo))}")
        f["macs"] = (f"C·H_out·W_out·K_h·K_w = {c}·{ho}·{wo}·{kh}·{kw} = {c * ho * wo * kh * kw:,}"
                     if self.macs(in_shapes) else "no multiply-adds (a maximum compares) = 0")
        return f

    def _out(self, x, training, key="y"):
        shape = (len(x),) + self.out_shape
        return k.scratch(self, key, shape, x.dtype) if training else np.empty(shape, x.dtype)

    @classmethod
    def samples(cls):
        return [({}, [(2, 4, 6)]), ({}, [(1, 5, 3)]), ({"kernel_size": (3, 2), "stride": (2, 1)}, [(3, 7, 4)]),
                ({"kernel_size": (3,), "stride": (2,)}, [(1, 5, 5)])]


@register
class MaxPool2D(_Pool2D):
    doc = "Maximum over K_h × K_w windows moved by stride S; H_out = ⌊(H − K)/S⌋ + 1 (K = 2, S = 2 halves H and W)."
    fused = None

    def forward(self, x, training=False):
        x = np.ascontiguousarray(x)
        y = self._out(x, training)
        self.arg = k.scratch(self, "arg", y.shape, np.uint16)              # window cell of each maximum
        self.xshape = x.shape
        self.x_eval = None if training else x                              # eval skips the argmax; backward redoes it
        self._max(x, y, training)
        return y

    def _max(self, x, y, keep):
        parallel.over_batch(lambda a, o, i: k.maxpool_fwd(a, o, i, *self.k, *self.s, keep), x, y, self.arg)

    def backward(self, dy):
        if self.x_eval is not None:                                        # after an eval forward: argmax from x
            x, self.x_eval = self.x_eval, None
            self._max(x, k.scratch(self, "y_arg", self.arg.shape, x.dtype), True)
        dx = k.scratch(self, "dx", self.xshape, dy.dtype)
        parallel.over_batch(lambda d, i, o: k.maxpool_bwd(d, i, o, *self.k, *self.s),
                            np.ascontiguousarray(dy), self.arg, dx)
        return (dx,)


@register
class AveragePool2D(_Pool2D):
    doc = "Mean over K_h × K_w windows moved by stride S."
    fused = None

    def macs(self, in_shapes):
        c, ho, wo = self.compute_output_shape(in_shapes)
        return c * ho * wo * self.k[0] * self.k[1]

    def forward(self, x, training=False):
        x = np.ascontiguousarray(x)
        y = self._out(x, training)
        self.xshape = x.shape
        k.avgpool_fwd(x, y, self.k[0], self.k[1], self.s[0], self.s[1])
        return y

    def backward(self, dy):
        dx = k.scratch(self, "dx", self.xshape, dy.dtype)
        dx[...] = 0
        k.avgpool_bwd(np.ascontiguousarray(dy), dx, self.k[0], self.k[1], self.s[0], self.s[1])
        return (dx,)


@register
class GlobalAveragePool(Layer):
    category = "pooling"
    doc = "Mean of each channel over all positions: (C, H, W) → (C,)."
    fused = None

    def compute_output_shape(self, in_shapes):
        return spatial_input(self, in_shapes)[:1]

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0]))

    def formulas(self, in_shapes):
        c, h, w = in_shapes[0]
        return {"shape": f"(C, H, W) → (C,) = {fmt((c,))}", "params": "no trainable parameters = 0",
                "macs": f"C·H·W = {c}·{h}·{w} = {c * h * w:,}"}

    def forward(self, x, training=False):
        self.xshape = x.shape
        return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2, dtype=np.float64).astype(x.dtype)  # (B, C)

    def backward(self, dy):
        B, C, H, W = self.xshape
        dx = k.scratch(self, "dx", self.xshape, dy.dtype)
        dx[...] = (dy / (H * W))[:, :, None, None]                          # (B, C, 1, 1) broadcast
        return (dx,)

    @classmethod
    def samples(cls):
        return [({}, [(3, 4, 5)])]
