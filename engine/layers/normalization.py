"""Batch normalisation over the channel axis (features of (F,) and (T, F), channels of (C, H, W)) and layer
normalisation over each sample's last axes."""
import numpy as np

from .. import parallel
from ..errors import ShapeError
from ..hparams import HP
from . import norm_kernels as k
from .base import Fix, Layer, Param, fmt, register
from .conv_kernels import scratch


SEQUENCE_BN = '''class SequenceBatchNorm(nn.Module):
    """BatchNorm per feature of (B, T, F) sequences, its statistics over the valid steps only (mask (B, T));
    padded steps output 0. The nn.BatchNorm1d inside becomes a SyncBatchNorm under convert_sync_batchnorm."""

    def __init__(self, features, **kw):
        super().__init__()
        self.bn = nn.BatchNorm1d(features, **kw)

    def forward(self, x, mask=None):
        if mask is None:
            return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)           # (B·T, F)
        y = x.new_zeros(x.shape)                                                  # (B, T, F)
        y[mask] = self.bn(x[mask])                                                # (N_valid, F)
        return y
'''


@register
class BatchNorm(Layer):
    category = "normalization"
    doc = ("Normalises each channel with batch statistics while training and running statistics at evaluation: "
           "features of (F,), channels of (C, H, W) and (C, D, H, W), features of a (T, F) sequence over batch and "
           "valid steps.")
    hparams = (
        HP("momentum", "float", 0.1, min=0.0, max=1.0,
           doc="Running stat update r ← (1 − momentum)·r + momentum·batch stat (PyTorch's convention)"),
        HP("eps", "float", 1e-5, min=1e-12, max=1.0, doc="ε added to the variance"),
    )
    fused = None

    def compute_output_shape(self, in_shapes):
        self._expect_rank(in_shapes[0], (1, 2, 3, 4), "features (F,), a sequence (T, F), an image (C, H, W) or a "
                          "volume (C, D, H, W)")
        return in_shapes[0]

    def params(self, in_shapes):
        s = in_shapes[0]
        c = (s[-1] if len(s) == 2 else s[0],)                   # the channel axis: F of (T, F), else the first
        return {"gamma": Param(c, "ones"), "beta": Param(c, "zeros"),
                "running_mean": Param(c, "zeros", trainable=False),
                "running_var": Param(c, "ones", trainable=False)}

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0]))                      # one multiply-add per value

    def _rows(self, x):
        """x as (N, C, S), statistics per channel C over N·S values; (B, T, F) → (B·T, F, 1)."""
        x = np.ascontiguousarray(x)
        return x.reshape(-1, x.shape[2], 1) if x.ndim == 3 else x.reshape(x.shape[:2] + (int(np.prod(x.shape[2:])),))

    def formulas(self, in_shapes):
        s = in_shapes[0]
        c = s[-1] if len(s) == 2 else s[0]                      # (T, F): per feature; (C, …): per channel
        return {"shape": f"output shape = input shape = {fmt(s)}",
                "params": f"γ and β per channel: 2·C = 2·{c} = {2 * c:,} (running mean and variance are not trained)",
                "macs": "one multiply-add per value = " + "·".join(map(str, s)) + f" = {int(np.prod(s)):,}"}

    def forward(self, x, training=False):
        x3 = self._rows(x)                                     # (N, C, S)
        mask = self.in_masks[0] if self.in_masks and x.ndim == 3 else None
        self.sel = None if mask is None or mask.all() else np.asarray(mask).reshape(-1)   # (B·T,) valid steps
        if self.sel is not None:
            x3 = np.ascontiguousarray(x3[self.sel])            # (N_valid, F, 1): padded steps never count
        scale, shift = self.coefs(x3, training)
        y3 = scratch(self, "y", x3.shape, x.dtype) if training else np.empty(x3.shape, x.dtype)
        parallel.run(lambda i: k.affine(x3[slice(*self.parts[i])], scale, shift, y3[slice(*self.parts[i])]),
                     range(len(self.parts)))
        return y3.reshape(x.shape) if self.sel is None else self._scatter(y3, x.shape)

    def coefs(self, x3, training, parts=None, sums=None):
        """(scale, shift) of y = x·scale + shift for x3 (N, C, S): batch statistics (running ones updated) when
        training, running statistics otherwise; keeps what backward needs. parts: the batch chunks (default: its
        own); sums: (s, v, k), chunk i's sums about k[i] (C,) already taken (fusion.ConvBNReLUPool)."""
        (N, C, S), p = x3.shape, self.p
        self.parts = parts = parts or parallel.chunks(N, 2 * C * S * x3.itemsize)
        scale, shift = scratch(self, "scale", (C,), x3.dtype), scratch(self, "shift", (C,), x3.dtype)
        self.mean, self.inv = scratch(self, "mean", (C,), np.float64), scratch(self, "inv", (C,), np.float64)
        self.training, self.x3 = training, x3
        if training:
            if sums is None:
                sums = scratch(self, "sums", (3, len(parts), C), np.float64)
                sums[2] = x3[0, :, 0]                          # (C,) shift of the one-pass sums, one for all
                parallel.run(lambda i: k.bn_sums(x3[slice(*parts[i])], sums[2, 0], sums[0, i], sums[1, i]),
                             range(len(parts)))
            n = np.array([(e - a) * S for a, e in parts], np.float64)     # values per chunk
            k.bn_stats(*sums, n, p["gamma"], p["beta"], self.mean, self.inv, scale, shift,
                       p["running_mean"], p["running_var"], self.config["momentum"], self.config["eps"])
        else:
            k.bn_eval_coefs(p["gamma"], p["beta"], p["running_mean"], p["running_var"], self.config["eps"],
                            scale, shift, self.mean, self.inv)
        return scale, shift

    def _scatter(self, v3, shape):
        """(N_valid, F, 1) values back to (B, T, F), zero at padded steps."""
        out = np.zeros((self.sel.size, shape[-1]), v3.dtype)  # (B·T, F)
        out[self.sel] = v3[:, :, 0]
        return out.reshape(shape)

    def backward(self, dy):
        x3, parts, g = self.x3, self.parts, self.g
        (N, C, S), dy3 = x3.shape, self._rows(dy)
        if self.sel is not None:
            dy3 = np.ascontiguousarray(dy3[self.sel])          # (N_valid, F, 1)
        sums = scratch(self, "gsums", (2, len(parts), C), np.float64)
        parallel.run(lambda i: k.bn_grad_sums(x3[slice(*parts[i])], dy3[slice(*parts[i])], self.mean,
                                              sums[0, i], sums[1, i]), range(len(parts)))
        coef = scratch(self, "coef", (3, C), np.float64)
        k.bn_grads(sums[0], sums[1], self.p["gamma"], self.inv, N * S, self.training, g["gamma"], g["beta"], coef)
        if not self.need_dx:
            return (None,)
        dx3 = scratch(self, "dx", x3.shape, dy.dtype)
        parallel.run(lambda i: k.bn_dx(x3[slice(*parts[i])], dy3[slice(*parts[i])], self.mean, coef,
                                       dx3[slice(*parts[i])]), range(len(parts)))
        return (dx3.reshape(dy.shape) if self.sel is None else self._scatter(dx3, dy.shape),)

    def to_onnx(self, ctx, ins):
        n, p = self.name, self.p
        consts = [ctx.const(f"{n}/{k}", p[k]) for k in ("gamma", "beta", "running_mean", "running_var")]
        if len(self.in_shapes[0]) != 2:
            return ctx.op("BatchNormalization", [ins[0]] + consts, n, epsilon=float(self.config["eps"]))  # eval mode
        x = ctx.op("Transpose", ins, f"{n}/BFT", perm=[0, 2, 1])                            # (B, T, F) → (B, F, T)
        y = ctx.op("BatchNormalization", [x] + consts, f"{n}/norm", epsilon=float(self.config["eps"]))
        return ctx.op("Transpose", [y], n, perm=[0, 2, 1])                                   # per feature F

    def to_torch(self):
        from ..torch_export import Emitted
        s, c = self.in_shapes[0], self.config
        opts = "".join(f", {k}={c[k]}" for k, d in (("eps", 1e-5), ("momentum", 0.1)) if c[k] != d)
        names = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}
        count = {"num_batches_tracked": np.array(0, np.int64)}                          # unused: momentum is set
        if len(s) == 2:                                                                 # (T, F): per feature F
            return Emitted(f"SequenceBatchNorm({s[-1]}{opts})", {k: f"bn.{v}" for k, v in names.items()},
                           extra={f"bn.{k}": v for k, v in count.items()}, helpers=("SequenceBatchNorm",),
                           sources={"SequenceBatchNorm": SEQUENCE_BN}, call="{self}({x0}, {mask})", uses_mask=True)
        cls = {3: "nn.BatchNorm2d", 4: "nn.BatchNorm3d"}.get(len(s), "nn.BatchNorm1d")   # channels are axis 1 in all
        return Emitted(f"{cls}({s[0]}{opts})", names, extra=count)

    def torch_reference(self, xs, p, torch):
        """Training mode (batch statistics); torch updates copies of the running stats, which get zero gradient;
        a (T, F) sequence is normalised per feature: torch's channel axis 1 after moving F there."""
        x, seq = xs[0], xs[0].ndim == 3
        y = torch.nn.functional.batch_norm(
            x.transpose(1, 2) if seq else x, p["running_mean"].detach().clone(), p["running_var"].detach().clone(),
            p["gamma"], p["beta"], training=True, momentum=self.config["momentum"], eps=self.config["eps"])
        return (y.transpose(1, 2) if seq else y) + 0 * (p["running_mean"].sum() + p["running_var"].sum())

    @classmethod
    def samples(cls):
        return [({}, [(3,)]), ({}, [(3, 4)]), ({"momentum": 0.3}, [(2, 3, 4)]), ({"eps": 1e-3}, [(3, 2, 5)]),
                ({}, [(2, 3, 2, 2)])]


