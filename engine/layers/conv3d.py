"""Conv3D, MaxPool3D and AveragePool3D on volumes and video clips (C, D, H, W)."""
from .base import register
from .conv import ConvND, conv_hparams
from .pooling import PoolND, pool_hparams


@register
class Conv3D(ConvND):
    doc = ("3-D convolution (C_in, D, H, W) → (filters, D_out, H_out, W_out), each axis "
           "⌊(n + 2P − d·(K − 1) − 1)/S⌋ + 1; groups and dilation d.")
    fused = None          # runs on the per-layer path
    rank = 3
    hparams = conv_hparams(3)

    @classmethod
    def samples(cls):
        return [
            ({"filters": 2, "kernel_size": (2,)}, [(1, 3, 4, 3)]),
            ({"filters": 2, "kernel_size": (3, 1, 2), "stride": (1, 2, 1), "padding": "explicit", "pad": (1, 0, 1),
              "use_bias": False}, [(2, 3, 4, 3)]),
            ({"filters": 4, "kernel_size": (3,), "groups": 2, "padding": "same", "dilation": (1, 2, 1)}, [(2, 3, 5, 3)]),
            ({"filters": 2, "kernel_size": (2,), "groups": 2, "padding": "explicit", "pad": (1, 0, 1)}, [(2, 3, 3, 4)]),
        ]


class _Pool3D(PoolND):
    rank = 3

    @classmethod
    def samples(cls):
        opt = {"dilation": (1, 2, 1)} if cls.kind == "max" else {"count_include_pad": False}
        return [({}, [(2, 4, 4, 5)]),
                (dict(opt, kernel_size=(2, 3, 2), stride=(1, 2, 2), pad=(1, 1, 0), ceil_mode=True), [(1, 3, 6, 5)]),
                ({"kernel_size": (2,), "stride": (1, 2, 2), "dilation": (2, 1, 2), "ceil_mode": True}, [(1, 4, 4, 5)]),
                ({"kernel_size": (2, 3, 2), "stride": (2,), "padding": "same_upper"}, [(2, 3, 5, 4)])]


@register
class MaxPool3D(_Pool3D):
    doc = "Maximum over K_d × K_h × K_w windows of (C, D, H, W) moved by S; padding, ceil mode, dilation as PyTorch."
    fused = None          # runs on the per-layer path
    kind = "max"
    hparams = pool_hparams("max")


@register
class AveragePool3D(_Pool3D):
    doc = "Mean over K_d × K_h × K_w windows of (C, D, H, W) moved by S; padding (counted or not), ceil mode as PyTorch."
    fused = None          # runs on the per-layer path
    kind = "avg"
    hparams = pool_hparams("avg")
