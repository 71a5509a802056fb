"""Conv1D, MaxPool1D and AveragePool1D on (T, F) sequences (features last, variable lengths as masks) or on
(C, L) signals (channels first, as PyTorch's Conv1d), chosen by the `layout` hyperparameter."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Fix, fmt, register
from .conv import ConvND, conv_hparams
from .pooling import PoolND, pool_hparams, torch_pool

LAYOUT = HP("layout", "choice", "sequence", choices=("sequence", "signal"),
            doc="sequence: (T, F), steps first and features last, as the app's sequences (padded steps of shorter "
                "sequences are zeros in, and zeros out where T is kept); signal: (C, L), channels first, as PyTorch")

CHANNELS_LAST = '''class ChannelsLast(nn.Module):
    """A channels-first 1-D module on (B, T, F) sequences: padded steps (mask False) are zeros in, and zeros out
    where the module keeps T."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, mask=None):
        if mask is not None:
            x = x * mask[..., None]
        y = self.inner(x.transpose(1, 2)).transpose(1, 2)                         # (B, T_out, C_out)
        if mask is not None and y.shape[1] == mask.shape[1]:
            y = y * mask[..., None]
        return y
'''


class Layout1D:
    """The two layouts of a 1-D layer (mixed in before ConvND or PoolND, which work channels first)."""

    rank = 1

    @property
    def seq(self):
        return self.config["layout"] == "sequence"

    @property
    def reads_lengths(self):
        return self.seq

    def channels_first(self, shape):
        """(C, L): a sequence (T, F) is F channels of length T."""
        if len(shape) != 2:
            fix = None
            if len(shape) == 1:
                to = (shape[0], 1) if self.seq else (1, shape[0])
                fix = Fix("insert_before", f"insert a Reshape to {fmt(to)} before it", "Reshape", (("shape", to),))
            what = "a sequence (steps T, features F)" if self.seq else "a signal (channels C, length L)"
            raise ShapeError(f"{self.where} needs {what} but got {fmt(shape)}" + (f": {fix.text}" if fix else ""),
                             fix=fix)
        return (shape[1], shape[0]) if self.seq else tuple(shape)

    def arrange(self, shape):
        return (shape[1], shape[0]) if self.seq else tuple(shape)

    def compute_mask(self, in_masks):
        """A sequence's mask passes where T is kept; otherwise (and for signals) it ends."""
        m = in_masks[0] if in_masks else None
        return m if self.seq and m is not None and self.out_shape[0] == self.in_shapes[0][0] else None

    def in5(self, x):
        """(B, C, 1, 1, L) channels first; padded steps of a sequence zeroed."""
        self.m = (self.in_masks[0] if self.in_masks else None) if self.seq else None
        if self.m is not None:
            x = x * self.m[:, :, None]                                          # (B, T, F)
        self.keep = self.m is not None and self.out_shape[0] == self.in_shapes[0][0]
        return (x.transpose(0, 2, 1) if self.seq else x)[:, :, None, None, :]

    def out(self, y5):
        """The layer's output from (B, C, 1, 1, L)."""
        y = y5.reshape(y5.shape[:2] + y5.shape[4:])                             # (B, C, L)
        if not self.seq:
            return y
        y = np.ascontiguousarray(y.transpose(0, 2, 1))                          # (B, T, C)
        if self.keep:
            y *= self.m[:, :, None]
        return y

    def grad5(self, dy):
        """dL/dy as (B, C, 1, 1, L) (zero at the padded steps the output zeroed)."""
        if self.seq:
            dy = (dy * self.m[:, :, None] if self.keep else dy).transpose(0, 2, 1)
        return dy[:, :, None, None, :]

    def grad_out(self, dx5):
        """dL/dx in the input's layout from (B, C, 1, 1, L), zero at padded input steps."""
        dx = dx5.reshape(dx5.shape[:2] + dx5.shape[4:])
        if not self.seq:
            return np.ascontiguousarray(dx)
        dx = np.ascontiguousarray(dx.transpose(0, 2, 1))
        if self.m is not None:
            dx *= self.m[:, :, None]
        return dx

    # ---- exporters: the channels-first node between transposes (and the lengths' masks) ----
    def to_onnx(self, ctx, ins):
        if not self.seq:
            return super().to_onnx(ctx, ins)
        n, T = self.name, self.in_shapes[0][0]
        m = ctx.op("Cast", [ctx.valid_steps(T)], f"{n}/valid", to=1)                            # (B, T) float
        m = ctx.op("Unsqueeze", [m, ctx.const(f"{n}/ax2", [2], np.int64)], f"{n}/valid3")       # (B, T, 1)
        x = ctx.op("Mul", [ins[0], m], f"{n}/masked")
        x = ctx.op("Transpose", [x], f"{n}/channels_first", perm=[0, 2, 1])                    # (B, F, T)
        y = super().to_onnx(ctx, [x], f"{n}/cf_out")
        if self.out_shape[0] != T:
            return ctx.op("Transpose", [y], n, perm=[0, 2, 1])                                 # (B, T_out, C)
        return ctx.op("Mul", [ctx.op("Transpose", [y], f"{n}/steps_first", perm=[0, 2, 1]), m], n)

    def to_torch(self):
        e = super().to_torch()
        if not self.seq:
            return e
        from ..torch_export.emitters import Emitted
        return Emitted(f"ChannelsLast({e.module})", {k: f"inner.{v}" for k, v in e.params.items()},
                       helpers=("ChannelsLast",) + e.helpers, sources={"ChannelsLast": CHANNELS_LAST, **e.sources},
                       call="{self}({x0}, {mask})",
                       uses_mask=True)

    def torch_reference(self, xs, p, torch):
        x = xs[0].transpose(1, 2) if self.seq else xs[0]
        y = self.torch_channels_first(x, p, torch)
        return y.transpose(1, 2) if self.seq else y


@register
class Conv1D(Layout1D, ConvND):
    doc = ("1-D convolution along time: (T, F) sequences → (T_out, filters), or (C, L) signals → (filters, L_out); "
           "L_out = ⌊(L + 2P − d·(K − 1) − 1)/S⌋ + 1, groups and dilation d.")
    fused = None          # runs on the per-layer path
    hparams = conv_hparams(1) + (LAYOUT,)

    def forward(self, x, training=False):
        return self.out(self.conv_forward(self.in5(x), training))

    def backward(self, dy):
        dx = self.conv_backward(self.grad5(dy))
        return (None if dx is None else self.grad_out(dx),)

    def torch_channels_first(self, x, p, torch):
        return ConvND.torch_reference(self, [x], p, torch)

    @classmethod
    def samples(cls):
        return [
            ({"filters": 3, "kernel_size": (3,), "padding": "same"}, [(6, 2)], {"mask": True}),   # T kept: mask on
            ({"filters": 2, "kernel_size": (3,), "stride": (2,), "dilation": (2,), "padding": "explicit", "pad": (1,)},
             [(9, 3)], {"mask": True}),                                                        # T changes: mask ends
            ({"filters": 4, "kernel_size": (2,), "groups": 2, "use_bias": False}, [(5, 4)]),
            ({"layout": "signal", "filters": 4, "kernel_size": (3,), "groups": 2, "padding": "explicit", "pad": (2,)},
             [(4, 7)]),
            ({"layout": "signal", "filters": 3, "kernel_size": (2,), "groups": 3, "dilation": (3,), "stride": (2,)},
             [(3, 9)]),                                                                        # depthwise
        ]


class _Pool1D(Layout1D, PoolND):
    def forward(self, x, training=False):
        return self.out(self.pool_forward(self.in5(x), training))

    def backward(self, dy):
        return (self.grad_out(self.pool_backward(self.grad5(dy))),)

    def torch_channels_first(self, x, p, torch):
        return torch_pool(self, x, torch)

    @classmethod
    def samples(cls):
        opt = {"dilation": (2,)} if cls.kind == "max" else {"count_include_pad": False}
        return [({}, [(6, 3)], {"mask": True}),
                ({"kernel_size": (3,), "stride": (1,), "pad": (1,)}, [(5, 2)], {"mask": True}),   # T kept
                (dict(opt, kernel_size=(3,), stride=(2,), pad=(1,), ceil_mode=True), [(8, 2)]),
                ({"layout": "signal", "kernel_size": (3,), "stride": (2,)}, [(2, 7)]),
                (dict(opt, layout="signal", kernel_size=(2,), stride=(3,), pad=(1,), ceil_mode=True), [(3, 8)]),
                ({"kernel_size": (3,), "stride": (2,), "dilation": (2,), "pad": (2, 1)}, [(9, 2)]),  # (before, after)
                ({"layout": "signal", "kernel_size": (2,), "stride": (2,), "padding": "same_lower"}, [(2, 7)])]


@register
class MaxPool1D(_Pool1D):
    doc = ("Maximum over windows of K steps moved by S: (T, F) sequences or (C, L) signals; "
           "L_out = ⌊(L + 2P − d·(K − 1) − 1)/S⌋ + 1; padding, ceil mode, dilation as PyTorch.")
    fused = None          # runs on the per-layer path
    kind = "max"
    hparams = pool_hparams("max") + (LAYOUT,)


@register
class AveragePool1D(_Pool1D):
    doc = ("Mean over windows of K steps moved by S: (T, F) sequences or (C, L) signals; "
           "padding (counted or not) and ceil mode as PyTorch.")
    fused = None          # runs on the per-layer path
    kind = "avg"
    hparams = pool_hparams("avg") + (LAYOUT,)
