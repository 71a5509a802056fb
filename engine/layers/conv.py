"""Conv2D on NCHW tensors (spec §3, §11) and the output-size formula shared with pooling."""
from math import isqrt, prod

import numpy as np

from .. import parallel
from ..errors import ConfigError, ShapeError
from ..hparams import HP
from ..initializers import INITS
from . import conv_kernels as k
from .base import Fix, Layer, Param, fmt, register


def pair(layer, name):
    """A 1- or 2-value 'ints' hyperparameter as (h, w)."""
    v = layer.config[name]
    if len(v) not in (1, 2):
        raise ConfigError(f"{layer.where}: {name} takes one value or two (height, width), got {v!r}")
    return (v[0], v[0]) if len(v) == 1 else tuple(v)


def out_size(layer, axis, n, p, kk, s, fix=None):
    """Spec §3: ⌊(n + 2p − k)/s⌋ + 1, or a ShapeError that shows the formula with the user's numbers."""
    law = f"{axis}_out = ⌊({axis}_in + 2·P_{axis.lower()} − K_{axis.lower()})/S_{axis.lower()}⌋ + 1"
    if s < 1:
        raise ShapeError(f"{layer.where}: stride S_{axis.lower()} = {s} but it must be at least 1 "
                         f"({law} divides by it)", fix=Fix("set", "set stride to 1", config=(("stride", (1,)),)))
    o = (n + 2 * p - kk) // s + 1
    if n + 2 * p - kk < 0:
        raise ShapeError(f"{layer.where}: {law} = ⌊({n} + 2·{p} − {kk})/{s}⌋ + 1 = {o} is empty: the "
                         f"{kk}-wide kernel is larger than the {n + 2 * p}-wide (padded) input"
                         + (f"; {fix.text}" if fix else ""), fix=fix)
    return o


def spatial_input(layer, in_shapes):
    """(C, H, W) of a layer that needs an image-like input, with a Reshape fix for square flat inputs."""
    s = in_shapes[0]
    if len(s) != 3:
        fix = None
        if len(s) == 1 and isqrt(s[0]) ** 2 == s[0]:
            r = isqrt(s[0])
            fix = Fix("insert_before", f"insert a Reshape to (1, {r}, {r}) before it", "Reshape",
                      (("shape", (1, r, r)),))
        raise ShapeError(f"{layer.where} needs an image-like input (channels, height, width) but got {fmt(s)}"
                         + (f": {fix.text}" if fix else ""), fix=fix)
    return s


