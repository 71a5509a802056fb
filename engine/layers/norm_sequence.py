"""GroupNorm / InstanceNorm on (T, F) sequences of variable length: each group's statistics over its features at the
valid steps only, padded steps output 0 (norm_groups.py runs these when a mask arrives; ONNX and PyTorch always
use this form for (T, F), equal to the channels-first one when every step is valid)."""
import numpy as np

SEQUENCE_GN = '''class SequenceGroupNorm(nn.Module):
    """GroupNorm over the features of (B, T, F) sequences (InstanceNorm: groups = F): each group's mean and variance
    over its features at the valid steps (mask (B, T)) only; padded steps output 0. Without a mask it equals
    nn.GroupNorm(groups, F) on x.transpose(1, 2)."""

    def __init__(self, groups, features, eps=1e-5, affine=True):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(features)) if affine else None

    def forward(self, x, mask=None):
        B, T, F = x.shape
        m = torch.ones(B, T, dtype=x.dtype, device=x.device) if mask is None else mask.to(x.dtype)
        m4 = m[:, :, None, None]                                                  # (B, T, 1, 1)
        x4 = x.reshape(B, T, self.groups, -1)                                     # (B, T, G, F/G)
        n = m4.sum(1, keepdim=True) * x4.shape[-1]                                # values per group
        xc = (x4 - (x4 * m4).sum((1, 3), keepdim=True) / n) * m4
        y = (xc / torch.sqrt((xc * xc).sum((1, 3), keepdim=True) / n + self.eps)).reshape(B, T, F)
        if self.weight is not None:
            y = (y * self.weight + self.bias) * m[..., None]
        return y
'''


def forward(layer, x, m):
    """y (B, T, F) from x with valid steps m (B, T); keeps x̂, 1/σ and the counts for backward."""
    B, T, F = x.shape
    G = layer.groups(F)
    w = m[:, :, None, None].astype(x.dtype)                               # (B, T, 1, 1)
    x4 = x.reshape(B, T, G, F // G)                                       # (B, T, G, F/G)
    n = w.sum(axis=1, keepdims=True) * (F // G)                           # (B, 1, 1, 1) values per group
    xc = (x4 - (x4 * w).sum(axis=(1, 3), keepdims=True) / n) * w          # centred, 0 at padded steps
    layer.inv4 = 1 / np.sqrt((xc * xc).sum(axis=(1, 3), keepdims=True) / n + layer.config["eps"])   # (B, 1, G, 1)
    layer.xh4, layer.n4, layer.w4 = xc * layer.inv4, n, w
    y = layer.xh4.reshape(B, T, F)
    if not layer.config["affine"]:
        return y.copy()
    return (y * layer.p["gamma"].astype(x.dtype) + layer.p["beta"].astype(x.dtype)) * w[:, :, 0]


def backward(layer, dy):
    """dx from dy (B, T, F) of the last forward; γ, β gradients from the valid steps."""
    B, T, F = dy.shape
    xh4, w4, n = layer.xh4, layer.w4, layer.n4
    dy = dy * w4[:, :, 0]                                                 # padded outputs are constant 0
    if layer.config["affine"]:
        layer.g["gamma"][...] = (dy * xh4.reshape(B, T, F)).sum(axis=(0, 1))
        layer.g["beta"][...] = dy.sum(axis=(0, 1))
        dy = dy * layer.p["gamma"].astype(dy.dtype)                       # dL/dx̂
    d4 = dy.reshape(xh4.shape)
    s1, s2 = d4.sum(axis=(1, 3), keepdims=True), (d4 * xh4).sum(axis=(1, 3), keepdims=True)
    return (layer.inv4 * (d4 - s1 / n - xh4 * s2 / n) * w4).reshape(B, T, F)


def to_onnx(layer, ctx, ins):
    """The masked statistics from the lengths input: ReduceSum over steps and the group's features."""
    n, (T, F), eps = layer.name, layer.in_shapes[0], float(layer.config["eps"])
    G = layer.groups(F)
    m = ctx.op("Cast", [ctx.valid_steps(T)], f"{n}/valid", to=1)                                    # (B, T)
    m4 = ctx.op("Reshape", [m, ctx.const(f"{n}/m4", (0, T, 1, 1), np.int64)], f"{n}/valid4")        # (B, T, 1, 1)
    x4 = ctx.op("Reshape", [ins[0], ctx.const(f"{n}/groups", (0, T, G, F // G), np.int64)], f"{n}/x4")
    axes = ctx.const(f"{n}/axes", [1, 3], np.int64)
    cnt = ctx.op("Mul", [ctx.op("ReduceSum", [m4, ctx.const(f"{n}/ax1", [1], np.int64)], f"{n}/steps"),
                         ctx.const(f"{n}/per_step", float(F // G))], f"{n}/count")                   # (B, 1, 1, 1)
    s = ctx.op("ReduceSum", [ctx.op("Mul", [x4, m4], f"{n}/masked"), axes], f"{n}/sum")             # (B, 1, G, 1)
    xc = ctx.op("Mul", [ctx.op("Sub", [x4, ctx.op("Div", [s, cnt], f"{n}/mean")], f"{n}/diff"), m4], f"{n}/centred")
    var = ctx.op("Div", [ctx.op("ReduceSum", [ctx.op("Mul", [xc, xc], f"{n}/sq"), axes], f"{n}/ss"), cnt], f"{n}/var")
    sd = ctx.op("Sqrt", [ctx.op("Add", [var, ctx.const(f"{n}/eps", eps)], f"{n}/var_eps")], f"{n}/sd")
    y = ctx.op("Reshape", [ctx.op("Div", [xc, sd], f"{n}/xhat4"), ctx.const(f"{n}/shape", (0, T, F), np.int64)],
               f"{n}/xhat" if layer.config["affine"] else n)
    if not layer.config["affine"]:
        return y
    y = ctx.op("Add", [ctx.op("Mul", [y, ctx.const(f"{n}/gamma", layer.p["gamma"])], f"{n}/scaled"),
                       ctx.const(f"{n}/beta", layer.p["beta"])], f"{n}/shifted")
    m3 = ctx.op("Unsqueeze", [m, ctx.const(f"{n}/ax2", [2], np.int64)], f"{n}/valid3")             # (B, T, 1)
    return ctx.op("Mul", [y, m3], n)


def to_torch(layer):
    from ..torch_export.emitters import Emitted
    c, F = layer.config, layer.in_shapes[0][1]
    opts = (f", eps={c['eps']}" if c["eps"] != 1e-5 else "") + ("" if c["affine"] else ", affine=False")
    return Emitted(f"SequenceGroupNorm({layer.groups(F)}, {F}{opts})", {"gamma": "weight", "beta": "bias"},
                   helpers=("SequenceGroupNorm",), sources={"SequenceGroupNorm": SEQUENCE_GN},
                   call="{self}({x0}, {mask})", uses_mask=True)
