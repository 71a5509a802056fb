"""LpPool1D, LpPool2D and LpPool3D: y = (Σ_window |x|^p)^(1/p) (ONNX LpPool, PyTorch nn.LPPool on |x|), the window sum taken
by the average pool of the same geometry (padding counted) times the window size K."""
from math import prod

import numpy as np

from ..hparams import HP
from .base import Layer, register
from .conv1d import LAYOUT
from .pooling import pool_hparams

P_HP = HP("p", "int", 2, min=1, max=16, doc="p of the Lp norm over each window (2: the Euclidean norm)")
GEOMETRY = tuple(h for h in pool_hparams("avg") if h.name not in ("ceil_mode", "count_include_pad"))

TORCH_LP = '''class LpPool(nn.Module):
    """(Σ |x|^p)^(1/p) over each window of the zero-padded input: nn.LPPool on |x| (it pads nothing and has no
    dilation: a dilated window sums through a depthwise convolution of ones)."""

    def __init__(self, rank, p, kernel, stride, pads, dilation):
        super().__init__()
        self.rank, self.p, self.kernel, self.stride, self.pads, self.dilation = rank, p, kernel, stride, pads, dilation
        one = (lambda v: v[0]) if rank == 1 else tuple                            # LPPool1d takes plain ints
        self.pool = getattr(nn, f"LPPool{rank}d")(p, one(kernel), one(stride))

    def forward(self, x):
        x = torch.nn.functional.pad(x.abs(), self.pads)
        if all(d == 1 for d in self.dilation):
            return self.pool(x)
        conv = getattr(torch.nn.functional, f"conv{self.rank}d")
        ones = x.new_ones((x.shape[1], 1) + tuple(self.kernel))
        return conv(x ** self.p, ones, stride=self.stride, dilation=self.dilation, groups=x.shape[1]) ** (1 / self.p)
'''


class _LpPool(Layer):
    """Lp pooling of rank `rank`: an AveragePool of the same geometry (count_include_pad) on |x|^p, times K, ^(1/p)."""

    category = "pooling"
    inner_type = "AveragePool2D"

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        from . import REGISTRY
        geo = {k: v for k, v in self.config.items() if k != "p"}
        self.inner = REGISTRY[self.inner_type](f"{self.name}/sum", **geo, count_include_pad=True)
        self.K = prod(self.inner.k)

    @property
    def reads_lengths(self):
        return self.inner.reads_lengths

    def compute_output_shape(self, in_shapes):
        return self.inner.compute_output_shape(in_shapes)

    def kernel_stride(self):
        return self.inner.kernel_stride()

    def macs(self, in_shapes):
        return self.inner.macs(in_shapes)

    def formulas(self, in_shapes):
        f = self.inner.formulas(in_shapes)
        p = self.config["p"]
        return {**f, "shape": f"y = (Σ |x|^{p})^(1/{p}) over each window of {self.K} values; {f['shape']}"}

    def build(self, in_shapes):
        super().build(in_shapes)
        self.inner.build(in_shapes)

    def compute_mask(self, in_masks):
        return self.inner.compute_mask(in_masks)

    def forward(self, x, training=False):
        p = self.config["p"]
        self.inner.in_masks, self.inner.need_dx = self.in_masks, self.need_dx
        self.x = np.array(x, copy=True)
        s = self.K * self.inner.forward(np.abs(self.x) ** p, training)           # Σ |x|^p per window
        self.s, self.y = s, s ** (1.0 / p)
        return self.y.copy()

    def backward(self, dy):
        p = self.config["p"]
        pos = self.s > 0
        ds = np.where(pos, dy * self.y / np.where(pos, p * self.s, 1.0), 0.0)   # d s^(1/p)/ds = y/(p·s); 0 at s = 0
        (da,) = self.inner.backward(self.K * ds)
        return (da * p * np.abs(self.x) ** (p - 1) * np.sign(self.x),)

    # ---- exporters ----
    def _pads(self):
        """(before per axis, after per axis) of the input padding."""
        sides = self.inner.pad_sides
        return [b for b, _ in sides], [e for _, e in sides]

    def to_onnx(self, ctx, ins):
        n, p = self.name, self.config["p"]
        if not getattr(self.inner, "seq", False) and self.inner.dil == (1,) * self.inner.rank:
            b, e = self._pads()
            return ctx.op("LpPool", ins, n, p=p, kernel_shape=list(self.inner.k), strides=list(self.inner.s), pads=b + e)
        a = ctx.op("Pow", [ctx.op("Abs", ins, f"{n}/abs"), ctx.const(f"{n}/p", p)], f"{n}/pow")       # |x|^p
        m = self.inner.to_onnx(ctx, [a])                                                           # mean per window
        s = ctx.op("Mul", [m, ctx.const(f"{n}/K", float(self.K))], f"{n}/window_sum")
        return ctx.op("Pow", [s, ctx.const(f"{n}/1_over_p", 1.0 / p)], n)

    def _torch_args(self):
        b, e = self._pads()
        flat = tuple(v for i in reversed(range(len(b))) for v in (b[i], e[i]))                  # F.pad: last axis first
        return (self.inner.rank, self.config["p"], self.inner.k, self.inner.s, flat, self.inner.dil)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        e = Emitted(f"LpPool{self._torch_args()!r}", helpers=("LpPool",), sources={"LpPool": TORCH_LP})
        if not getattr(self.inner, "seq", False):
            return e
        from .conv1d import CHANNELS_LAST
        return Emitted(f"ChannelsLast({e.module})", helpers=("ChannelsLast", "LpPool"),
                       sources={"ChannelsLast": CHANNELS_LAST, "LpPool": TORCH_LP}, call="{self}({x0}, {mask})",
                       uses_mask=True)

    def torch_reference(self, xs, p, torch):
        rank, pp, k, s, flat, dil = self._torch_args()
        seq = getattr(self.inner, "seq", False)
        x = xs[0].transpose(1, 2) if seq else xs[0]
        x = torch.nn.functional.pad(x.abs(), flat)
        if dil == (1,) * rank:
            one = (lambda v: v[0]) if rank == 1 else tuple
            y = getattr(torch.nn.functional, f"lp_pool{rank}d")(x, pp, one(k), one(s))
        else:
            conv = getattr(torch.nn.functional, f"conv{rank}d")
            y = conv(x ** pp, x.new_ones((x.shape[1], 1) + k), stride=s, dilation=dil, groups=x.shape[1]) ** (1 / pp)
        return y.transpose(1, 2) if seq else y