# ---- layer normalisation (per step, over the last axis) ----
from .._jit import njit  # noqa: E402

_LN_MATH = {"reassoc", "nsz", "contract", "arcp"}    # lets the row sums vectorise; NaN and ±inf still propagate


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_LN_MATH)
def _ln_fwd(x, r, gamma, beta, eps, y, xhat, inv):
    """Per row of s = x + r (x alone when r is empty), x (M, F): xhat = (s − mean)/√(var + ε), y = γ·xhat + β;
    inv[i] = 1/√(var + ε). Sums in x's dtype (they vectorise), the mean corrected by the centred values' own mean
    (c = s − μ₀ is exact near μ₀, so rows far from zero keep their accuracy); xhat and y may be one array."""
    m, f = x.shape
    t = x.dtype.type
    for i in range(m):
        row = xhat[i]
        s = t(0)
        if r.size:
            for j in range(f):
                v = x[i, j] + r[i, j]
                row[j] = v
                s += v
        else:
            for j in range(f):
                v = x[i, j]
                row[j] = v
                s += v
        mu = s / t(f)
        sc = t(0)
        sq = t(0)
        for j in range(f):
            c = row[j] - mu
            row[j] = c
            sc += c
            sq += c * c
        d = sc / t(f)                                             # mean − μ₀
        rs = t(1.0 / np.sqrt(max(np.float64(sq) / f - np.float64(d) * d, 0.0) + eps))
        inv[i] = rs
        for j in range(f):
            xh = (row[j] - d) * rs
            row[j] = xh
            y[i, j] = gamma[j] * xh + beta[j]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_LN_MATH)