@register
class Conv2D(Layer):
    category = "convolution"
    doc = "2-D convolution (C_in, H, W) → (filters, H_out, W_out), H_out = ⌊(H + 2P − K)/S⌋ + 1."
    hparams = (
        HP("filters", "int", 8, min=1, max=4096, doc="Output channels C_out"),
        HP("kernel_size", "ints", (3,), min=1, max=255, doc="K or K_h, K_w"),
        HP("stride", "ints", (1,), min=0, max=255, doc="S or S_h, S_w"),
        HP("padding", "choice", "valid", choices=("valid", "same", "explicit"),
           doc="valid: none; same: P = (K − 1)/2 (odd kernels; keeps H, W at stride 1); explicit: use pad"),
        HP("pad", "ints", (0,), min=0, max=255, doc="P or P_h, P_w zeros on each side when padding is explicit"),
        HP("use_bias", "bool", True, doc="Add a learned bias per output channel"),
        HP("init", "choice", "he_uniform", choices=INITS, doc="Weight initialisation: He variance 2/n_in suits ReLU; Glorot 2/(n_in + n_out)"),
    )

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        self.k, self.s = pair(self, "kernel_size"), pair(self, "stride")
        self.pad_hw = pair(self, "pad")

    def padding(self):
        """(P_h, P_w), or a ShapeError when 'same' needs a whole-number (K − 1)/2."""
        mode = self.config["padding"]
        if mode == "valid":
            return 0, 0
        if mode == "explicit":
            return self.pad_hw
        for axis, kk in zip("hw", self.k):
            if kk % 2 == 0:
                odd = tuple(v + 1 if v % 2 == 0 else v for v in self.k)
                raise ShapeError(f"{self.where}: same padding needs P_{axis} = (K_{axis} − 1)/2 = ({kk} − 1)/2 = "
                                 f"{(kk - 1) / 2} to be a whole number: use an odd kernel",
                                 fix=Fix("set", f"set kernel_size to {odd[0]}×{odd[1]}",
                                         config=(("kernel_size", odd),)))
        return (self.k[0] - 1) // 2, (self.k[1] - 1) // 2

    def compute_output_shape(self, in_shapes):
        c, h, w = spatial_input(self, in_shapes)
        (ph, pw), (kh, kw), (sh, sw) = self.padding(), self.k, self.s
        fix = None if self.config["padding"] == "same" else Fix("set", "set padding to same",
                                                                 config=(("padding", "same"),))
        return self.config["filters"], out_size(self, "H", h, ph, kh, sh, fix), out_size(self, "W", w, pw, kw, sw, fix)

    def params(self, in_shapes):
        o, c = self.config["filters"], in_shapes[0][0]
        ps = {"W": Param((o, c) + self.k, self.config["init"], decay=True)}   # (C_out, C_in, K_h, K_w)
        if self.config["use_bias"]:
            ps["b"] = Param((o,), "zeros")
        return ps

    def macs(self, in_shapes):
        o, ho, wo = self.compute_output_shape(in_shapes)
        return o * ho * wo * in_shapes[0][0] * prod(self.k)                    # C_out·H_out·W_out·C_in·K_h·K_w

    fused = None          # runs on the per-layer path

    def kernel_stride(self):
        return self.k, self.s

    def formulas(self, in_shapes):
        c, h, w = in_shapes[0]
        o, ho, wo = self.compute_output_shape(in_shapes)
        (ph, pw), (kh, kw), (sh, sw) = self.padding(), self.k, self.s
        shape = (f"H_out = ⌊(H + 2P − K)/S⌋ + 1 = ⌊({h} + 2·{ph} − {kh})/{sh}⌋ + 1 = {ho}; "
                 f"W_out = ⌊({w} + 2·{pw} − {kw})/{sw}⌋ + 1 = {wo} → {fmt((o, ho, wo))}")
        n = o * c * kh * kw
        params = (f"C_out·C_in·K_h·K_w + C_out = {o}·{c}·{kh}·{kw} + {o} = {n + o:,}" if self.config["use_bias"]
                  else f"C_out·C_in·K_h·K_w = {o}·{c}·{kh}·{kw} = {n:,}")
        macs = f"C_out·H_out·W_out·C_in·K_h·K_w = {o}·{ho}·{wo}·{c}·{kh}·{kw} = {o * ho * wo * c * kh * kw:,}"
        return {"shape": shape, "params": params, "macs": macs}

    def build(self, in_shapes):
        super().build(in_shapes)
        self.pads = self.padding()

    def _layout(self, xpshape):
        """(row pitch, columns per sample) of the GEMM's output: 'wide' rows of the padded input at stride 1."""
        HO, WO = self.out_shape[1:]
        if self.s == (1, 1):
            return xpshape[3], (HO - 1) * xpshape[3] + WO
        return WO, HO * WO

    SUB = 128 << 10        # bytes of patches (im2col columns) per GEMM: they stay in the core's cache

    def forward(self, x, training=False):
        B, C, H, W = x.shape
        (ph, pw), (O, HO, WO), (kh, kw), (sh, sw) = self.pads, self.out_shape, self.k, self.s
        x = np.ascontiguousarray(x)
        padded = bool(ph or pw)
        xp = k.scratch(self, "xp", (B, C, H + 2 * ph, W + 2 * pw), x.dtype, zero=True) if padded else x
        wrow, L = self._layout(xp.shape)
        W2 = np.ascontiguousarray(self.p["W"].reshape(O, -1))              # (C_out, C_in·K_h·K_w)
        b = self.p["b"] if "b" in self.p else k.scratch(self, "b0", (O,), x.dtype, zero=True)
        y = k.scratch(self, "y", (B, O, HO, WO), x.dtype) if training else np.empty((B, O, HO, WO), x.dtype)
        R = W2.shape[1]
        self.sub = max(1, self.SUB // (R * L * x.itemsize))                  # samples per GEMM
        parts = self.parts = parallel.chunks(B, R * L * x.itemsize)

        def part(i):
            a, e = parts[i]
            n = min(self.sub, e - a) * L
            k.conv_fwd(x[a:e], xp[a:e], W2, b, y[a:e], k.scratch(self, ("col", i), (R * n,), x.dtype),
                       k.scratch(self, ("y2", i), (O * n,), x.dtype), kh, kw, sh, sw, ph, pw, wrow, L, self.sub)
        parallel.run(part, range(len(parts)))
        self.xp, self.xshape = xp, x.shape
        return y

    def backward(self, dy):
        O = dy.shape[1]
        (ph, pw), (kh, kw), (sh, sw) = self.pads, self.k, self.s
        xp, parts = self.xp, self.parts
        wrow, L = self._layout(xp.shape)
        dy = np.ascontiguousarray(dy)
        W2T = np.ascontiguousarray(self.p["W"].reshape(O, -1).T)           # (C_in·K_h·K_w, C_out)
        R = W2T.shape[0]
        padded = bool(ph or pw)
        dxp = k.scratch(self, "dxp", xp.shape if self.need_dx else (0,) * 4, dy.dtype)  # x.shape when unpadded; empty: no dx
        dx = k.scratch(self, "dx", self.xshape, dy.dtype) if self.need_dx and padded else dxp

        def part(i, o):                                                 # samples a … e−1; o: their dW, db
            a, e = parts[i]
            n = min(self.sub, e - a) * L
            k.conv_bwd(dy[a:e], xp[a:e], W2T, o[:O * R].reshape(O, R), o[O * R:], dxp[a:e], dx[a:e],
                       k.scratch(self, ("col", i), (R * n,), dy.dtype), k.scratch(self, ("dy2", i), (O * n,), dy.dtype),
                       k.scratch(self, ("dw", i), (O, R), dy.dtype), kh, kw, sh, sw, ph, pw, wrow, L, self.sub,
                       self.need_dx)
        tot = k.chunk_sum(self, len(parts), O * R + O, dy.dtype, part)    # in chunk order: thread-independent
        self.g["W"].reshape(-1)[...] = tot[:O * R]
        if "b" in self.g:
            self.g["b"][...] = tot[O * R:]
        return (dx if self.need_dx else None,)

    @classmethod
    def samples(cls):
        return [
            ({"filters": 2, "kernel_size": (3,)}, [(1, 5, 5)]),
            ({"filters": 3, "kernel_size": (3, 2), "padding": "explicit", "pad": (1, 2)}, [(2, 4, 3)]),
            ({"filters": 2, "kernel_size": (3,), "stride": (2,), "padding": "same"}, [(2, 5, 6)]),
            ({"filters": 2, "kernel_size": (2, 3), "stride": (2, 1), "use_bias": False}, [(3, 5, 4)]),
            ({"filters": 3, "kernel_size": (1,), "padding": "explicit", "pad": (1,)}, [(2, 3, 2)]),
            ({"filters": 2, "kernel_size": (2,), "stride": (3, 2), "padding": "explicit", "pad": (2, 1)}, [(1, 4, 5)]),
        ]
