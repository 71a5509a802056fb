"""Upsample2D (nearest, bilinear as PyTorch with align_corners=False) and ZeroPad (constant, reflect, edge, wrap)
on channels-first data."""
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


PAD_MODES = ("constant", "reflect", "edge", "wrap")
TORCH_PAD = {"constant": "Constant", "reflect": "Reflection", "edge": "Replication", "wrap": "Circular"}


def pad_index(n, b, e, mode):
    """(b + n + e,) input position each output position copies along one axis: reflect (no edge repeat), edge, wrap."""
    j = np.arange(-b, n + e)
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j > n - 1, 2 * (n - 1) - j, j)
    return np.clip(j, 0, n - 1) if mode == "edge" else j % n


@register
class ZeroPad(Layer):
    category = "reshape"
    doc = ("Pads (C, L) signals or (C, H, W) images: L + P_left + P_right, H + P_top + P_bottom, …; with zeros or a "
           "fill value (constant), the mirror image without the edge (reflect), the edge value (edge) or the other end (wrap).")
    hparams = (HP("pad", "ints", (1,), min=0, max=255,
                  doc="P on every side; (P_left, P_right) for (C, L); (P_h, P_w) or (top, bottom, left, right) for (C, H, W)"),
               HP("mode", "choice", "constant", choices=PAD_MODES,
                  doc="constant (the fill value), reflect (x₁ x₀ | x₀ x₁ …), edge (x₀ x₀ | x₀ …), wrap (… x_{n−1} | x₀ …)"),
               HP("value", "float", 0.0, doc="Fill value of constant padding"))
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
        sides, mode = self.sides(len(s) - 1), self.config["mode"]
        most = {"reflect": lambda n: n - 1, "wrap": lambda n: n}.get(mode)
        for a, n, (b, e) in zip(("L",) if len(s) == 2 else ("H", "W"), s[1:], sides):
            if most and max(b, e) > most(n):
                raise ShapeError(f"{self.where}: {mode} padding of {max(b, e)} on a {a} of {n} reaches past the other "
                                 f"side; at most {most(n)} ({a} − 1 for reflect, {a} for wrap)")
        return (s[0],) + tuple(n + a + b for n, (a, b) in zip(s[1:], sides))

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

    def _index(self):
        """Per spatial axis, the input position each output position copies (modes other than constant)."""
        sides, mode = self.sides(len(self.in_shapes[0]) - 1), self.config["mode"]
        return [pad_index(n, b, e, mode) for n, (b, e) in zip(self.in_shapes[0][1:], sides)]

    def forward(self, x, training=False):
        if self.config["mode"] != "constant":
            for ax, idx in enumerate(self._index(), start=2):
                x = np.take(x, idx, axis=ax)                                   # (B, C, …, n + b + e, …)
            return np.ascontiguousarray(x)
        y = np.full((len(x),) + self.out_shape, self.config["value"], x.dtype)
        self._inner(y)[...] = x
        return y

    def backward(self, dy):
        if self.config["mode"] != "constant":
            g, shape = dy, list(dy.shape)
            for ax, (idx, n) in reversed(list(enumerate(zip(self._index(), self.in_shapes[0][1:]), start=2))):
                shape[ax] = n
                d = np.zeros(shape, dy.dtype)
                np.add.at(d, (slice(None),) * ax + (idx,), g)                  # each copy's gradient back to its source
                g = d
            return (g,)
        dx = k.scratch(self, "dx", (len(dy),) + self.in_shapes[0], dy.dtype)
        dx[...] = self._inner(dy)
        return (dx,)

    def _flat(self):
        """The padding as PyTorch's F.pad wants it: last axis first, (before, after) each."""
        return tuple(v for side in reversed(self.sides(len(self.in_shapes[0]) - 1)) for v in side)

    def to_onnx(self, ctx, ins):
        mode, n = self.config["mode"], self.name
        if mode == "wrap":                                                     # Pad's wrap needs opset 19: gathers
            x = ins[0]
            for ax, idx in enumerate(self._index(), start=2):
                x = ctx.op("Gather", [x, ctx.const(f"{n}/index{ax}", idx, np.int64)], n if ax == len(self.in_shapes[0])
                           else f"{n}/axis{ax}", axis=ax)
            return x
        sides = self.sides(len(self.in_shapes[0]) - 1)
        pads = [0, 0] + [a for a, _ in sides] + [0, 0] + [b for _, b in sides]        # begins of every axis, then ends
        fill = [ctx.const(f"{n}/value", self.config["value"])] if mode == "constant" and self.config["value"] else []
        return ctx.op("Pad", [ins[0], ctx.const(f"{n}/pads", pads, np.int64)] + fill, n, mode=mode)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        r, mode = len(self.in_shapes[0]) - 1, self.config["mode"]
        value = f", {self.config['value']!r}" if mode == "constant" else ""
        return Emitted(f"nn.{TORCH_PAD[mode]}Pad{r}d({self._flat()}{value})")

    def torch_reference(self, xs, p, torch):
        mode = {"edge": "replicate", "wrap": "circular"}.get(self.config["mode"], self.config["mode"])
        if mode == "constant":
            return torch.nn.functional.pad(xs[0], self._flat(), value=self.config["value"])
        return torch.nn.functional.pad(xs[0], self._flat(), mode=mode)

    @classmethod
    def samples(cls):
        return [({}, [(2, 5)]), ({"pad": (2, 0)}, [(1, 4)]), ({}, [(2, 3, 4)]), ({"pad": (1, 2)}, [(1, 3, 3)]),
                ({"pad": (0, 1, 2, 3)}, [(2, 2, 3)]), ({"pad": (1, 2), "value": -1.5}, [(2, 3, 4)]),
                ({"pad": (2, 1), "mode": "reflect"}, [(2, 4)]), ({"pad": (1, 2, 0, 3), "mode": "reflect"}, [(2, 3, 4)]),
                ({"pad": (2, 0), "mode": "edge"}, [(1, 3)]), ({"pad": (2, 1, 1, 2), "mode": "edge"}, [(2, 3, 4)]),
                ({"pad": (3, 1), "mode": "wrap"}, [(2, 3)]), ({"pad": (0, 2, 3, 1), "mode": "wrap"}, [(1, 3, 4)])]
