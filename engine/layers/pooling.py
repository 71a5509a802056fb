"""Pooling of any rank on channels-first data (PoolND: padding (also uneven and "same" as ONNX's auto_pad), ceil
mode, dilation, count_include_pad for average, as PyTorch and ONNX), MaxPool2D and AveragePool2D (own fast kernels when unpadded), GlobalAveragePool, GlobalMaxPool."""
from math import prod

import numpy as np

from .. import parallel
from ..errors import ConfigError, ShapeError
from ..hparams import HP
from ..receptive import dilated_extent, dilated_why
from . import conv_kernels as k
from . import convnd_kernels as nd
from .base import Fix, Layer, fmt, register
from .conv import AXES, ints, out_size, size_line, spatial_input
from .pool_padded import TORCH_POOL, onnx_mean, torch_pool  # noqa: F401  (torch_pool: 1-D pools use it)


def pool_hparams(kind):
    """Hyperparameters of a max ('max') or average ('avg') pool of any rank."""
    hp = (HP("kernel_size", "ints", (2,), min=1, max=255, doc="Window K (one value, or one per axis)"),
          HP("stride", "ints", (2,), min=0, max=255, doc="Step S between windows (one value, or one per axis)"),
          HP("pad", "ints", (0,), min=0, max=255,
             doc="P positions added that never win a maximum / count per count_include_pad: one value, one per axis, "
                 "or (before, after) per axis; P < K"),
          HP("padding", "choice", "explicit", choices=("explicit", "same_upper", "same_lower"),
             doc="explicit: use pad; same: pad so that n_out = ⌈n/S⌉, the odd one after (same_upper) or before "
                 "(same_lower), as ONNX's auto_pad"),
          HP("ceil_mode", "bool", False, doc="⌈⌉ instead of ⌊⌋ in the output size: a last, partial window is kept"),
          HP("dilation", "ints", (1,), min=1, max=255, doc="d: window taps d apart"))
    if kind == "max":
        return hp
    return hp + (HP("count_include_pad", "bool", True, doc="Divide by the whole window, padding included "
                                                            "(PyTorch's default), or by its input positions only"),)


