"""ConvTranspose1D, 2D and 3D (the gradient of a convolution with respect to its input, run forward: learned
upsampling), one implementation on the rank-3 kernels with size-1 axes for 1-D and 2-D data."""
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
from .conv1d import LAYOUT, Layout1D
from .conv_shapes import AXES, ints, spatial_input


CROP_ENDS = '''class CropEnds(nn.Module):
    """A transposed convolution, then (before, after) outputs cropped per axis (ONNX pads that differ per side)."""

    def __init__(self, conv, sides):
        super().__init__()
        self.conv, self.sides = conv, sides

    def forward(self, x):
        y = self.conv(x)
        return y[(slice(None),) * 2 + tuple(slice(b, y.shape[2 + i] - e) for i, (b, e) in enumerate(self.sides))]
'''


def _two(p, q):
    """2·P, or P_before + P_after when they differ."""
    return f"2·{p}" if p == q else f"({p} + {q})"


def ct_hparams(rank):
    """The hyperparameters of a rank-`rank` transposed convolution."""
    K = {1: "K", 2: "K or K_h, K_w", 3: "K or K_d, K_h, K_w"}[rank]
    return (
        HP("filters", "int", 8, min=1, max=4096, doc="Output channels C_out"),
        HP("kernel_size", "ints", (2,), min=1, max=255, doc=K),
        HP("stride", "ints", (2,), min=1, max=255, doc=K.replace("K", "S") + ": each input value spreads S apart"),
        HP("pad", "ints", (0,), min=0, max=255,
           doc="P cropped from each side of the output along each axis (one value, one per axis, or (before, after) "
               "per axis)"),
        HP("output_padding", "ints", (0,), min=0, max=255,
           doc="P_out extra outputs at the end of each axis (picks among the sizes a strided convolution maps "
               "back from)"),
        HP("dilation", "ints", (1,), min=1, max=255, doc="d: kernel taps d apart"),
        HP("groups", "int", 1, min=1, max=4096, doc="g: channels split into g independent groups"),
        HP("use_bias", "bool", True, doc="Add a learned bias per output channel"),
        HP("init", "choice", "he_uniform", choices=INITS,
           doc="Weight initialisation (fans counted as PyTorch does for (C_in, C_out/g, *K))"),
    )


