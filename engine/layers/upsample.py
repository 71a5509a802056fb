"""Upsample2D (nearest, bilinear, bicubic; ONNX Resize's coordinate modes) and ZeroPad (constant, reflect, edge, wrap)
on channels-first data."""
from fractions import Fraction
from math import floor

import numpy as np

from ..errors import ConfigError, ShapeError
from ..hparams import HP
from . import conv_kernels as k
from .base import Layer, fmt, register
from .conv import ints, spatial_input
from .resize import COORDS, TORCH_RESIZE, resize_matrix


@register
class Upsample2D(Layer):
    category = "reshape"
    doc = ("Resizes (C, H, W) to (C, S_h·H, S_w·W) (or a given size, or a scale that is not a whole number): nearest "
           "copies each value, bilinear and bicubic interpolate along H and W (PyTorch's and ONNX Resize's "
           "definitions, y = A_h·x·A_wᵀ per channel).")
    hparams = (HP("scale", "ints", (2,), min=1, max=64, doc="S or S_h, S_w: whole-number scale factors"),
               HP("mode", "choice", "nearest", choices=("nearest", "bilinear", "bicubic"),
                  doc="nearest, bilinear, or bicubic (Keys' cubic with coefficient a)"),
               HP("coordinate_transformation_mode", "choice", "half_pixel", choices=COORDS,
                  doc="where output i reads (bilinear, bicubic): half_pixel x = (i + ½)/S − ½; align_corners "
                      "x = i·(H − 1)/(H_out − 1); asymmetric x = i/S; pytorch_half_pixel: half_pixel, −½ when H_out = 1"),
               HP("cubic_coeff_a", "float", -0.75, min=-2.0, max=0.0,
                  doc="a of the cubic kernel W(d) = (a+2)|d|³ − (a+3)|d|² + 1 for |d| ≤ 1 (PyTorch −0.75, PIL −0.5)"),
               HP("exclude_outside", "bool", False,
                  doc="Taps outside the image get weight 0 and the rest are renormalised (else: the edge value)"),
               HP("antialias", "bool", False,
                  doc="When shrinking, stretch the kernel over 1/S inputs and normalise its weights"),
               HP("size", "ints", (0,), min=0, max=65536, doc="H_out, W_out instead of a scale (0: from the scale)"),
               HP("scale_factor", "float", 0.0, min=0.0, max=64.0,
                  doc="A scale that is not a whole number, both axes: H_out = ⌊f·H⌋ (0: use scale)"))
    fused = None

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        self.sc = ints(self, "scale", 2)
        size = self.config["size"]
        if size != (0,) and (len(size) not in (1, 2) or min(size) < 1):
            raise ConfigError(f"{self.where}: size takes H_out (square) or H_out, W_out, each ≥ 1; got {size!r}")
        self.size = None if size == (0,) else tuple(size) * (2 // len(size))

    def _scales(self, h, w):
        """(s_h, s_w) the coordinates use: the whole-number or fractional scale, or None for a given size."""
        if self.size:
            return None, None
        f = self.config["scale_factor"]
        return (f, f) if f else (float(self.sc[0]), float(self.sc[1]))

    def compute_output_shape(self, in_shapes):
        c, h, w = spatial_input(self, in_shapes)
        self._hw = h, w
        f = self.config["scale_factor"]
        out = self.size or ((floor(f * h), floor(f * w)) if f else (h * self.sc[0], w * self.sc[1]))
        if min(out) < 1:
            raise ShapeError(f"{self.where}: a scale of {f} makes {fmt((h, w))} {fmt(out)}; "
                             "H_out and W_out must be ≥ 1")
        return (c,) + tuple(out)

    def _whole(self):
        """Nearest by the whole-number scale: np.repeat."""
        return self.config["mode"] == "nearest" and not self.size and not self.config["scale_factor"]

    def _taps(self):
        """Inputs one output reads along each axis (bilinear 2, bicubic 4, more when antialiasing a shrink)."""
        mode = self.config["mode"]
        if mode == "nearest":
            return 1, 1
        h, w = getattr(self, "_hw", (None, None))
        out = []
        for n, m, s in zip((h, w), self.size or (None, None), self._scales(h, w)):
            s = s if s is not None else (m / n if n else 1.0)
            if s == 1 and not self.config["antialias"]:
                out.append(1)
                continue
            sa = min(s, 1.0) if self.config["antialias"] else 1.0
            start = floor(-(2 if mode == "bicubic" else 1) / sa) + 1
            out.append(2 - 2 * start)
        return tuple(out)

    def macs(self, in_shapes):
        out = self.compute_output_shape(in_shapes)
        if self.config["mode"] == "nearest":
            return 0
        th, tw = self._taps()
        return (tw * in_shapes[0][1] * out[2] + th * out[1] * out[2]) * out[0] if self.config["mode"] == "bicubic" \
            else 4 * int(np.prod(out))

    def kernel_stride(self):
        """Nearest reads 1 input, bilinear its 2 neighbours, bicubic 4 (1 at scale 1); step 1/S (in/out for a size)."""
        e, mode = self._taps(), self.config["mode"]
        why = tuple(f"{n} ({mode} reads {'one input' if n == 1 else f'{n} neighbours'})" for n in e)
        if self.size:
            h, w = getattr(self, "_hw", (1, 1))
            step = (Fraction(h, self.size[0]), Fraction(w, self.size[1]))
        elif self.config["scale_factor"]:
            step = (1 / Fraction(self.config["scale_factor"]).limit_denominator(1 << 16),) * 2
        else:
            step = tuple(Fraction(1, s) for s in self.sc)
        return e, step, why

    def formulas(self, in_shapes):
        c, h, w = in_shapes[0]
        out = self.compute_output_shape(in_shapes)
        f, m = self.config["scale_factor"], self.macs(in_shapes)
        if self.size:
            shape = f"H_out, W_out = size = {out[1]}, {out[2]}"
        elif f:
            shape = f"H_out = ⌊f·H⌋ = ⌊{f:g}·{h}⌋ = {out[1]}; W_out = ⌊f·W⌋ = ⌊{f:g}·{w}⌋ = {out[2]}"
        else:
            (sh, sw) = self.sc
            shape = f"H_out = S_h·H = {sh}·{h} = {out[1]}; W_out = S_w·W = {sw}·{w} = {out[2]}"
        if self.config["mode"] == "bicubic":
            (th, tw), a = self._taps(), self.config["cubic_coeff_a"]
            macs = (f"W(d) = {a + 2:g}|d|³ − {a + 3:g}|d|² + 1 for |d| ≤ 1, {a:g}|d|³ + {-5 * a:g}|d|² + {8 * a:g}|d| + "
                    f"{-4 * a:g} for 1 < |d| < 2 (a = {a:g}); C·({tw}·H·W_out + {th}·H_out·W_out) = "
                    f"{c}·({tw}·{h}·{out[2]} + {th}·{out[1]}·{out[2]}) = {m:,}")
        else:
            macs = f"4·C·H_out·W_out = 4·{c}·{out[1]}·{out[2]} = {m:,}" if m else "no multiply-adds (copies) = 0"
        return {"shape": f"{shape} → {fmt(out)}", "params": "no trainable parameters = 0", "macs": macs}

    def build(self, in_shapes):
        super().build(in_shapes)
        self.A = {}

    def _mats(self, dtype):
        """(A_h, A_w): y = A_h x A_wᵀ per channel."""
        if dtype not in self.A:
            (_, h, w), (_, ho, wo) = self.in_shapes[0], self.out_shape
            cfg = self.config
            kw = dict(coords=cfg["coordinate_transformation_mode"], a=cfg["cubic_coeff_a"],
                      exclude_outside=cfg["exclude_outside"], antialias=cfg["antialias"])
            sh, sw = self._scales(h, w)
            self.A[dtype] = (resize_matrix(h, ho, sh, cfg["mode"], **kw).astype(dtype),
                             resize_matrix(w, wo, sw, cfg["mode"], **kw).astype(dtype))
        return self.A[dtype]

    def forward(self, x, training=False):
        sh, sw = self.sc
        if self._whole():
            return np.repeat(np.repeat(x, sh, axis=2), sw, axis=3)
        Ah, Aw = self._mats(x.dtype)
        return np.ascontiguousarray(Ah @ (x @ Aw.T))                           # (B, C, H_out, W_out)

    def backward(self, dy):
        (sh, sw), (c, h, w) = self.sc, self.in_shapes[0]
        if self._whole():
            return (dy.reshape(len(dy), c, h, sh, w, sw).sum(axis=(3, 5)),)      # (B, C, H, W)
        Ah, Aw = self._mats(dy.dtype)
        return (np.ascontiguousarray(Ah.T @ (dy @ Aw)),)                         # (B, C, H, W)

    # ---- exporters ----
    def _torch_kwargs(self):
        """F.interpolate's / nn.Upsample's keywords when PyTorch computes the same, else None (the Resize2D weights)."""
        cfg, mode = self.config, self.config["mode"]
        ctm = cfg["coordinate_transformation_mode"]
        if mode == "nearest":
            return {"scale_factor": tuple(float(v) for v in self.sc), "mode": "nearest"} if self._whole() else None
        if (cfg["exclude_outside"] or cfg["antialias"] or ctm == "asymmetric" or
                (mode == "bicubic" and cfg["cubic_coeff_a"] != -0.75) or
                (ctm == "pytorch_half_pixel" and min(self.out_shape[1:]) == 1)):
            return None
        size = ({"size": self.size} if self.size else {"scale_factor": cfg["scale_factor"]} if cfg["scale_factor"]
                else {"scale_factor": tuple(float(v) for v in self.sc)})
        return {**size, "mode": mode, "align_corners": ctm == "align_corners"}

    def to_onnx(self, ctx, ins):
        n, cfg = self.name, self.config
        if self._whole():
            scales = ctx.const(f"{n}/scales", [1.0, 1.0, *self.sc])
            return ctx.op("Resize", [ins[0], "", scales], n, mode="nearest", coordinate_transformation_mode="asymmetric",
                          nearest_mode="floor")
        if cfg["antialias"] or cfg["mode"] == "nearest":                     # opset 17's Resize has no antialias
            Ah, Aw = self._mats(np.float32)
            xw = ctx.op("MatMul", [ins[0], ctx.const(f"{n}/A_w_T", Aw.T)], f"{n}/along_w")   # (B, C, H, W_out)
            return ctx.op("MatMul", [ctx.const(f"{n}/A_h", Ah), xw], n)                      # (B, C, H_out, W_out)
        attrs = dict(mode="cubic" if cfg["mode"] == "bicubic" else "linear",
                     coordinate_transformation_mode=cfg["coordinate_transformation_mode"])
        if cfg["mode"] == "bicubic":
            attrs.update(cubic_coeff_a=cfg["cubic_coeff_a"], exclude_outside=int(cfg["exclude_outside"]))
        if self.size:                                                          # sizes: (N, C) of x, then H_out, W_out
            nc = ctx.op("Slice", [ctx.op("Shape", [ins[0]], f"{n}/shape"), ctx.const(f"{n}/0", [0], np.int64),
                                  ctx.const(f"{n}/2", [2], np.int64)], f"{n}/batch_channels")
            sizes = ctx.op("Concat", [nc, ctx.const(f"{n}/hw", self.size, np.int64)], f"{n}/sizes", axis=0)
            return ctx.op("Resize", [ins[0], "", "", sizes], n, **attrs)
        sh, sw = self._scales(*self.in_shapes[0][1:])
        return ctx.op("Resize", [ins[0], "", ctx.const(f"{n}/scales", [1.0, 1.0, sh, sw])], n, **attrs)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        kw = self._torch_kwargs()
        if kw is not None:
            return Emitted("nn.Upsample(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")")
        (_, h, w), (_, ho, wo) = self.in_shapes[0], self.out_shape
        Ah, Aw = self._mats(np.float32)
        return Emitted(f"Resize2D({ho}, {h}, {wo}, {w})", extra={"A_h": Ah, "A_w": Aw}, helpers=("Resize2D",),
                       sources={"Resize2D": TORCH_RESIZE})

    def torch_reference(self, xs, p, torch):
        kw = self._torch_kwargs()
        if kw is None:                                                        # PyTorch has no such mode: the weights
            Ah, Aw = (torch.tensor(a) for a in self._mats(np.float64))
            return Ah @ xs[0] @ Aw.T
        return torch.nn.functional.interpolate(xs[0], **kw)

    @classmethod
    def samples(cls):
        return [({}, [(2, 3, 4)]), ({"scale": (3, 2)}, [(1, 2, 3)]), ({"mode": "bilinear"}, [(2, 3, 4)]),
                ({"mode": "bilinear", "scale": (3, 2)}, [(1, 4, 2)]),
                ({"mode": "bicubic"}, [(2, 3, 4)]), ({"mode": "bicubic", "scale": (3, 2)}, [(1, 4, 3)]),
                ({"mode": "bicubic", "coordinate_transformation_mode": "align_corners"}, [(1, 4, 3)]),
                ({"mode": "bicubic", "size": (3, 7)}, [(2, 5, 4)]),
                ({"mode": "bicubic", "scale_factor": 0.8}, [(1, 5, 6)]),
                ({"mode": "bicubic", "cubic_coeff_a": -0.5, "exclude_outside": True,
                  "coordinate_transformation_mode": "asymmetric"}, [(1, 4, 5)]),
                ({"mode": "bicubic", "antialias": True, "size": (3, 2)}, [(2, 7, 5)]),
                ({"mode": "bilinear", "coordinate_transformation_mode": "align_corners", "size": (5, 7)}, [(1, 3, 4)]),
                ({"mode": "nearest", "size": (5, 3)}, [(1, 3, 4)])]


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
