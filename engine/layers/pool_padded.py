"""What PyTorch's and opset-17 ONNX pools cannot say of a pool: uneven or wide padding and dilated means, as a
PyTorch module (PaddedPool: pad, then pool or window sums over counts) and an ONNX Conv of ones times 1/count."""
import numpy as np


def counts(layer):
    """(1, 1, *out) divisor of each window's mean (positions the mean counts), per axis multiplied."""
    inc, per = layer.config.get("count_include_pad"), []
    _, sp, out = layer._out(layer.in_shapes[0])
    for n, o, (pb, pe), kk, s, d in zip(sp, out, layer.pad_sides, layer.k, layer.s, layer.dil):
        taps = np.arange(o)[:, None] * s - pb + np.arange(kk)[None, :] * d            # (o, K) positions
        per.append(((taps < n + pe) if inc else ((taps >= 0) & (taps < n))).sum(1))
    cnt = per[0]
    for v in per[1:]:
        cnt = np.multiply.outer(cnt, v)
    return cnt.reshape((1, 1) + tuple(out))


def onnx_mean(layer, ctx, ins, out):
    """AveragePool has dilations from opset 19 only: a depthwise Conv of ones (the window sums) times 1/count."""
    n, c = layer.name, layer.channels_first(layer.in_shapes[0])[0]
    _, sp, o = layer._out(layer.in_shapes[0])
    more = [max(0, (m - 1) * s + d * (kk - 1) + 1 - (v + pb + pe)) for m, s, d, kk, v, (pb, pe) in
            zip(o, layer.s, layer.dil, layer.k, sp, layer.pad_sides)]                    # ceil mode's last windows
    pads = [p[0] for p in layer.pad_sides] + [p[1] + e for p, e in zip(layer.pad_sides, more)]
    w = ctx.const(f"{n}/ones", np.ones((c, 1) + layer.k))                             # (C, 1, *K)
    y = ctx.op("Conv", [ins[0], w], f"{n}/sums", group=c, kernel_shape=list(layer.k), strides=list(layer.s),
               dilations=list(layer.dil), pads=pads)
    cnt = counts(layer)
    return ctx.op("Mul", [y, ctx.const(f"{n}/inverse_counts", np.where(cnt > 0, 1 / np.maximum(cnt, 1), 0))], out)


TORCH_POOL = '''
class PaddedPool(nn.Module):
    """Max or mean over windows with (before, after) pads per axis, dilation d and the engine's output sizes."""

    def __init__(self, kind, k, s, d, before, after, out, count_pad):
        super().__init__()
        self.kind, self.k, self.s, self.d, self.out, self.count_pad = kind, k, s, d, out, count_pad
        self.before, self.after = before, after

    def forward(self, x):
        F, r, n = nn.functional, len(self.k), x.shape[2:]
        more = [max(0, (o - 1) * s + d * (k - 1) + 1 - (m + b + a)) for o, s, d, k, m, b, a in
                zip(self.out, self.s, self.d, self.k, n, self.before, self.after)]   # ceil mode's last windows
        pads = [v for b, a in zip(self.before[::-1], self.after[::-1]) for v in (b, a)]  # F.pad: last axis first
        tail = [v for e in more[::-1] for v in (0, e)]
        keep = (slice(None), slice(None)) + tuple(slice(0, o) for o in self.out)
        if self.kind == "max":
            xp = F.pad(F.pad(x, pads, value=float("-inf")), tail, value=float("-inf"))
            return getattr(F, f"max_pool{r}d")(xp, self.k, self.s, 0, self.d)[keep]
        conv, ones = getattr(F, f"conv{r}d"), x.new_ones((1, 1) + tuple(self.k))
        B, C = x.shape[:2]
        sums = conv(F.pad(F.pad(x.reshape((B * C, 1) + tuple(n)), pads), tail), ones, stride=self.s, dilation=self.d)
        valid = F.pad(x.new_ones((1, 1) + tuple(n)), pads, value=1.0 if self.count_pad else 0.0)
        count = conv(F.pad(valid, tail), ones, stride=self.s, dilation=self.d)       # positions each mean counts
        y = sums / count.clamp(min=1)
        return y.reshape((B, C) + tuple(y.shape[2:]))[keep]
'''


def torch_pool(layer, x, torch):
    """F.max_poolNd / F.avg_poolNd with the layer's options (channels-first x); PaddedPool where they cannot."""
    F, r, c = torch.nn.functional, layer.rank, layer.config
    if not layer.torch_plain():
        scope = {"nn": torch.nn}
        exec(TORCH_POOL, scope)
        before, after = tuple(p[0] for p in layer.pad_sides), tuple(p[1] for p in layer.pad_sides)
        return scope["PaddedPool"](layer.kind, layer.k, layer.s, layer.dil, before, after, layer.o3[3 - r:],
                                   bool(c.get("count_include_pad")))(x)
    pads = tuple(p for p, _ in layer.pad_sides)
    if layer.kind == "max":
        return getattr(F, f"max_pool{r}d")(x, layer.k, layer.s, pads, layer.dil, ceil_mode=c["ceil_mode"])
    return getattr(F, f"avg_pool{r}d")(x, layer.k, layer.s, pads, ceil_mode=c["ceil_mode"],
                                       count_include_pad=c["count_include_pad"])