class ConvTransposeND(Layer):
    """Transposed convolution of rank `rank` on (C_in, *spatial) (PyTorch's weight layout (C_in, C_out/g, *K));
    subclasses set rank and may map their input to channels-first (channels_first / arrange)."""

    category = "convolution"
    rank = 2
    SUB = 128 << 10

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        r = self.rank
        self.k, self.s, self.dil = ints(self, "kernel_size", r), ints(self, "stride", r), ints(self, "dilation", r)
        v, self.opad = self.config["pad"], ints(self, "output_padding", r)
        self.sides = (tuple((v[2 * i], v[2 * i + 1]) for i in range(r)) if len(v) == 2 * r
                      else tuple((p, p) for p in ints(self, "pad", r)))             # (before, after) per axis
        self.pads = tuple(b for b, _ in self.sides)                              # the crop at the start of each axis
        self.even = all(b == e for b, e in self.sides)

    def channels_first(self, shape):
        """(C, *spatial) of the input (a subclass may transpose a sequence)."""
        return spatial_input(self, [shape], self.rank)

    def arrange(self, shape):
        """The output shape from channels-first (C_out, *spatial)."""
        return tuple(shape)

    def _out(self, in_shape):
        c, *sp = self.channels_first(in_shape)
        g, o = self.config["groups"], self.config["filters"]
        if c % g or o % g:
            ok = max(v for v in range(1, g + 1) if c % v == 0 and o % v == 0)
            raise ShapeError(f"{self.where}: groups g = {g} must divide both C_in = {c} and C_out = {o}: set groups to "
                             f"{ok}", fix=Fix("set", f"set groups to {ok}", config=(("groups", ok),)))
        out = []
        for a, n, kk, s, (p, q), op, d in zip(AXES[self.rank], sp, self.k, self.s, self.sides, self.opad, self.dil):
            if op >= max(s, d):
                raise ShapeError(f"{self.where}: output_padding P_out = {op} must be smaller than the stride S = {s} "
                                 f"or the dilation d = {d}: set output_padding to 0",
                                 fix=Fix("set", "set output_padding to 0", config=(("output_padding", (0,)),)))
            m = (n - 1) * s - p - q + d * (kk - 1) + op + 1
            if m < 1:
                raise ShapeError(f"{self.where}: {a}_out = ({a} − 1)·S − 2P + d·(K − 1) + P_out + 1 = ({n} − 1)·{s} − "
                                 f"{_two(p, q)} + {d}·({kk} − 1) + {op} + 1 = {m} is empty: the padding P crops everything; "
                                 f"set pad to 0", fix=Fix("set", "set pad to 0", config=(("pad", (0,)),)))
            out.append(m)
        return c, tuple(sp), tuple(out)

    def compute_output_shape(self, in_shapes):
        return self.arrange((self.config["filters"],) + self._out(in_shapes[0])[2])

    def params(self, in_shapes):
        c, o = self.channels_first(in_shapes[0])[0], self.config["filters"]
        ps = {"W": Param((c, o // self.config["groups"]) + self.k, self.config["init"], decay=True)}  # (C_in, C_out/g, *K)
        if self.config["use_bias"]:
            ps["b"] = Param((o,), "zeros")
        return ps

    def macs(self, in_shapes):
        c, sp, _ = self._out(in_shapes[0])
        return c * prod(sp) * self.config["filters"] // self.config["groups"] * prod(self.k)   # C_in·P_in·C_out/g·K

    def kernel_stride(self):
        """E = ⌊(K − 1)·c/S⌋·d/c + 1 inputs (c = gcd(d, S): the taps landing on whole input positions), step 1/S."""
        ext, why = [], []
        for kk, s, d in zip(self.k, self.s, self.dil):
            c = gcd(d, s)
            ext.append((kk - 1) * c // s * d // c + 1)
            why.append(f"⌊(K − 1)·c/S⌋·d/c + 1 = ⌊({kk} − 1)·{c}/{s}⌋·{d}/{c} + 1 = {ext[-1]}, c = gcd(d, S)")
        return tuple(ext), tuple(Fraction(1, s) for s in self.s), tuple(why)

    def formulas(self, in_shapes):
        c, sp, out = self._out(in_shapes[0])
        o, g, axes = self.config["filters"], self.config["groups"], AXES[self.rank]
        P = "2P" if self.even else "(P_before + P_after)"
        shape = "; ".join(f"{a}_out = ({a} − 1)·S − {P} + d·(K − 1) + P_out + 1 = ({n} − 1)·{s} − {_two(p, q)} + {d}·"
                          f"({kk} − 1) + {op} + 1 = {m}" for a, n, s, (p, q), d, kk, op, m in
                          zip(axes, sp, self.s, self.sides, self.dil, self.k, self.opad, out))
        co, con = ("C_out", f"{o}") if g == 1 else ("(C_out/g)", f"({o}/{g})")
        K = "K" if self.rank == 1 else "·".join(f"K_{a.lower()}" for a in axes)
        kn, n = "·".join(map(str, self.k)), c * o // g * prod(self.k)
        params = f"C_in·{co}·{K} = {c}·{con}·{kn} = {n:,}"
        if self.config["use_bias"]:
            params = f"C_in·{co}·{K} + C_out = {c}·{con}·{kn} + {o} = {n + o:,}"
        macs = (f"C_in·{'·'.join(axes)}·{co}·{K} = {c}·{'·'.join(map(str, sp))}·{con}·{kn} = "
                f"{self.macs(in_shapes):,}")
        return {"shape": f"{shape} → {fmt(self.arrange((o,) + out))}", "params": params, "macs": macs}

    # ---- compute on (B, C, D, H, W): the forward is a convolution's input gradient, the backward a convolution ----
    def build(self, in_shapes):
        super().build(in_shapes)
        _, sp, out = self._out(self.in_shapes[0])
        one = (1,) * (3 - self.rank)
        full = [(n - 1) * s + d * (kk - 1) + 1 + op for n, s, d, kk, op in zip(sp, self.s, self.dil, self.k, self.opad)]
        self.full = one + tuple(full)                                          # (D_full, H_full, W_full) before cropping
        self.geo = tuple(one + t for t in (self.k, self.s, self.dil))
        self.o3 = one + sp                                                     # the input: the equivalent conv's output
        self.out3 = one + out                                                  # (D_out, H_out, W_out)

    def _crop(self, a):
        """The (B, C_out, D_out, H_out, W_out) view of the full output a (B, C_out, D_full, H_full, W_full)."""
        (p, q, r), (D, H, W) = (0,) * (3 - self.rank) + self.pads, self.out3
        return a[:, :, p:p + D, q:q + H, r:r + W]

    def _run(self, fn, B, per_item):
        parts = parallel.chunks(B, per_item)
        parallel.run(lambda i: fn(i, *parts[i]), range(len(parts)))
        return parts

    def forward(self, x, training=False):
        B = len(x)
        return self.ct_forward(x, training).reshape((B,) + self.out_shape)

    def ct_forward(self, x, training):
        """(B, C_out, D_out, H_out, W_out) from the channels-first input x (B, C_in, *spatial)."""
        B, C = x.shape[:2]
        O, g = self.config["filters"], self.config["groups"]
        x4 = np.ascontiguousarray(x).reshape(B, C, 1, -1)                      # (B, C_in, 1, D·H·W)
        W2 = np.ascontiguousarray(self.p["W"].reshape(C, -1))                  # (C_in, C_out/g·K)
        buf = k.scratch(self, "full", (B, O) + self.full, x.dtype)
        R, P = W2.shape[1] * g, x4.shape[3]
        self.sub = max(1, self.SUB // (R * P * x.itemsize))
        none2, none1 = np.empty((C, W2.shape[1]), x.dtype), np.empty(C, x.dtype)

        def part(i, a, e):
            n = min(self.sub, e - a) * P
            nd.gconv_bwd(x4[a:e], buf[a:e], W2, none2, none1, buf[a:e], k.scratch(self, ("col", i), (R * n,), x.dtype),
                         k.scratch(self, ("x2", i), (C * n,), x.dtype), *self.geo, self.o3, g, self.sub, False, True)
        self._run(part, B, R * P * x.itemsize)
        shape = (B, O) + self.out3
        y = k.scratch(self, "y", shape, x.dtype) if training else np.empty(shape, x.dtype)
        y[...] = self._crop(buf)
        if "b" in self.p:
            y += self.p["b"][:, None, None, None]
        self.x4 = x4
        return y

    def backward(self, dy):
        dx = self.ct_backward(dy.reshape(dy.shape[:2] + self.out3))
        return (None if dx is None else dx.reshape((len(dy),) + self.in_shapes[0]),)

    def ct_backward(self, dy):
        """dL/dx (B, C_in, 1, D·H·W) or None from dy (B, C_out, D_out, H_out, W_out); sets dW and db."""
        B, O = dy.shape[:2]
        x4, g = self.x4, self.config["groups"]
        C = x4.shape[1]
        W2 = np.ascontiguousarray(self.p["W"].reshape(C, -1))                  # (C_in, C_out/g·K)
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
            self.g["b"][...] = dy.sum(axis=(0, 2, 3, 4))
        return dx

    # ---- exporters: a ConvTranspose node / nn.ConvTransposeNd of this rank (channels first) ----
    def _torch_args(self):
        from ..torch_export.emitters import _pair
        c, o, g, r = self.channels_first(self.in_shapes[0])[0], self.config["filters"], self.config["groups"], self.rank
        parts = [f"{c}, {o}", f"kernel_size={_pair(self.k)}"]
        pads = self.pads if self.even else (0,) * r                            # uneven: CropEnds crops after it
        parts += [f"{n}={_pair(v)}" for n, v, d in (("stride", self.s, 1), ("padding", pads, 0),
                                                    ("output_padding", self.opad, 0)) if v != (d,) * r]
        parts += ([f"groups={g}"] if g > 1 else []) + ([] if self.config["use_bias"] else ["bias=False"])
        parts += [f"dilation={_pair(self.dil)}"] if self.dil != (1,) * r else []
        return ", ".join(parts)

    def to_onnx(self, ctx, ins, out=None):
        n = self.name
        args = [ins[0], ctx.const(f"{n}/W", self.p["W"])] + ([ctx.const(f"{n}/b", self.p["b"])] if "b" in self.p else [])
        return ctx.op("ConvTranspose", args, out or n, kernel_shape=list(self.k), strides=list(self.s),
                      pads=[b for b, _ in self.sides] + [e for _, e in self.sides], output_padding=list(self.opad),
                      dilations=list(self.dil),
                      group=self.config["groups"])

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        m = f"nn.ConvTranspose{self.rank}d({self._torch_args()})"
        if self.even:
            return Emitted(m, {"W": "weight", "b": "bias"})                     # (C_in, C_out/g, *K)
        return Emitted(f"CropEnds({m}, {self.sides})", {"W": "conv.weight", "b": "conv.bias"}, helpers=("CropEnds",),
                       sources={"CropEnds": CROP_ENDS})

    def torch_reference(self, xs, p, torch):
        f = getattr(torch.nn.functional, f"conv_transpose{self.rank}d")
        if self.even:
            return f(xs[0], p["W"], p.get("b"), self.s, self.pads, self.opad, self.config["groups"], self.dil)
        y = f(xs[0], p["W"], p.get("b"), self.s, 0, self.opad, self.config["groups"], self.dil)
        return y[(slice(None),) * 2 + tuple(slice(b, y.shape[2 + i] - e) for i, (b, e) in enumerate(self.sides))]


@register
class ConvTranspose2D(ConvTransposeND):
    doc = ("Transposed 2-D convolution (C_in, H, W) → (filters, H_out, W_out), "
           "H_out = (H − 1)·S − 2P + d·(K − 1) + P_out + 1 (K = 2, S = 2 doubles H and W); PyTorch's weight layout.")
    fused = None          # runs on the per-layer path
    rank = 2
    hparams = ct_hparams(2)

    @classmethod
    def samples(cls):
        return [
            ({"filters": 2}, [(3, 3, 4)]),
            ({"filters": 3, "kernel_size": (3,), "stride": (2,), "pad": (1,), "output_padding": (1,)}, [(2, 3, 3)]),
            ({"filters": 4, "kernel_size": (3, 2), "stride": (1, 2), "groups": 2, "use_bias": False}, [(2, 4, 3)]),
            ({"filters": 2, "kernel_size": (2, 3), "stride": (3, 1), "dilation": (2, 1), "pad": (1, 1),
              "output_padding": (1, 0)}, [(1, 3, 4)]),
            ({"filters": 2, "kernel_size": (3,), "stride": (2,), "pad": (0, 1, 2, 0)}, [(1, 3, 3)]),   # (before, after)
        ]


@register
class ConvTranspose1D(Layout1D, ConvTransposeND):
    doc = ("Transposed 1-D convolution along time: (T, F) sequences → (T_out, filters), or (C, L) signals → "
           "(filters, L_out); L_out = (L − 1)·S − 2P + d·(K − 1) + P_out + 1 (K = 2, S = 2 doubles L).")
    fused = None          # runs on the per-layer path
    rank = 1
    hparams = ct_hparams(1) + (LAYOUT,)

    def forward(self, x, training=False):
        return self.out(self.ct_forward(self.in5(x), training))

    def backward(self, dy):
        dx = self.ct_backward(self.grad5(dy))                                  # (B, C_in, 1, L)
        return (None if dx is None else self.grad_out(dx.reshape(dx.shape[:2] + (1, 1, -1))),)

    def torch_channels_first(self, x, p, torch):
        return ConvTransposeND.torch_reference(self, [x], p, torch)

    @classmethod
    def samples(cls):
        return [
            ({"filters": 3, "kernel_size": (3,), "stride": (1,), "pad": (1,)}, [(6, 2)], {"mask": True}),  # T kept
            ({"filters": 2, "kernel_size": (3,), "stride": (2,), "pad": (1,), "output_padding": (1,)}, [(5, 3)],
             {"mask": True}),                                                                  # T changes: mask ends
            ({"filters": 4, "kernel_size": (2,), "groups": 2, "use_bias": False}, [(4, 4)]),
            ({"layout": "signal", "filters": 4, "kernel_size": (3,), "stride": (3,), "groups": 2, "dilation": (2,),
              "output_padding": (1,)}, [(4, 5)]),
            ({"layout": "signal", "filters": 3, "kernel_size": (4,), "stride": (2,), "pad": (2,)}, [(2, 6)]),
            ({"filters": 2, "kernel_size": (3,), "stride": (2,), "pad": (0, 1)}, [(4, 3)]),       # (before, after)
        ]


@register
class ConvTranspose3D(ConvTransposeND):
    doc = ("Transposed 3-D convolution (C_in, D, H, W) → (filters, D_out, H_out, W_out), each axis "
           "(n − 1)·S − 2P + d·(K − 1) + P_out + 1 (K = 2, S = 2 doubles D, H and W); PyTorch's weight layout.")
    fused = None          # runs on the per-layer path
    rank = 3
    hparams = ct_hparams(3)

    @classmethod
    def samples(cls):
        return [
            ({"filters": 2}, [(2, 2, 3, 2)]),
            ({"filters": 2, "kernel_size": (3, 2, 3), "stride": (2, 1, 2), "pad": (1, 0, 1),
              "output_padding": (1, 0, 0), "use_bias": False}, [(1, 2, 3, 2)]),
            ({"filters": 4, "kernel_size": (2,), "stride": (1, 2, 1), "groups": 2, "dilation": (2, 1, 1)},
             [(2, 2, 2, 3)]),
            ({"filters": 2, "kernel_size": (2, 3, 2), "stride": (3, 1, 2), "dilation": (2, 1, 3), "pad": (1, 1, 0),
              "output_padding": (1, 0, 1)}, [(1, 2, 3, 2)]),
        ]