def _ln_bwd(dy, xhat, inv, gamma, dx, dgamma, dbeta, need_dx):
    """dx = inv·(g − mean(g) − xhat·mean(g·xhat)) with g = γ·dy; dγ = Σ dy·xhat, dβ = Σ dy over rows. Row sums
    in dy's dtype (64-wide rows vectorise)."""
    m, f = dy.shape
    t = dy.dtype.type
    for j in range(f):
        dgamma[j] = 0.0
        dbeta[j] = 0.0
    for i in range(m):
        s1 = t(0)
        s2 = t(0)
        for j in range(f):
            d = dy[i, j]
            xh = xhat[i, j]
            gj = gamma[j] * d
            s1 += gj
            s2 += gj * xh
            dgamma[j] += d * xh
            dbeta[j] += d
        if need_dx:
            a, c, ri = s1 / t(f), s2 / t(f), inv[i]
            for j in range(f):
                dx[i, j] = ri * (gamma[j] * dy[i, j] - a - xhat[i, j] * c)


AXES = HP("axes", "int", 1, min=1, max=4, doc="How many trailing axes each statistic spans (γ, β have their "
                                               "shape; PyTorch's normalized_shape)")


class _LastAxes(Layer):
    """Statistics over each sample's last `axes` axes (LayerNorm, RMSNorm)."""

    category = "normalization"

    def compute_output_shape(self, in_shapes):
        s, k = in_shapes[0], self.config["axes"]
        self._expect_rank(s, (1, 2, 3, 4), "features (F,), a sequence (T, F) or channels (C, …)")
        if k > len(s):
            raise ShapeError(f"{self.where} normalises over the last axes = {k} axes but its input {fmt(s)} has "
                             f"{len(s)}", fix=Fix("set", f"set axes to {len(s)}", config=(("axes", len(s)),)))
        return s

    def _normalized(self, s):
        """The trailing axes each statistic spans, e.g. (F,)."""
        return tuple(s[len(s) - self.config["axes"]:])

    def macs(self, in_shapes):
        return 2 * int(np.prod(in_shapes[0]))                  # two multiply-adds per value

    def _rows(self, x):
        """x as (M, F): one row per statistic; refuses rows spanning padded steps of a masked sequence."""
        m = self.in_masks[0] if self.in_masks else None
        if m is not None and x.ndim == 3 and self.config["axes"] > 1 and not m.all():
            raise ShapeError(f"{self.where} normalises over several steps of a variable-length (T, F) sequence, so "
                             "padded steps would change the valid ones: set axes to 1")
        return np.ascontiguousarray(x).reshape(-1, int(np.prod(x.shape[x.ndim - self.config["axes"]:])))


