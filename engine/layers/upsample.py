"""Upsample2D (nearest, bilinear as PyTorch with align_corners=False) and ZeroPad on channels-first data."""
from fractions import Fraction

import numpy as np

from ..errors import ConfigError, ShapeError
from ..hparams import HP
from . import conv_kernels as k
from .base import Layer, fmt, register
from .conv import ints, spatial_input


def bilinear_matrix(n, s, dtype):
    """(n·s, n) interpolation weights along one axis: source x = (i + ½)/s − ½ clamped at 0, as PyTorch."""
    src = np.maximum((np.arange(n * s) + 0.5) / s - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = src - i0
    A = np.zeros((n * s, n))
    np.add.at(A, (np.arange(n * s), i0), 1 - lam)
    np.add.at(A, (np.arange(n * s), i1), lam)
    return A.astype(dtype)


@register
class Upsample2D(Layer):
    category = "reshape"
    doc = ("Enlarges (C, H, W) to (C, S_h·H, S_w·W): nearest copies each value, bilinear interpolates "
           "(pixel centres, as PyTorch's align_corners=False).")
    hparams = (HP("scale", "ints", (2,), min=1, max=64, doc="S or S_h, S_w: whole-number scale factors"),
               HP("mode", "choice", "nearest", choices=("nearest", "bilinear"), doc="nearest or bilinear"))
    fused = None

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        self.sc = ints(self, "scale", 2)

    def compute_output_shape(self, in_shapes):
        c, h, w = spatial_input(self, in_shapes)
        return c, h * self.sc[0], w * self.sc[1]

    def macs(self, in_shapes):
        return 0 if self.config["mode"] == "nearest" else 4 * int(np.prod(self.compute_output_shape(in_shapes)))

    def kernel_stride(self):
        """Nearest reads 1 input, bilinear its 2 neighbours (1 at scale 1); step 1/S."""
        e = tuple(1 if self.config["mode"] == "nearest" or s == 1 else 2 for s in self.sc)
        why = tuple(f"{n} ({self.config['mode']} reads {'one input' if n == 1 else 'two neighbours'})" for n in e)
        return e, tuple(Fraction(1, s) for s in self.sc), why

    def formulas(self, in_shapes):
        c, h, w = in_shapes[0]
        (sh, sw), out = self.sc, self.compute_output_shape(in_shapes)
        m = self.macs(in_shapes)
        return {"shape": f"H_out = S_h·H = {sh}·{h} = {out[1]}; W_out = S_w·W = {sw}·{w} = {out[2]} → {fmt(out)}",
                "params": "no trainable parameters = 0",
                "macs": f"4·C·H_out·W_out = 4·{c}·{out[1]}·{out[2]} = {m:,}" if m else "no multiply-adds (copies) = 0"}

    def build(self, in_shapes):
        super().build(in_shapes)
        self.A = {}

    def _mats(self, dtype):
        """(A_h, A_w): y = A_h x A_wᵀ per channel."""
        if dtype not in self.A:
            _, h, w = self.in_shapes[0]
            self.A[dtype] = bilinear_matrix(h, self.sc[0], dtype), bilinear_matrix(w, self.sc[1], dtype)
        return self.A[dtype]

    def forward(self, x, training=False):
        (sh, sw), B = self.sc, len(x)
        if self.config["mode"] == "nearest":
            return np.repeat(np.repeat(x, sh, axis=2), sw, axis=3)
        Ah, Aw = self._mats(x.dtype)
        return np.ascontiguousarray(Ah @ (x @ Aw.T))                           # (B, C, H_out, W_out)

    def backward(self, dy):
        (sh, sw), (c, h, w) = self.sc, self.in_shapes[0]
        if self.config["mode"] == "nearest":
            return (dy.reshape(len(dy), c, h, sh, w, sw).sum(axis=(3, 5)),)      # (B, C, H, W)
        Ah, Aw = self._mats(dy.dtype)
        return (np.ascontiguousarray(Ah.T @ (dy @ Aw)),)

    def to_onnx(self, ctx, ins):
        n = self.name
        scales = ctx.const(f"{n}/scales", [1.0, 1.0, *self.sc])
        if self.config["mode"] == "nearest":
            return ctx.op("Resize", [ins[0], "", scales], n, mode="nearest", coordinate_transformation_mode="asymmetric",
                          nearest_mode="floor")
        return ctx.op("Resize", [ins[0], "", scales], n, mode="linear", coordinate_transformation_mode="half_pixel")

    def to_torch(self):
        from ..torch_export.emitters import Emitted, _pair
        extra = ", align_corners=False" if self.config["mode"] == "bilinear" else ""
        return Emitted(f"nn.Upsample(scale_factor={_pair(tuple(float(v) for v in self.sc))}, "
                       f"mode={self.config['mode']!r}{extra})")

    def torch_reference(self, xs, p, torch):
        bil = self.config["mode"] == "bilinear"
        return torch.nn.functional.interpolate(xs[0], scale_factor=tuple(float(v) for v in self.sc),
                                               mode=self.config["mode"], align_corners=False if bil else None)

    @classmethod
    def samples(cls):
        return [({}, [(2, 3, 4)]), ({"scale": (3, 2)}, [(1, 2, 3)]), ({"mode": "bilinear"}, [(2, 3, 4)]),
                ({"mode": "bilinear", "scale": (3, 2)}, [(1, 4, 2)])]


@register
class ZeroPad(Layer):
    category = "reshape"
    doc = "Adds zeros around (C, L) signals or (C, H, W) images: L + P_left + P_right, H + P_top + P_bottom, …"
    hparams = (HP("pad", "ints", (1,), min=0, max=255,
                  doc="P on every side; (P_left, P_right) for (C, L); (P_h, P_w) or (top, bottom, left, right) for (C, H, W)"),)
    fused = None

    def sides(self, rank):
        """((before, after) per spatial axis) for a (C, L) (rank 1) or (C, H, W) (rank 2) input."""
        v = self.config["pad"]
        if len(v) == 1:
            return ((v[0], v[0]),) * rank
        if rank == 1 and len(v) == 2:
            return (tuple(v),)
        if rank == 2 and len(v) == 2:
            return (v[0], v[0]), (v[1], v[1])
        if rank == 2 and len(v) == 4:
            return (v[0], v[1]), (v[2], v[3])
        raise ConfigError(f"{self.where}: pad takes one value, or " + ("two (left, right) for a (C, L) signal" if rank == 1
                          else "two (P_h, P_w) or four (top, bottom, left, right) for a (C, H, W) image") + f"; got {v!r}")

    def compute_output_shape(self, in_shapes):
        s = in_shapes[0]
        if len(s) not in (2, 3):
            if len(s) == 1:
                spatial_input(self, in_shapes)                                 # an image's Reshape fix
            raise ShapeError(f"{self.where} needs channels first, (C, L) or (C, H, W), but got {fmt(s)}")
        return (s[0],) + tuple(n + a + b for n, (a, b) in zip(s[1:], self.sides(len(s) - 1)))

    def formulas(self, in_shapes):
        s, out = in_shapes[0], self.compute_output_shape(in_shapes)
        names = ("L",) if len(s) == 2 else ("H", "W")
        lines = "; ".join(f"{a}_out = {a} + {a}_before + {a}_after = {n} + {p} + {q} = {m}" for a, n, (p, q), m
                          in zip(names, s[1:], self.sides(len(s) - 1), out[1:]))
        return {"shape": f"{lines} → {fmt(out)}", "params": "no trainable parameters = 0",
                "macs": "no multiply-adds (copies) = 0"}

    def _inner(self, a):
        sides = self.sides(len(self.in_shapes[0]) - 1)
        return a[(slice(None), slice(None)) + tuple(slice(p, p + n) for (p, _), n in zip(sides, self.in_shapes[0][1:]))]

    def forward(self, x, training=False):
        y = np.zeros((len(x),) + self.out_shape, x.dtype)
        self._inner(y)[...] = x
        return y

    def backward(self, dy):
        dx = k.scratch(self, "dx", (len(dy),) + self.in_shapes[0], dy.dtype)
        dx[...] = self._inner(dy)
        return (dx,)

    def _flat(self):
        """The padding as PyTorch's F.pad wants it: last axis first, (before, after) each."""
        return tuple(v for side in reversed(self.sides(len(self.in_shapes[0]) - 1)) for v in side)

    def to_onnx(self, ctx, ins):
        sides = self.sides(len(self.in_shapes[0]) - 1)
        pads = [0, 0] + [a for a, _ in sides] + [0, 0] + [b for _, b in sides]        # begins of every axis, then ends
        return ctx.op("Pad", [ins[0], ctx.const(f"{self.name}/pads", pads, np.int64)], self.name, mode="constant")

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        r = len(self.in_shapes[0]) - 1
        return Emitted(f"nn.ConstantPad{r}d({self._flat()}, 0.0)")

    def torch_reference(self, xs, p, torch):
        return torch.nn.functional.pad(xs[0], self._flat())

    @classmethod
    def samples(cls):
        return [({}, [(2, 5)]), ({"pad": (2, 0)}, [(1, 4)]), ({}, [(2, 3, 4)]), ({"pad": (1, 2)}, [(1, 3, 3)]),
                ({"pad": (0, 1, 2, 3)}, [(2, 2, 3)])]
