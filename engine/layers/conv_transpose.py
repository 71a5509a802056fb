"""ConvTranspose2D (the gradient of a convolution with respect to its input, run forward: learned upsampling)."""
from fractions import Fraction
from math import gcd, prod

import numpy as np

from .. import parallel
from ..errors import ShapeError
from ..hparams import HP
from ..initializers import INITS
from . import conv_kernels as k
from . import convnd_kernels as nd
from .base import Fix, Layer, Param, fmt, register
from .conv import ints, spatial_input


@register
class ConvTranspose2D(Layer):
    category = "convolution"
    doc = ("Transposed 2-D convolution (C_in, H, W) → (filters, H_out, W_out), "
           "H_out = (H − 1)·S − 2P + d·(K − 1) + P_out + 1 (K = 2, S = 2 doubles H and W); PyTorch's weight layout.")
    hparams = (
        HP("filters", "int", 8, min=1, max=4096, doc="Output channels C_out"),
        HP("kernel_size", "ints", (2,), min=1, max=255, doc="K or K_h, K_w"),
        HP("stride", "ints", (2,), min=1, max=255, doc="S or S_h, S_w: each input value spreads S apart"),
        HP("pad", "ints", (0,), min=0, max=255, doc="P rows and columns cropped from each side of the output"),
        HP("output_padding", "ints", (0,), min=0, max=255,
           doc="P_out extra rows/columns at the bottom/right (picks among the sizes a strided convolution maps back from)"),
        HP("dilation", "ints", (1,), min=1, max=255, doc="d: kernel taps d apart"),
        HP("groups", "int", 1, min=1, max=4096, doc="g: channels split into g independent groups"),
        HP("use_bias", "bool", True, doc="Add a learned bias per output channel"),
        HP("init", "choice", "he_uniform", choices=INITS,
           doc="Weight initialisation (fans counted as PyTorch does for (C_in, C_out/g, K_h, K_w))"),
    )
    fused = None
    SUB = 128 << 10

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        self.k, self.s, self.dil = ints(self, "kernel_size", 2), ints(self, "stride", 2), ints(self, "dilation", 2)
        self.pads, self.opad = ints(self, "pad", 2), ints(self, "output_padding", 2)

    def _out(self, in_shape):
        c, h, w = spatial_input(self, [in_shape])
        g, o = self.config["groups"], self.config["filters"]
        if c % g or o % g:
            ok = max(v for v in range(1, g + 1) if c % v == 0 and o % v == 0)
            raise ShapeError(f"{self.where}: groups g = {g} must divide both C_in = {c} and C_out = {o}: set groups to "
                             f"{ok}", fix=Fix("set", f"set groups to {ok}", config=(("groups", ok),)))
        out = []
        for a, n, kk, s, p, op, d in zip("HW", (h, w), self.k, self.s, self.pads, self.opad, self.dil):
            if op >= max(s, d):
                raise ShapeError(f"{self.where}: output_padding P_out = {op} must be smaller than the stride S = {s} "
                                 f"or the dilation d = {d}: set output_padding to 0",
                                 fix=Fix("set", "set output_padding to 0", config=(("output_padding", (0,)),)))
            m = (n - 1) * s - 2 * p + d * (kk - 1) + op + 1
            if m < 1:
                raise ShapeError(f"{self.where}: {a}_out = ({a} − 1)·S − 2P + d·(K − 1) + P_out + 1 = ({n} − 1)·{s} − "
                                 f"2·{p} + {d}·({kk} − 1) + {op} + 1 = {m} is empty: the padding P crops everything; "
                                 f"set pad to 0", fix=Fix("set", "set pad to 0", config=(("pad", (0,)),)))
            out.append(m)
        return c, (h, w), tuple(out)

    def compute_output_shape(self, in_shapes):
        return (self.config["filters"],) + self._out(in_shapes[0])[2]

    def params(self, in_shapes):
        c, o = in_shapes[0][0], self.config["filters"]
        ps = {"W": Param((c, o // self.config["groups"]) + self.k, self.config["init"], decay=True)}  # (C_in, C_out/g, K_h, K_w)
        if self.config["use_bias"]:
            ps["b"] = Param((o,), "zeros")
        return ps

    def macs(self, in_shapes):
        c, hw, _ = self._out(in_shapes[0])
        return c * prod(hw) * self.config["filters"] // self.config["groups"] * prod(self.k)   # C_in·H·W·C_out/g·K_h·K_w

    def kernel_stride(self):
        """E = ⌊(K − 1)·c/S⌋·d/c + 1 inputs (c = gcd(d, S): the taps landing on whole input positions), step 1/S."""
        ext, why = [], []
        for kk, s, d in zip(self.k, self.s, self.dil):
            c = gcd(d, s)
            ext.append((kk - 1) * c // s * d // c + 1)
            why.append(f"⌊(K − 1)·c/S⌋·d/c + 1 = ⌊({kk} − 1)·{c}/{s}⌋·{d}/{c} + 1 = {ext[-1]}, c = gcd(d, S)")
        return tuple(ext), tuple(Fraction(1, s) for s in self.s), tuple(why)

    def formulas(self, in_shapes):
        c, hw, out = self._out(in_shapes[0])
        o, g = self.config["filters"], self.config["groups"]
        shape = "; ".join(f"{a}_out = ({a} − 1)·S − 2P + d·(K − 1) + P_out + 1 = ({n} − 1)·{s} − 2·{p} + {d}·({kk} − 1)"
                          f" + {op} + 1 = {m}" for a, n, s, p, d, kk, op, m in
                          zip("HW", hw, self.s, self.pads, self.dil, self.k, self.opad, out))
        co, con = ("C_out", f"{o}") if g == 1 else ("(C_out/g)", f"({o}/{g})")
        kn, n = "·".join(map(str, self.k)), c * o // g * prod(self.k)
        params = f"C_in·{co}·K_h·K_w = {c}·{con}·{kn} = {n:,}"
        if self.config["use_bias"]:
            params = f"C_in·{co}·K_h·K_w + C_out = {c}·{con}·{kn} + {o} = {n + o:,}"
        macs = f"C_in·H·W·{co}·K_h·K_w = {c}·{hw[0]}·{hw[1]}·{con}·{kn} = {self.macs(in_shapes):,}"
        return {"shape": f"{shape} → {fmt((o,) + out)}", "params": params, "macs": macs}

    # ---- compute: the forward is a convolution's input gradient, the backward a convolution ----
    def build(self, in_shapes):
        super().build(in_shapes)
        c, (h, w), _ = self._out(self.in_shapes[0])
        full = [(n - 1) * s + d * (kk - 1) + 1 + op for n, s, d, kk, op in zip((h, w), self.s, self.dil, self.k, self.opad)]
        self.full = (1,) + tuple(full)                                         # (1, H_full, W_full) before cropping
        self.geo = ((1,) + self.k, (1,) + self.s, (1,) + self.dil)
        self.o3 = (1, h, w)                                                    # the input is the equivalent conv's output

    def _crop(self, a):
        (p, q), (H, W) = self.pads, self.out_shape[1:]
        return a[:, :, 0, p:p + H, q:q + W]

    def _run(self, fn, B, per_item):
        parts = parallel.chunks(B, per_item)
        parallel.run(lambda i: fn(i, *parts[i]), range(len(parts)))
        return parts

    def forward(self, x, training=False):
        B, C = x.shape[:2]
        O, g = self.config["filters"], self.config["groups"]
        x4 = np.ascontiguousarray(x).reshape(B, C, 1, -1)                      # (B, C_in, 1, H·W)
        W2 = np.ascontiguousarray(self.p["W"].reshape(C, -1))                  # (C_in, C_out/g·K_h·K_w)
        buf = k.scratch(self, "full", (B, O) + self.full, x.dtype)
        R, P = W2.shape[1] * g, x4.shape[3]
        self.sub = max(1, self.SUB // (R * P * x.itemsize))
        none2, none1 = np.empty((C, W2.shape[1]), x.dtype), np.empty(C, x.dtype)

        def part(i, a, e):
            n = min(self.sub, e - a) * P
            nd.gconv_bwd(x4[a:e], buf[a:e], W2, none2, none1, buf[a:e], k.scratch(self, ("col", i), (R * n,), x.dtype),
                         k.scratch(self, ("x2", i), (C * n,), x.dtype), *self.geo, self.o3, g, self.sub, False, True)
        self._run(part, B, R * P * x.itemsize)
        y = k.scratch(self, "y", (B,) + self.out_shape, x.dtype) if training else np.empty((B,) + self.out_shape, x.dtype)
        y[...] = self._crop(buf)
        if "b" in self.p:
            y += self.p["b"][:, None, None]
        self.x4 = x4
        return y

    def backward(self, dy):
        B, O = dy.shape[:2]
        x4, g = self.x4, self.config["groups"]
        C = x4.shape[1]
        W2 = np.ascontiguousarray(self.p["W"].reshape(C, -1))                  # (C_in, C_out/g·K_h·K_w)
        Rg, P = W2.shape[1], x4.shape[3]
        dyp = k.scratch(self, "dyp", (B, O) + self.full, dy.dtype, zero=True)
        self._crop(dyp)[...] = dy                                              # the cropped border stays zero
        dx = k.scratch(self, "dx", x4.shape, dy.dtype) if self.need_dx else None
        zero = k.scratch(self, "b0", (C,), dy.dtype, zero=True)
        parts = parallel.chunks(B, Rg * g * P * dy.itemsize)

        def part(i, o):                                                        # chunk i's dW; and its dx
            a, e = parts[i]
            n = min(self.sub, e - a) * P
            col, rows = k.scratch(self, ("col", i), (Rg * g * n,), dy.dtype), k.scratch(self, ("x2", i), (C * n,), dy.dtype)
            nd.gconv_bwd(x4[a:e], dyp[a:e], W2, o.reshape(C, Rg), k.scratch(self, ("db", i), (C,), dy.dtype),
                         dyp[a:e], col, rows, *self.geo, self.o3, g, self.sub, True, False)
            if dx is not None:
                nd.gconv_fwd(dyp[a:e], W2, zero, dx[a:e], col, rows, *self.geo, self.o3, g, self.sub)
        self.parts = parts
        tot = k.chunk_sum(self, len(parts), C * Rg, dy.dtype, part)           # in chunk order: thread-independent
        self.g["W"].reshape(-1)[...] = tot
        if "b" in self.g:
            self.g["b"][...] = dy.sum(axis=(0, 2, 3))
        return (None if dx is None else dx.reshape((B,) + self.in_shapes[0]),)

    # ---- exporters ----
    def _torch_args(self):
        from ..torch_export.emitters import _pair
        c, o, g = self.in_shapes[0][0], self.config["filters"], self.config["groups"]
        parts = [f"{c}, {o}", f"kernel_size={_pair(self.k)}"]
        parts += [f"{n}={_pair(v)}" for n, v, d in (("stride", self.s, 1), ("padding", self.pads, 0),
                                                    ("output_padding", self.opad, 0)) if v != (d, d)]
        parts += ([f"groups={g}"] if g > 1 else []) + ([] if self.config["use_bias"] else ["bias=False"])
        parts += [f"dilation={_pair(self.dil)}"] if self.dil != (1, 1) else []
        return ", ".join(parts)

    def to_onnx(self, ctx, ins):
        n = self.name
        args = [ins[0], ctx.const(f"{n}/W", self.p["W"])] + ([ctx.const(f"{n}/b", self.p["b"])] if "b" in self.p else [])
        return ctx.op("ConvTranspose", args, n, kernel_shape=list(self.k), strides=list(self.s), pads=list(self.pads) * 2,
                      output_padding=list(self.opad), dilations=list(self.dil), group=self.config["groups"])

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        return Emitted(f"nn.ConvTranspose2d({self._torch_args()})", {"W": "weight", "b": "bias"})  # (C_in, C_out/g, K_h, K_w)

    def torch_reference(self, xs, p, torch):
        return torch.nn.functional.conv_transpose2d(xs[0], p["W"], p.get("b"), self.s, self.pads, self.opad,
                                                    self.config["groups"], self.dil)

    @classmethod
    def samples(cls):
        return [
            ({"filters": 2}, [(3, 3, 4)]),
            ({"filters": 3, "kernel_size": (3,), "stride": (2,), "pad": (1,), "output_padding": (1,)}, [(2, 3, 3)]),
            ({"filters": 4, "kernel_size": (3, 2), "stride": (1, 2), "groups": 2, "use_bias": False}, [(2, 4, 3)]),
            ({"filters": 2, "kernel_size": (2, 3), "stride": (3, 1), "dilation": (2, 1), "pad": (1, 1),
              "output_padding": (1, 0)}, [(1, 3, 4)]),
        ]