class PoolND(Layer):
    """Max or average over windows of (C, *spatial) of rank `rank`; subclasses may map their input (layouts)."""

    category = "pooling"
    rank, kind = 2, "max"

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        r = self.rank
        self.k, self.s, self.dil = ints(self, "kernel_size", r), ints(self, "stride", r), ints(self, "dilation", r)
        v = self.config["pad"]
        if len(v) not in (1, r, 2 * r):
            raise ConfigError(f"{self.where}: pad takes one value, one per axis or (before, after) per axis "
                              f"({2 * r} values), got {v!r}")

    def channels_first(self, shape):
        return spatial_input(self, [shape], self.rank)

    def arrange(self, shape):
        return tuple(shape)

    def sides(self, sp):
        """((before, after) per axis) of the padding of spatial sizes sp: pad, or 'same' as ONNX's auto_pad."""
        mode, r = self.config["padding"], self.rank
        if mode != "explicit":
            tot = [max((-(-n // s) - 1) * s + d * (kk - 1) + 1 - n, 0) for n, s, kk, d in zip(sp, self.s, self.k, self.dil)]
            return tuple((t - t // 2, t // 2) if mode == "same_lower" else (t // 2, t - t // 2) for t in tot)
        v = self.config["pad"]
        if len(v) == 2 * r:
            return tuple((v[2 * i], v[2 * i + 1]) for i in range(r))
        return tuple((p, p) for p in (v * r if len(v) == 1 else v))

    def _size(self, a, n, pb, pe, kk, s, d, ceil):
        """n_out of one axis: out_size's formula, with before ≠ after pads ⌊(n + P_b + P_a − d·(K − 1) − 1)/S⌋ + 1."""
        if pb == pe or s < 1:
            return out_size(self, a, n, pb, kk, s, None, d, ceil)
        span = n + pb + pe - d * (kk - 1) - 1
        o = (-(-span // s) if ceil else span // s) + 1
        if ceil and (o - 1) * s >= n + pb:                     # a last window starting in the after-padding: dropped
            o -= 1
        if span < 0 or o < 1:
            raise ShapeError(f"{self.where}: {a}_out = ⌊({n} + {pb} + {pe} − {d * (kk - 1) + 1})/{s}⌋ + 1 is empty: the "
                             f"window is larger than the padded input")
        return o

    def _out(self, in_shape):
        """(C, spatial, spatial_out), or a ShapeError (padding as wide as the window, empty output)."""
        c, *sp = self.channels_first(in_shape)
        sides = self.sides(sp)
        for a, (pb, pe), kk in zip(AXES[self.rank], sides, self.k):
            if max(pb, pe) >= kk:
                ok = tuple((min(b, kk - 1), min(e, kk - 1)) for (b, e), kk in zip(sides, self.k))
                ok = tuple(b for b, _ in ok) if all(b == e for b, e in ok) else sum(ok, ())
                raise ShapeError(f"{self.where}: padding P_{a.lower()} = {max(pb, pe)} is as wide as the {kk}-tap "
                                 f"window (a window would see only padding): set pad to {fmt(ok)}",
                                 fix=Fix("set", f"set pad to {fmt(ok)}", config=(("pad", ok), ("padding", "explicit"))))
        ceil = self.config["ceil_mode"]
        out = tuple(self._size(a, n, pb, pe, kk, s, d, ceil) for a, n, (pb, pe), kk, s, d in
                    zip(AXES[self.rank], sp, sides, self.k, self.s, self.dil))
        return c, tuple(sp), out

    def compute_output_shape(self, in_shapes):
        c, _, out = self._out(in_shapes[0])
        return self.arrange((c,) + out)

    def macs(self, in_shapes):
        c, _, out = self._out(in_shapes[0])
        return c * prod(out) * prod(self.k) if self.kind == "avg" else 0

    def kernel_stride(self):
        return dilated_extent(self.k, self.dil), self.s, dilated_why(self.k, self.dil)

    def formulas(self, in_shapes):
        c, sp, out = self._out(in_shapes[0])
        subs = [""] if self.rank == 1 else [f"_{a.lower()}" for a in AXES[self.rank]]
        lo, hi = ("⌈", "⌉") if self.config["ceil_mode"] else ("⌊", "⌋")
        shape = "; ".join(size_line(a, n, pb, kk, s, d, o, self.config["ceil_mode"], u) if pb == pe else
                          f"{a}_out = {lo}({a} + P_before + P_after − d·(K − 1) − 1)/S{hi} + 1 = "
                          f"{lo}({n} + {pb} + {pe} − {d}·({kk} − 1) − 1)/{s}{hi} + 1 = {o}"
                          for a, n, (pb, pe), kk, s, d, o, u
                          in zip(AXES[self.rank], sp, self.sides(sp), self.k, self.s, self.dil, out, subs))
        P, K = "·".join(f"{a}_out" for a in AXES[self.rank]), "·".join(f"K{u}" for u in subs)
        macs = (f"C·{P}·{K} = {c}·{'·'.join(map(str, out))}·{'·'.join(map(str, self.k))} = "
                f"{c * prod(out) * prod(self.k):,}" if self.kind == "avg" else "no multiply-adds (a maximum compares) = 0")
        return {"shape": f"{shape} → {fmt(self.arrange((c,) + out))}", "params": "no trainable parameters = 0",
                "macs": macs}

    def build(self, in_shapes):
        super().build(in_shapes)
        lead = (1,) * (3 - self.rank)
        _, sp, out = self._out(self.in_shapes[0])
        self.o3, self.pad_sides = lead + out, self.sides(sp)
        self.geo = tuple(lead + t for t in (self.k, self.s, self.dil)) + tuple(
            (0,) * (3 - self.rank) + tuple(side[i] for side in self.pad_sides) for i in (0, 1))   # (k, s, d, p, p_after)

    def to5(self, x):
        return x.reshape(x.shape[:2] + (1,) * (3 - self.rank) + x.shape[2:])

    def pool_forward(self, x5, training):
        """(B, C, D_out, H_out, W_out) pooled from channels-first x5."""
        x5 = np.ascontiguousarray(x5)
        shape = x5.shape[:2] + self.o3
        y = k.scratch(self, "y", shape, x5.dtype) if training else np.empty(shape, x5.dtype)
        kk, s, d, p, pe = self.geo
        if self.kind == "max":
            self.arg = k.scratch(self, "arg", shape, np.int64)                  # flat index of each maximum
            parallel.over_batch(lambda a, o, i: nd.maxpool3(a, o, i, kk, s, d, p), x5, y, self.arg)
        else:
            inc = self.config["count_include_pad"]
            parallel.over_batch(lambda a, o: nd.avgpool3(a, o, o, o, kk, s, p, pe, d, inc, True), x5, y)   # written: y only
        self.x5shape = x5.shape
        return y

    def pool_backward(self, dy5):
        """dx (B, C, D, H, W) of the last pool_forward."""
        B, C = self.x5shape[:2]
        dy5 = np.ascontiguousarray(dy5)
        dx = k.scratch(self, "dx5", self.x5shape, dy5.dtype)
        if self.kind == "max":
            parallel.over_batch(lambda g, i, o: nd.maxpool3_bwd(g, i, o), dy5.reshape(B, C, -1),
                                self.arg.reshape(B, C, -1), dx.reshape(B, C, -1))
        else:
            kk, s, d, p, pe = self.geo
            inc = self.config["count_include_pad"]
            parallel.over_batch(lambda g, o: nd.avgpool3(o, o, o, g, kk, s, p, pe, d, inc, False), dy5, dx)  # dx only
        return dx

    def forward(self, x, training=False):
        return self.pool_forward(self.to5(x), training).reshape((len(x),) + self.out_shape)

    def backward(self, dy):
        return (self.pool_backward(dy.reshape(dy.shape[:2] + self.o3)).reshape((len(dy),) + self.in_shapes[0]),)

    # ---- exporters: MaxPool / AveragePool node, nn.MaxPoolNd / nn.AvgPoolNd of this rank with the pool's options ----
    def torch_plain(self):
        """PyTorch's pools take these options: even padding of at most half the window (mean: undilated)."""
        ext = dilated_extent(self.k, self.dil)
        return all(pb == pe and 2 * pb <= e for (pb, pe), e in zip(self.pad_sides, ext)) and (
            self.kind == "max" or self.dil == (1,) * self.rank)

    def to_onnx(self, ctx, ins, out=None):
        pads = [p[0] for p in self.pad_sides] + [p[1] for p in self.pad_sides]
        a = dict(kernel_shape=list(self.k), strides=list(self.s), pads=pads, ceil_mode=int(self.config["ceil_mode"]))
        if self.kind == "max":
            return ctx.op("MaxPool", ins, out or self.name, dilations=list(self.dil), **a)
        if self.dil == (1,) * self.rank and self.pad_sides == tuple((p, p) for p, _ in self.pad_sides):
            return ctx.op("AveragePool", ins, out or self.name, count_include_pad=int(self.config["count_include_pad"]), **a)
        return onnx_mean(self, ctx, ins, out or self.name)

    def to_torch(self):
        from ..torch_export.emitters import Emitted, _pair
        r, c, mx = self.rank, self.config, self.kind == "max"
        if not self.torch_plain():
            before, after = tuple(p[0] for p in self.pad_sides), tuple(p[1] for p in self.pad_sides)
            args = (self.kind, self.k, self.s, self.dil, before, after, self.o3[3 - r:], bool(c.get("count_include_pad")))
            return Emitted(f"PaddedPool{args!r}", helpers=("PaddedPool",), sources={"PaddedPool": TORCH_POOL})
        pads = tuple(p for p, _ in self.pad_sides)
        parts = [f"kernel_size={_pair(self.k)}", f"stride={_pair(self.s)}"]
        parts += [f"padding={_pair(pads)}"] if any(pads) else []
        parts += [f"dilation={_pair(self.dil)}"] if mx and self.dil != (1,) * r else []
        parts += ["ceil_mode=True"] if c["ceil_mode"] else []
        parts += ["count_include_pad=False"] if not mx and not c["count_include_pad"] else []
        return Emitted(f"nn.{'MaxPool' if mx else 'AvgPool'}{r}d({', '.join(parts)})")

    def torch_reference(self, xs, p, torch):
        return torch_pool(self, xs[0], torch)


class _Pool2D(PoolND):
    rank = 2

    def plain(self):
        """True when no padding, dilation or ceil mode changes a window: the fast 2-D kernels (and fusion) apply."""
        c = self.config
        floor = tuple(out_size(self, "H", n, 0, kk, s) for n, kk, s in zip(self.in_shapes[0][1:], self.k, self.s))
        return self.pad_sides == ((0, 0), (0, 0)) and self.dil == (1, 1) and (not c["ceil_mode"] or floor == self.out_shape[1:])

    def build(self, in_shapes):
        super().build(in_shapes)
        self.fast = self.plain()

    def _buf(self, x, training, key="y"):
        shape = (len(x),) + self.out_shape
        return k.scratch(self, key, shape, x.dtype) if training else np.empty(shape, x.dtype)

    @classmethod
    def samples(cls):
        opt = ({"dilation": (2, 1)} if cls.kind == "max" else {"count_include_pad": False})
        inc = {} if cls.kind == "max" else {"count_include_pad": True}
        return [({"kernel_size": (3,), "stride": (1,), "pad": (2,)}, [(2, 5, 6)]),             # more than half K
                (dict(inc, kernel_size=(3, 2), stride=(2,), pad=(2, 0, 1, 1)), [(1, 6, 5)]),    # (before, after)
                ({"kernel_size": (3,), "stride": (2,), "padding": "same_upper"}, [(2, 5, 6)]),
                (dict(inc, kernel_size=(2,), stride=(1, 2), padding="same_lower"), [(1, 4, 5)]),
                ({"kernel_size": (2,), "stride": (1,), "dilation": (2,), "ceil_mode": True}, [(1, 4, 4)]),
                (dict(inc, kernel_size=(2, 3), stride=(3, 2), dilation=(2, 1), pad=(1,), ceil_mode=True), [(2, 7, 6)]),
                (dict(opt, kernel_size=(3,), stride=(2,), dilation=(1, 2), pad=(0, 2, 1, 0), ceil_mode=True), [(1, 6, 7)]),
                ({}, [(2, 4, 6)]), ({}, [(1, 5, 3)]), ({"kernel_size": (3, 2), "stride": (2, 1)}, [(3, 7, 4)]),
                ({"kernel_size": (3,), "stride": (2,)}, [(1, 5, 5)]),
                ({"kernel_size": (3,), "stride": (2,), "pad": (1,)}, [(2, 5, 6)]),
                ({"kernel_size": (2, 3), "stride": (2,), "ceil_mode": True}, [(1, 5, 6)]),
                ({"kernel_size": (3,), "stride": (2, 2), "pad": (1, 0), "ceil_mode": True}, [(2, 6, 5)]),
                (dict(opt, kernel_size=(2, 3), stride=(1, 2), pad=(1,)), [(2, 5, 6)])]


@register
class MaxPool2D(_Pool2D):
    doc = ("Maximum over K_h × K_w windows moved by stride S; H_out = ⌊(H + 2P − d·(K − 1) − 1)/S⌋ + 1 "
           "(K = 2, S = 2 halves H and W); padding, ceil mode and dilation as in PyTorch.")
    fused = None          # runs on the per-layer path
    kind = "max"
    hparams = pool_hparams("max")

    def forward(self, x, training=False):
        if not self.fast:
            return super().forward(x, training)
        x = np.ascontiguousarray(x)
        y = self._buf(x, training)
        self.arg = k.scratch(self, "arg", y.shape, np.uint16)              # window cell of each maximum
        self.xshape = x.shape
        self.x_eval = None if training else x                              # eval skips the argmax; backward redoes it
        self._max(x, y, training)
        return y

    def _max(self, x, y, keep):
        parallel.over_batch(lambda a, o, i: k.maxpool_fwd(a, o, i, *self.k, *self.s, keep), x, y, self.arg)

    def backward(self, dy):
        if not self.fast:
            return super().backward(dy)
        if self.x_eval is not None:                                        # after an eval forward: argmax from x
            x, self.x_eval = self.x_eval, None
            self._max(x, k.scratch(self, "y_arg", self.arg.shape, x.dtype), True)
        dx = k.scratch(self, "dx", self.xshape, dy.dtype)
        parallel.over_batch(lambda d, i, o: k.maxpool_bwd(d, i, o, *self.k, *self.s),
                            np.ascontiguousarray(dy), self.arg, dx)
        return (dx,)


@register
class AveragePool2D(_Pool2D):
    doc = "Mean over K_h × K_w windows moved by stride S; padding (counted or not) and ceil mode as in PyTorch."
    fused = None          # runs on the per-layer path
    kind = "avg"
    hparams = pool_hparams("avg")

    def forward(self, x, training=False):
        if not self.fast:
            return super().forward(x, training)
        x = np.ascontiguousarray(x)
        y = self._buf(x, training)
        self.xshape = x.shape
        k.avgpool_fwd(x, y, self.k[0], self.k[1], self.s[0], self.s[1])
        return y

    def backward(self, dy):
        if not self.fast:
            return super().backward(dy)
        dx = k.scratch(self, "dx", self.xshape, dy.dtype)
        dx[...] = 0
        k.avgpool_bwd(np.ascontiguousarray(dy), dx, self.k[0], self.k[1], self.s[0], self.s[1])
        return (dx,)


class _Global(Layer):
    """Channels-first (C, L), (C, H, W) or (C, D, H, W) → (C,)."""
    category = "pooling"

    def compute_output_shape(self, in_shapes):
        s = in_shapes[0]
        if len(s) == 1:
            spatial_input(self, in_shapes)                                      # an image's Reshape fix
        if len(s) not in (2, 3, 4):
            raise ShapeError(f"{self.where} needs channels first: (C, L), (C, H, W) or (C, D, H, W), but got {fmt(s)}")
        return s[:1]

    def formulas(self, in_shapes):
        s = in_shapes[0]
        ax = {2: "L", 3: "H·W", 4: "D·H·W"}[len(s)]
        f = {"shape": f"(C, {ax.replace('·', ', ')}) → (C,) = {fmt(s[:1])}", "params": "no trainable parameters = 0"}
        f["macs"] = (f"C·{ax} = {'·'.join(map(str, s))} = {prod(s):,}" if self.macs(in_shapes)
                     else "no multiply-adds (a maximum compares) = 0")
        return f

    def to_onnx(self, ctx, ins):
        y = ctx.op(self.onnx_op, ins, f"{self.name}/pooled")                                 # (B, C, 1, …)
        return ctx.op("Flatten", [y], self.name, axis=1)                                      # (B, C)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        return Emitted(f"nn.Sequential(nn.Adaptive{self.torch_pool}{len(self.in_shapes[0]) - 1}d(1), nn.Flatten())")

    @classmethod
    def samples(cls):
        return [({}, [(3, 4, 5)]), ({}, [(2, 7)]), ({}, [(2, 3, 2, 4)])]


@register
class GlobalAveragePool(_Global):
    doc = "Mean of each channel over all positions: (C, H, W) → (C,) (also (C, L) and (C, D, H, W))."
    fused = None          # runs on the per-layer path
    onnx_op, torch_pool = "GlobalAveragePool", "AvgPool"

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0]))

    def forward(self, x, training=False):
        self.xshape = x.shape
        return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2, dtype=np.float64).astype(x.dtype)  # (B, C)

    def backward(self, dy):
        dx = k.scratch(self, "dx", self.xshape, dy.dtype)
        n = prod(self.xshape[2:])
        dx.reshape(len(dy), dy.shape[1], n)[...] = (dy / n)[:, :, None]          # (B, C, 1) broadcast
        return (dx,)

    def torch_reference(self, xs, p, torch):
        return xs[0].flatten(2).mean(-1)


@register
class GlobalMaxPool(_Global):
    doc = "Maximum of each channel over all positions: (C, H, W) → (C,) (also (C, L) and (C, D, H, W))."
    fused = None          # runs on the per-layer path
    onnx_op, torch_pool = "GlobalMaxPool", "MaxPool"

    def forward(self, x, training=False):
        self.xshape = x.shape
        x3 = x.reshape(x.shape[0], x.shape[1], -1)                              # (B, C, positions)
        self.arg = x3.argmax(axis=2)                                            # (B, C) first maximum
        return np.take_along_axis(x3, self.arg[:, :, None], 2)[:, :, 0].copy()

    def backward(self, dy):
        dx = k.scratch(self, "dx", self.xshape, dy.dtype)
        d3 = dx.reshape(len(dy), dy.shape[1], -1)
        d3[...] = 0
        np.put_along_axis(d3, self.arg[:, :, None], dy[:, :, None], 2)
        return (dx,)

    def torch_reference(self, xs, p, torch):
        return xs[0].flatten(2).max(-1).values
