"""Convolution of any rank on channels-first data (spec §3, §11): the shared ConvND (groups, dilation, im2col and
one GEMM per group) and Conv2D, which keeps its own fast kernels for groups = 1, dilation = 1."""
from math import prod

import numpy as np

from .. import parallel
from ..errors import ShapeError
from ..receptive import dilated_extent, dilated_why
from . import conv_kernels as k
from . import conv_gemm, conv_shift
from . import convnd_kernels as nd
from .base import Fix, Layer, Param, fmt, register
from .conv_shapes import (AXES, AXIS_NAMES, conv_hparams, ints, out_size, pair,  # noqa: F401  (re-exported)
                          size_line, spatial_input)


class ConvND(Layer):
    """Convolution of rank `rank` on (C, *spatial) (PyTorch's weight layout (C_out, C_in/g, *K)); subclasses set
    rank and may map their input to channels-first (channels_first / arrange)."""

    category = "convolution"
    rank = 2
    SUB = 128 << 10       # bytes of patches (im2col columns) per GEMM: they stay in the core's cache

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        r = self.rank
        self.k, self.s, self.dil = ints(self, "kernel_size", r), ints(self, "stride", r), ints(self, "dilation", r)
        self.pad_n = ints(self, "pad", r)

    # ---- analysis ----
    def channels_first(self, shape):
        """(C, *spatial) of the input (a subclass may transpose a sequence)."""
        return spatial_input(self, [shape], self.rank)

    def arrange(self, shape):
        """The output shape from channels-first (C_out, *spatial)."""
        return tuple(shape)

    def padding(self):
        """P per axis, or a ShapeError when 'same' needs a whole-number d·(K − 1)/2."""
        mode = self.config["padding"]
        if mode == "valid":
            return (0,) * self.rank
        if mode == "explicit":
            return self.pad_n
        for axis, kk, d in zip(AXES[self.rank], self.k, self.dil):
            if d * (kk - 1) % 2:
                a = axis.lower()
                odd = tuple(v + 1 if v % 2 == 0 else v for v in self.k)
                law = f"P_{a} = (K_{a} − 1)/2 = ({kk} − 1)/2" if d == 1 else f"P_{a} = d_{a}·(K_{a} − 1)/2 = {d}·({kk} − 1)/2"
                raise ShapeError(f"{self.where}: same padding needs {law} = {d * (kk - 1) / 2} to be a whole number: "
                                 f"use an odd kernel", fix=Fix("set", f"set kernel_size to {'×'.join(map(str, odd))}",
                                                               config=(("kernel_size", odd),)))
        return tuple(d * (kk - 1) // 2 for kk, d in zip(self.k, self.dil))

    def _groups(self, c):
        """g, or a ShapeError with the nearest g that divides both C_in and C_out."""
        g, o = self.config["groups"], self.config["filters"]
        if c % g or o % g:
            ok = max(v for v in range(1, g + 1) if c % v == 0 and o % v == 0)
            raise ShapeError(f"{self.where}: groups g = {g} must divide both C_in = {c} and C_out = {o} "
                             f"(each group convolves C_in/g channels into C_out/g): set groups to {ok}",
                             fix=Fix("set", f"set groups to {ok}", config=(("groups", ok),)))
        return g

    def _out(self, in_shape):
        """(C_in, spatial, spatial_out) of this input, or a ShapeError."""
        c, *sp = self.channels_first(in_shape)
        self._groups(c)
        pads = self.padding()
        fix = None if self.config["padding"] == "same" else Fix("set", "set padding to same", config=(("padding", "same"),))
        out = tuple(out_size(self, a, n, p, kk, s, fix, d) for a, n, p, kk, s, d in
                    zip(AXES[self.rank], sp, pads, self.k, self.s, self.dil))
        return c, tuple(sp), out

    def compute_output_shape(self, in_shapes):
        return self.arrange((self.config["filters"],) + self._out(in_shapes[0])[2])

    def params(self, in_shapes):
        o, c = self.config["filters"], self.channels_first(in_shapes[0])[0]
        ps = {"W": Param((o, c // self.config["groups"]) + self.k, self.config["init"], decay=True)}  # (C_out, C_in/g, *K)
        if self.config["use_bias"]:
            ps["b"] = Param((o,), "zeros")
        return ps

    def macs(self, in_shapes):
        c, _, out = self._out(in_shapes[0])
        return self.config["filters"] * prod(out) * c // self.config["groups"] * prod(self.k)  # C_out·P_out·C_in/g·K

    def kernel_stride(self):
        return dilated_extent(self.k, self.dil), self.s, dilated_why(self.k, self.dil)

    def formulas(self, in_shapes):
        c, sp, out = self._out(in_shapes[0])
        o, g, pads, r = self.config["filters"], self.config["groups"], self.padding(), self.rank
        subs = [""] if r == 1 else [f"_{a.lower()}" for a in AXES[r]]
        shape = "; ".join(size_line(a, n, p, kk, s, d, m, sub=u) for a, n, p, kk, s, d, m, u in
                          zip(AXES[r], sp, pads, self.k, self.s, self.dil, out, subs))
        shape += f" → {fmt(self.arrange((o,) + out))}"
        K = "·".join(f"K{u}" for u in subs)
        kn = "·".join(map(str, self.k))
        cin = "C_in" if g == 1 else "(C_in/g)"
        cn = f"{c}" if g == 1 else f"({c}/{g})"
        n = o * c // g * prod(self.k)
        params = f"C_out·{cin}·{K} = {o}·{cn}·{kn} = {n:,}"
        if self.config["use_bias"]:
            params = f"C_out·{cin}·{K} + C_out = {o}·{cn}·{kn} + {o} = {n + o:,}"
        P = "·".join(f"{a}_out" for a in AXES[r])
        macs = (f"C_out·{P}·{cin}·{K} = {o}·{'·'.join(map(str, out))}·{cn}·{kn} = "
                f"{o * prod(out) * c // g * prod(self.k):,}")
        return {"shape": shape, "params": params, "macs": macs}

    # ---- compute on (B, C, D, H, W) ----
    def build(self, in_shapes):
        super().build(in_shapes)
        self.pads = self.padding()
        out = self._out(self.in_shapes[0])[2]
        self.o3 = (1,) * (3 - self.rank) + out                              # (D_out, H_out, W_out)
        self.geo = tuple((1,) * (3 - self.rank) + t for t in (self.k, self.s, self.dil))
        self.depthwise = self.channels_first(self.in_shapes[0])[0] == self.config["groups"]   # C_in/g = 1: no patches

    def to5(self, x):
        """The input as (B, C, D, H, W) (a view)."""
        return x.reshape(x.shape[:2] + (1,) * (3 - self.rank) + x.shape[2:])

    def padded(self, x5, key="xp"):
        """x5 copied into the interior of a zero-bordered C-contiguous buffer (x5 itself when unpadded, contiguous
        and writable)."""
        pad3 = (0,) * (3 - self.rank) + tuple(self.pads)
        if not any(pad3):
            return np.require(x5, requirements=("C", "W"))               # kernels that may write take it typed writable
        B, C, D, H, W = x5.shape
        xp = k.scratch(self, key, (B, C, D + 2 * pad3[0], H + 2 * pad3[1], W + 2 * pad3[2]), x5.dtype, zero=True)
        xp[:, :, pad3[0]:pad3[0] + D, pad3[1]:pad3[1] + H, pad3[2]:pad3[2] + W] = x5
        return xp

    def conv_forward(self, x5, training):
        """(B, C_out, D_out, H_out, W_out) = W ⋆ x + b on channels-first x5."""
        xp = self.padded(x5)
        O, g = self.config["filters"], self.config["groups"]
        W2 = np.ascontiguousarray(self.p["W"].reshape(O, -1))               # (C_out, C_in/g·K)
        b = self.p["b"] if "b" in self.p else k.scratch(self, "b0", (O,), x5.dtype, zero=True)
        B, P = len(xp), prod(self.o3)
        y = k.scratch(self, "y", (B, O, 1, P), x5.dtype) if training else np.empty((B, O, 1, P), x5.dtype)
        R = W2.shape[1] * g
        self.sub = max(1, self.SUB // (R * P * x5.itemsize))                 # samples per GEMM
        parts = self.parts = parallel.chunks(B, R * P * x5.itemsize)
        kk, s, d = self.geo

        def part(i):
            a, e = parts[i]
            if self.depthwise:
                return nd.dw_fwd(xp[a:e], W2, b, y[a:e], kk, s, d, self.o3)
            n = min(self.sub, e - a) * P
            nd.gconv_fwd(xp[a:e], W2, b, y[a:e], k.scratch(self, ("col", i), (R * n,), x5.dtype),
                         k.scratch(self, ("y2", i), (O * n,), x5.dtype), kk, s, d, self.o3, g, self.sub)
        parallel.run(part, range(len(parts)))
        self.xp, self.x5shape = xp, x5.shape
        return y.reshape((B, O) + self.o3)

    def conv_backward(self, dy5):
        """dx (B, C, D, H, W) or None, with dW, db written into self.g."""
        O, g = self.config["filters"], self.config["groups"]
        xp, parts, B, P = self.xp, self.parts, len(dy5), prod(self.o3)
        dy = np.ascontiguousarray(dy5).reshape(B, O, 1, P)
        W2 = np.ascontiguousarray(self.p["W"].reshape(O, -1))               # (C_out, C_in/g·K)
        Rg = W2.shape[1]
        dxp = k.scratch(self, "dxp", xp.shape, dy.dtype) if self.need_dx else xp
        kk, s, d = self.geo

        def part(i, o):                                                    # samples a … e−1; o: their dW, db
            a, e = parts[i]
            if self.depthwise:
                return nd.dw_bwd(dy[a:e], xp[a:e], W2, o[:O * Rg].reshape(O, Rg), o[O * Rg:], dxp[a:e], kk, s, d,
                                 self.o3, self.need_dx)
            n = min(self.sub, e - a) * P
            nd.gconv_bwd(dy[a:e], xp[a:e], W2, o[:O * Rg].reshape(O, Rg), o[O * Rg:], dxp[a:e],
                         k.scratch(self, ("col", i), (Rg * g * n,), dy.dtype),
                         k.scratch(self, ("dy2", i), (O * n,), dy.dtype), kk, s, d, self.o3, g, self.sub,
                         True, self.need_dx)
        tot = k.chunk_sum(self, len(parts), O * Rg + O, dy.dtype, part)      # in chunk order: thread-independent
        self.g["W"].reshape(-1)[...] = tot[:O * Rg]
        if "b" in self.g:
            self.g["b"][...] = tot[O * Rg:]
        if not self.need_dx:
            return None
        _, _, D, H, W = self.x5shape
        p = (0,) * (3 - self.rank) + tuple(self.pads)
        return dxp[:, :, p[0]:p[0] + D, p[1]:p[1] + H, p[2]:p[2] + W]

    def forward(self, x, training=False):
        y = self.conv_forward(self.to5(x), training)
        return y.reshape((len(x),) + self.out_shape)

    def backward(self, dy):
        dx = self.conv_backward(dy.reshape(dy.shape[:2] + self.o3))
        return (None if dx is None else np.ascontiguousarray(dx).reshape((len(dy),) + self.in_shapes[0]),)

    # ---- exporters: a Conv node / nn.ConvNd of this rank (channels first); groups, dilation, symmetric padding ----
    def to_onnx(self, ctx, ins, out=None):
        n = self.name
        args = [ins[0], ctx.const(f"{n}/W", self.p["W"])] + ([ctx.const(f"{n}/b", self.p["b"])] if "b" in self.p else [])
        return ctx.op("Conv", args, out or n, kernel_shape=list(self.k), strides=list(self.s), pads=list(self.pads) * 2,
                      dilations=list(self.dil), group=self.config["groups"])

    def to_torch(self):
        from ..torch_export.emitters import Emitted, _pair
        c, o, g, r = self.channels_first(self.in_shapes[0])[0], self.config["filters"], self.config["groups"], self.rank
        parts = [f"{c}, {o}", f"kernel_size={_pair(self.k)}"]
        parts += [f"{k}={_pair(v)}" for k, v, d in (("stride", self.s, 1), ("padding", self.pads, 0),
                                                    ("dilation", self.dil, 1)) if tuple(v) != (d,) * r]
        parts += ([f"groups={g}"] if g > 1 else []) + ([] if self.config["use_bias"] else ["bias=False"])
        return Emitted(f"nn.Conv{r}d({', '.join(parts)})", {"W": "weight", "b": "bias"})   # (C_out, C_in/g, *K)

    def torch_reference(self, xs, p, torch):
        f = getattr(torch.nn.functional, f"conv{self.rank}d")
        return f(xs[0], p["W"], p.get("b"), stride=self.s, padding=self.pads, dilation=self.dil,
                 groups=self.config["groups"])


@register
class Conv2D(ConvND):
    doc = ("2-D convolution (C_in, H, W) → (filters, H_out, W_out), H_out = ⌊(H + 2P − d·(K − 1) − 1)/S⌋ + 1; "
           "groups (depthwise at g = C_in) and dilation d.")
    fused = None          # runs on the per-layer path
    rank = 2
    hparams = conv_hparams(2)

    def build(self, in_shapes):
        super().build(in_shapes)
        self.fast = self.config["groups"] == 1 and self.dil == (1, 1)     # the kernels below; else ConvND's
        self.shift = self.fast and conv_shift.fits(self)                  # C_in ≥ 16: a GEMM per kernel tap
        self.gemm = self.shift and conv_gemm.fits(self)                   # … of several samples: stride 1 'same', small

    def _layout(self, xpshape):
        """(row pitch, columns per sample) of the GEMM's output: 'wide' rows of the padded input at stride 1."""
        HO, WO = self.out_shape[1:]
        if self.s == (1, 1):
            return xpshape[3], (HO - 1) * xpshape[3] + WO
        return WO, HO * WO

    def forward(self, x, training=False):
        if not self.fast:
            return super().forward(x, training)
        y, part = self.forward_parts(x, training)
        parallel.run(part, range(len(self.parts)))
        return y

    def forward_parts(self, x, training):
        """(y, part): part(i) writes y for the samples of self.parts[i]; the caller runs the loop (fusion.ConvBNReLUPool
        adds its own work to each part)."""
        if self.shift:
            return (conv_gemm if self.gemm else conv_shift).forward_parts(self, x, training)
        B, C, H, W = x.shape
        (ph, pw), (O, HO, WO), (kh, kw), (sh, sw) = self.pads, self.out_shape, self.k, self.s
        x = np.require(x, requirements=("C", "W"))                         # read-only input: a writable copy
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
        self.xp, self.xshape = xp, x.shape
        return y, part

    def backward(self, dy):
        if not self.fast:
            return super().backward(dy)
        return self.backward_parts(np.ascontiguousarray(dy))

    def backward_parts(self, dy, before=None, after=None):
        """(dx or None,) from C-contiguous dy, dW and db written into self.g; before(i), when given, first fills dy
        for the samples of self.parts[i] in the same loop (fusion.ConvBNReLUPool), after(i, dx) then reads their dx
        (fusion.ConvBlocks)."""
        if self.shift:
            return (conv_gemm if self.gemm else conv_shift).backward_parts(self, dy, before, after)
        O = dy.shape[1]
        (ph, pw), (kh, kw), (sh, sw) = self.pads, self.k, self.s
        xp, parts = self.xp, self.parts
        wrow, L = self._layout(xp.shape)
        W2T = np.ascontiguousarray(self.p["W"].reshape(O, -1).T)           # (C_in·K_h·K_w, C_out)
        R = W2T.shape[0]
        padded = bool(ph or pw)
        dxp = k.scratch(self, "dxp", xp.shape if self.need_dx else (0,) * 4, dy.dtype)  # x.shape when unpadded; empty: no dx
        dx = k.scratch(self, "dx", self.xshape, dy.dtype) if self.need_dx and padded else dxp

        def part(i, dW, db):                                            # samples a … e−1
            a, e = parts[i]
            n = min(self.sub, e - a) * L
            k.conv_bwd(dy[a:e], xp[a:e], W2T, dW, db, dxp[a:e], dx[a:e],
                       k.scratch(self, ("col", i), (R * n,), dy.dtype), k.scratch(self, ("dy2", i), (O * n,), dy.dtype),
                       k.scratch(self, ("dw", i), (R, O), dy.dtype), kh, kw, sh, sw, ph, pw, wrow, L, self.sub,
                       self.need_dx)
        k.weight_grads(self, len(parts), O, R, dy.dtype, part, before, after, dx)
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
            ({"filters": 4, "kernel_size": (3,), "groups": 2, "padding": "same"}, [(4, 4, 5)]),           # grouped
            ({"filters": 3, "kernel_size": (3, 2), "groups": 3, "stride": (2, 1), "use_bias": False}, [(3, 6, 4)]),  # depthwise
            ({"filters": 2, "kernel_size": (3,), "dilation": (2,), "padding": "same"}, [(2, 6, 5)]),      # dilated
            ({"filters": 4, "kernel_size": (2, 3), "dilation": (2, 1), "groups": 2, "stride": (1, 2),
              "padding": "explicit", "pad": (1, 2)}, [(2, 5, 6)]),
            ({"filters": 6, "kernel_size": (3,), "groups": 3, "dilation": (1, 2), "padding": "same"}, [(3, 5, 6)]),
            ({"filters": 2, "kernel_size": (2, 3), "stride": (2, 1), "padding": "explicit", "pad": (1,)}, [(16, 3, 4)]),  # per tap
        ]