@register
class LayerNorm(_LastAxes):
    fused = None          # runs on the per-layer path
    doc = ("Normalises each step over its features (the last axis; with axes = k the last k axes): "
           "y = γ·(x − μ)/√(σ² + ε) + β with μ, σ² of that step alone; the same at training and evaluation.")
    hparams = (HP("eps", "float", 1e-5, min=1e-12, max=1.0, doc="ε added to the variance"), AXES)

    def params(self, in_shapes):
        f = self._normalized(in_shapes[0])
        return {"gamma": Param(f, "ones"), "beta": Param(f, "zeros")}

    def formulas(self, in_shapes):
        f, n = self._normalized(in_shapes[0]), int(np.prod(in_shapes[0]))
        m = int(np.prod(f))
        size = "F" if len(f) == 1 else "·".join(map(str, f))
        return {**super().formulas(in_shapes),
                "shape": (f"y = γ·(x − μ)/√(σ² + {self.config['eps']:g}) + β, μ and σ² over each sample's last "
                          f"{len(f)} ax{'is' if len(f) == 1 else 'es'} {fmt(f)}; output shape = input shape = "
                          f"{fmt(in_shapes[0])}"),
                "params": f"2·{size} (γ, β) = 2·{m} = {2 * m}", "macs": f"2·values = 2·{n} = {2 * n}"}

    @staticmethod
    def _chunks(m, f):
        """Row runs for engine.parallel, a memory-bound pass over x, y and x̂ (4-byte values)."""
        return parallel.chunks(m, 12 * f, target=parallel.STREAM) if m else []

    def forward(self, x, training=False, residual=None):
        """LayerNorm(x), or LayerNorm(x + residual) in the same pass (fusion.AddLayerNorm)."""
        x2 = self._rows(x)                                        # (M, F)
        r2 = x2[:0, :0] if residual is None else np.ascontiguousarray(residual, dtype=x2.dtype).reshape(x2.shape)
        y = np.empty_like(x2)
        xhat = self.xhat = np.empty_like(x2)
        inv = self.inv = np.empty(len(x2), x2.dtype)
        g, b, eps = self.p["gamma"].reshape(-1), self.p["beta"].reshape(-1), self.config["eps"]

        def run(ab):
            a, e = ab
            _ln_fwd(x2[a:e], r2[a:e] if r2.size else r2, g, b, eps, y[a:e], xhat[a:e], inv[a:e])

        parallel.run(run, self._chunks(*x2.shape))
        return y.reshape(x.shape)

    def backward(self, dy):
        dy2 = np.ascontiguousarray(dy).reshape(self.xhat.shape)   # (M, F)
        m, f = dy2.shape
        need = self.need_dx
        dx = np.empty_like(dy2) if need else np.empty((m, 1), dy2.dtype)
        chunks = self._chunks(m, f)
        dg = scratch(self, "dg", (len(chunks), f), self.g["gamma"].dtype)   # per-chunk partial sums of dγ, dβ
        db = scratch(self, "db", (len(chunks), f), self.g["beta"].dtype)
        xhat, inv, gamma = self.xhat, self.inv, self.p["gamma"].reshape(-1)

        def run(i):
            a, b = chunks[i]
            _ln_bwd(dy2[a:b], xhat[a:b], inv[a:b], gamma, dx[a:b], dg[i], db[i], need)

        parallel.run(run, range(len(chunks)))
        np.sum(dg, axis=0, out=self.g["gamma"].reshape(-1))      # in chunk order: the same on any thread count
        np.sum(db, axis=0, out=self.g["beta"].reshape(-1))
        return (dx.reshape(dy.shape) if need else None,)

    def to_onnx(self, ctx, ins):
        n = self.name
        return ctx.op("LayerNormalization", [ins[0], ctx.const(f"{n}/gamma", self.p["gamma"]),
                                             ctx.const(f"{n}/beta", self.p["beta"])], n,
                      axis=-self.config["axes"], epsilon=float(self.config["eps"]))

    def to_torch(self):
        from ..torch_export import Emitted
        eps, f = self.config["eps"], self._normalized(self.in_shapes[0])
        return Emitted(f"nn.LayerNorm({f[0] if len(f) == 1 else f}{'' if eps == 1e-5 else f', eps={eps}'})",
                       {"gamma": "weight", "beta": "bias"})

    def torch_reference(self, xs, p, torch):
        f = self._normalized(xs[0].shape[1:])
        return torch.nn.functional.layer_norm(xs[0], f, p["gamma"], p["beta"], self.config["eps"])

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({"eps": 1e-3}, [(3, 4)]), ({}, [(4, 3)], {"mask": True}),
                ({"axes": 2}, [(3, 4)]), ({"axes": 3}, [(2, 3, 2)]), ({"axes": 2}, [(2, 2, 3, 2)])]