@register
class LpPool2D(_LpPool):
    fused = None          # runs on the per-layer path
    doc = "Lp norm (Σ |x|^p)^(1/p) over K_h × K_w windows moved by stride S (ONNX LpPool); padding counts as zeros."
    hparams = (P_HP,) + GEOMETRY

    @classmethod
    def samples(cls):
        return [({}, [(2, 4, 4)]), ({"p": 3, "kernel_size": (3, 2), "stride": (1, 2), "pad": (1, 0)}, [(2, 5, 4)]),
                ({"p": 1, "kernel_size": (2,), "stride": (1,), "dilation": (2, 1)}, [(1, 5, 4)]),
                ({"p": 4, "kernel_size": (2,), "stride": (1,), "padding": "same_lower"}, [(2, 3, 3)])]


@register
class LpPool1D(_LpPool):
    fused = None          # runs on the per-layer path
    doc = ("Lp norm (Σ |x|^p)^(1/p) over windows of K steps moved by S: (T, F) sequences or (C, L) signals "
           "(ONNX LpPool); padding counts as zeros.")
    hparams = (P_HP,) + GEOMETRY + (LAYOUT,)
    inner_type = "AveragePool1D"

    @classmethod
    def samples(cls):
        return [({}, [(6, 3)], {"mask": True}), ({"p": 3, "kernel_size": (3,), "stride": (1,), "pad": (1,)}, [(5, 2)],
                                                {"mask": True}),
                ({"layout": "signal", "p": 2, "kernel_size": (3,), "stride": (2,), "pad": (1, 2)}, [(2, 7)]),
                ({"layout": "signal", "p": 3, "kernel_size": (2,), "stride": (1,), "dilation": (2,)}, [(3, 6)])]


@register
class LpPool3D(_LpPool):
    fused = None          # runs on the per-layer path
    doc = ("Lp norm (Σ |x|^p)^(1/p) over K_d × K_h × K_w windows of (C, D, H, W) moved by stride S (ONNX LpPool); "
           "padding counts as zeros.")
    hparams = (P_HP,) + GEOMETRY
    inner_type = "AveragePool3D"

    @classmethod
    def samples(cls):
        return [({}, [(2, 4, 4, 4)]), ({"p": 3, "kernel_size": (2, 3, 2), "stride": (1, 2, 1), "pad": (0, 1, 1)},
                                      [(1, 3, 4, 3)])]
