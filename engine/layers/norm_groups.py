"""Per-sample normalisation over channel groups (GroupNorm, InstanceNorm) and across neighbouring channels
(LocalResponseNorm); PyTorch's definitions. Channels: C of (C, H, W) and (C, D, H, W), the features F of a (T, F)
sequence (the app's rank-2 rule: steps first, features last). PyTorch and ONNX want (B, C, L): rank-2 inputs are
transposed to (B, F, T) there (and here, around the channels-first kernels); GroupNorm and InstanceNorm of a
variable-length (T, F) sequence take their statistics over the valid steps only (norm_sequence.py)."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from . import norm_sequence as seqnorm
from .base import Fix, Layer, Param, fmt, register
from .normalization import _ln_bwd, _ln_fwd


def _divisor_near(c, g):
    """The divisor of c closest to g (the smaller one on a tie)."""
    return min((k for k in range(1, c + 1) if c % k == 0), key=lambda k: (abs(k - g), k))


def channels(s):
    """The channel count of a sample shape: F of (F,) and (T, F), C of (C, H, W) and (C, D, H, W)."""
    return s[-1] if len(s) <= 2 else s[0]


def cf(a):
    """(B, T, F) → (B, F, T) contiguous (channels first for the kernels); other ranks as they are."""
    return np.ascontiguousarray(a.transpose(0, 2, 1)) if a.ndim == 3 else a


def cf_onnx(ctx, layer, x, back=False):
    """ONNX Transpose (B, T, F) ↔ (B, F, T) for a rank-2 sample; x itself otherwise."""
    if len(layer.in_shapes[0]) != 2:
        return x
    return ctx.op("Transpose", [x], layer.name if back else f"{layer.name}/BFT", perm=[0, 2, 1])


def cf_call(layer):
    """The PyTorch call: a channels-first module on (B, T, F) between transposes."""
    return "{self}({x0}.transpose(1, 2)).transpose(1, 2)" if len(layer.in_shapes[0]) == 2 else "{self}({args})"


class _Groups(Layer):
    """y = γ_c·(x − μ_g)/√(σ²_g + ε) + β_c, μ_g and σ²_g over the values of channel group g of one sample."""

    category = "normalization"
    ranks = (2, 3, 4)

    def groups(self, c):
        return self.config["groups"]

    def compute_output_shape(self, in_shapes):
        s = in_shapes[0]
        self._expect_rank(s, self.ranks, "a sequence (T, F), or channels first: (C, H, W) or (C, D, H, W)"
                          if 1 not in self.ranks else "(F,), a sequence (T, F), or channels first: (C, H, W) or (C, D, H, W)")
        c = channels(s)
        g = self.groups(c)
        if c % g:
            k = _divisor_near(c, g)
            fix = Fix("set", f"set groups to {k}", config=(("groups", k),))
            raise ShapeError(f"{self.where}: C = {c} channels (input {fmt(s)}) do not split into groups = {g} "
                             f"equal groups: {fix.text}", fix=fix)
        return s

    def params(self, in_shapes):
        if not self.config["affine"]:
            return {}
        c = (channels(in_shapes[0]),)
        return {"gamma": Param(c, "ones"), "beta": Param(c, "zeros")}

    def macs(self, in_shapes):
        return 2 * int(np.prod(in_shapes[0]))                  # scale and shift per value

    def formulas(self, in_shapes):
        s = in_shapes[0]
        c = channels(s)
        g = self.groups(c)
        n = int(np.prod(s)) // g
        f = super().formulas(in_shapes)
        what = "features F of the (T, F) sequence, over all T steps" if len(s) == 2 else "channels"
        f["shape"] = (f"y = γ_c·(x − μ)/√(σ² + {self.config['eps']:g}) + β_c, μ and σ² of each sample's group of "
                      f"C/G = {c}/{g} = {c // g} {what} ({n:,} values); output shape = input shape = {fmt(s)}")
        if self.config["affine"]:
            f["params"] = f"γ and β per channel: 2·C = 2·{c} = {2 * c:,}"
        f["macs"] = f"2·values = 2·{int(np.prod(s))} = {2 * int(np.prod(s)):,}"
        return f

    def _rows(self, a):
        """a (B, C, …) as (B·G, C/G·S): one row per sample and group."""
        return np.ascontiguousarray(a).reshape(len(a) * self.groups(a.shape[1]), -1)

    @property
    def reads_lengths(self):
        """A (T, F) sequence's statistics run over its valid steps: ONNX takes the lengths."""
        return len(self.in_shapes[0]) == 2

    def forward(self, x, training=False):
        m = self.in_masks[0] if self.in_masks and x.ndim == 3 else None
        self.mk = None if m is None or m.all() else np.asarray(m, bool)            # (B, T) valid steps
        if self.mk is not None:
            return seqnorm.forward(self, x, self.mk)
        x = cf(x)                                              # (B, T, F) → (B, F, T): channels first
        x2 = self._rows(x)                                     # (B·G, M)
        self.xhat = np.empty_like(x2)
        self.inv = np.empty(len(x2), x2.dtype)
        one, zero = np.ones(x2.shape[1], x2.dtype), np.zeros(x2.shape[1], x2.dtype)
        _ln_fwd(x2, x2[:0, :0], one, zero, self.config["eps"], self.xhat, self.xhat, self.inv)   # y = x̂
        xhat = self.xhat.reshape(x.shape[:2] + (-1,))          # (B, C, S)
        if not self.config["affine"]:
            return cf(self.xhat.reshape(x.shape).copy())
        y = xhat * self.p["gamma"][:, None].astype(x2.dtype) + self.p["beta"][:, None].astype(x2.dtype)
        return cf(y.reshape(x.shape))

    def backward(self, dy):
        if self.mk is not None:
            return (seqnorm.backward(self, dy),)
        dy = cf(dy)
        shape = dy.shape
        dy3 = np.ascontiguousarray(dy, self.xhat.dtype).reshape(shape[:2] + (-1,))     # (B, C, S)
        xhat = self.xhat.reshape(dy3.shape)
        if self.config["affine"]:
            self.g["gamma"][...] = np.einsum("bcs,bcs->c", dy3, xhat)
            self.g["beta"][...] = dy3.sum(axis=(0, 2))
            dy3 = dy3 * self.p["gamma"][:, None].astype(dy3.dtype)        # dL/dx̂
        d2 = np.ascontiguousarray(dy3).reshape(self.xhat.shape)          # (B·G, M)
        m = d2.shape[1]
        dx = np.empty_like(d2)
        sink = np.empty((2, m), d2.dtype)                                # γ = 1 here: its sums are not needed
        _ln_bwd(d2, self.xhat, self.inv, np.ones(m, d2.dtype), dx, sink[0], sink[1], True)
        return (cf(dx.reshape(shape)),)

    def to_onnx(self, ctx, ins):
        """InstanceNormalization over (B, G, C/G·S) rows, then γ_c, β_c (opset 17 has no GroupNormalization); a (T, F)
        sequence: statistics over its valid steps (norm_sequence.py)."""
        n, s = self.name, self.in_shapes[0]
        if len(s) == 2:
            return seqnorm.to_onnx(self, ctx, ins)
        x, g, eps = ins[0], self.groups(s[0]), float(self.config["eps"])
        if g == s[0] and len(s) > 1:
            y = ctx.op("InstanceNormalization", [x, ctx.const(f"{n}/one", np.ones(g)),
                                                 ctx.const(f"{n}/zero", np.zeros(g))], f"{n}/norm", epsilon=eps)
        else:
            r = ctx.op("Reshape", [x, ctx.const(f"{n}/groups", (0, g, -1), np.int64)], f"{n}/rows")
            r = ctx.op("InstanceNormalization", [r, ctx.const(f"{n}/one", np.ones(g)),
                                                 ctx.const(f"{n}/zero", np.zeros(g))], f"{n}/norm_rows", epsilon=eps)
            y = ctx.op("Reshape", [r, ctx.const(f"{n}/shape", (0,) + tuple(s), np.int64)], f"{n}/norm")
        if not self.config["affine"]:
            return ctx.op("Identity", [y], n)
        col = (-1,) + (1,) * (len(s) - 1)                               # (C, 1, …) against (B, C, …)
        y = ctx.op("Mul", [y, ctx.const(f"{n}/gamma", self.p["gamma"].reshape(col))], f"{n}/scaled")
        return ctx.op("Add", [y, ctx.const(f"{n}/beta", self.p["beta"].reshape(col))], n)

    def torch_reference(self, xs, p, torch):
        x = xs[0].transpose(1, 2) if xs[0].ndim == 3 else xs[0]           # (B, F, T): torch's channels first
        y = torch.nn.functional.group_norm(x, self.groups(x.shape[1]), p.get("gamma"), p.get("beta"),
                                           self.config["eps"])
        return y.transpose(1, 2) if xs[0].ndim == 3 else y


@register
class GroupNorm(_Groups):
    doc = ("Normalises each sample over groups of channels: y = γ_c·(x − μ_g)/√(σ²_g + ε) + β_c, μ_g, σ²_g over "
           "the C/G channels of group g (and all their positions); the features of a (T, F) sequence, over all its "
           "steps; the same at training and evaluation.")
    fused = None          # runs on the per-layer path
    hparams = (HP("groups", "int", 2, min=1, max=1 << 14, doc="Number of groups G (divides the channels C)"),
               HP("eps", "float", 1e-5, min=1e-12, max=1.0, doc="ε added to the variance"),
               HP("affine", "bool", True, doc="Learn a scale γ and shift β per channel"))
    ranks = (1, 2, 3, 4)

    def to_torch(self):
        from ..torch_export import Emitted
        if len(self.in_shapes[0]) == 2:
            return seqnorm.to_torch(self)                              # (T, F): valid steps only
        c = self.config
        opts = (f", eps={c['eps']}" if c["eps"] != 1e-5 else "") + ("" if c["affine"] else ", affine=False")
        return Emitted(f"nn.GroupNorm({c['groups']}, {self.in_shapes[0][0]}{opts})", {"gamma": "weight", "beta": "bias"})

    @classmethod
    def samples(cls):
        return [({"groups": 2}, [(4, 3, 2)]), ({"groups": 1}, [(3, 5)]), ({"groups": 3, "affine": False}, [(2, 6)]),
                ({"groups": 2}, [(6,)]), ({"groups": 2, "eps": 1e-3}, [(4, 2, 2, 2)]),
                ({"groups": 2}, [(5, 4)], {"mask": True}), ({"groups": 2, "affine": False}, [(4, 6)], {"mask": True})]


@register
class InstanceNorm(_Groups):
    doc = ("Normalises each channel of each sample over its positions: y = γ_c·(x − μ_c)/√(σ²_c + ε) + β_c "
           "(GroupNorm with one channel per group; each feature of a (T, F) sequence over its T steps); the same at "
           "training and evaluation.")
    fused = None          # runs on the per-layer path
    hparams = (HP("eps", "float", 1e-5, min=1e-12, max=1.0, doc="ε added to the variance"),
               HP("affine", "bool", False, doc="Learn a scale γ and shift β per channel (PyTorch's default: no)"))

    def groups(self, c):
        return c

    def formulas(self, in_shapes):
        s = in_shapes[0]
        return {**super().formulas(in_shapes),
                "shape": f"y = γ_c·(x − μ_c)/√(σ²_c + {self.config['eps']:g}) + β_c, μ_c and σ²_c over the "
                         + (f"{s[0]:,} steps of feature c" if len(s) == 2 else
                            f"{int(np.prod(s[1:])):,} positions of channel c")
                         + f"; output shape = input shape = {fmt(s)}"}

    def to_torch(self):
        from ..torch_export import Emitted
        s, c = self.in_shapes[0], self.config
        if len(s) == 2:
            return seqnorm.to_torch(self)                              # (T, F): valid steps only
        opts = (f", eps={c['eps']}" if c["eps"] != 1e-5 else "") + (", affine=True" if c["affine"] else "")
        return Emitted(f"nn.InstanceNorm{len(s) - 1}d({s[0]}{opts})", {"gamma": "weight", "beta": "bias"})

    @classmethod
    def samples(cls):
        return [({}, [(3, 4, 2)]), ({"affine": True}, [(2, 5)]), ({"affine": True, "eps": 1e-3}, [(2, 3, 2, 2)]),
                ({"affine": True}, [(4, 3)], {"mask": True})]


def _window_sum(a, lo, hi):
    """out[:, c] = Σ_{o = lo … hi} a[:, c + o] over the channels that exist, a (B, C, S)."""
    out = np.zeros_like(a)
    c = a.shape[1]
    for o in range(lo, hi + 1):
        if o >= 0:
            out[:, :c - o] += a[:, o:]
        else:
            out[:, -o:] += a[:, :c + o]
    return out


@register
class LocalResponseNorm(Layer):
    doc = ("y_c = x_c / (k + α/n·Σ_{c′} x_{c′}²)^β, the sum over the n channels c − ⌊n/2⌋ … c + ⌊(n − 1)/2⌋ at the "
           "same position (AlexNet; as PyTorch and ONNX LRN); the channels of (C, H, W), the features of a (T, F) step.")
    category = "normalization"
    fused = None          # runs on the per-layer path
    hparams = (HP("size", "int", 5, min=1, max=1 << 10, doc="n: channels in each window"),
               HP("alpha", "float", 1e-4, min=0.0, max=1e6, doc="α: scale of the window's sum of squares"),
               HP("beta", "float", 0.75, min=0.0, max=1e6, doc="β: exponent"),
               HP("k", "float", 1.0, min=1e-12, max=1e6, doc="k: additive constant (ONNX: bias)"))

    def compute_output_shape(self, in_shapes):
        self._expect_rank(in_shapes[0], (2, 3, 4), "a sequence (T, F), or channels first: (C, H, W) or (C, D, H, W)")
        return in_shapes[0]

    def macs(self, in_shapes):
        return (self.config["size"] + 2) * int(np.prod(in_shapes[0]))

    def formulas(self, in_shapes):
        c, s = self.config, in_shapes[0]
        n = c["size"]
        f = super().formulas(in_shapes)
        f["shape"] = (f"y_c = x_c / ({c['k']:g} + {c['alpha']:g}/{n}·Σ x_{{c′}}² over c′ = c − {n // 2} … "
                      f"c + {(n - 1) // 2})^{c['beta']:g}; output shape = input shape = {fmt(s)}")
        f["macs"] = (f"(size + 2)·values = ({n} + 2)·{int(np.prod(s))} = {(n + 2) * int(np.prod(s)):,}")
        return f

    def forward(self, x, training=False):
        c = self.config
        n = c["size"]
        x = cf(x)                                                          # (B, F, T) for a sequence
        x3 = np.ascontiguousarray(x).reshape(x.shape[:2] + (-1,))          # (B, C, S)
        self.x3 = x3
        self.s = c["k"] + c["alpha"] / n * _window_sum(x3 * x3, -(n // 2), (n - 1) // 2)
        self.r = self.s ** -c["beta"]                                     # s^(−β)
        return cf((x3 * self.r).reshape(x.shape))

    def backward(self, dy):
        c = self.config
        n, x3 = c["size"], self.x3
        dy = cf(dy)
        dy3 = np.ascontiguousarray(dy, x3.dtype).reshape(x3.shape)
        t = dy3 * x3 * self.r / self.s                                     # dy·x·s^(−β−1)
        dx = dy3 * self.r - (2 * c["alpha"] * c["beta"] / n) * x3 * _window_sum(t, -((n - 1) // 2), n // 2)
        return (cf(dx.reshape(dy.shape)),)

    def to_onnx(self, ctx, ins):
        """ONNX LRN on (B, C, S, 1) (onnxruntime: 4-D, odd sizes); an even size, whose ONNX window would be
        PyTorch's mirrored, as a channel-window Conv of x² and y = x·(k + α/n·window)^(−β)."""
        nm, s, c = self.name, self.in_shapes[0], self.config
        n, seq = c["size"], len(s) == 2
        x, s = cf_onnx(ctx, self, ins[0]), (s[::-1] if seq else s)                        # (B, F, T) for a sequence
        x = ctx.op("Reshape", [x, ctx.const(f"{nm}/4d", (0, s[0], -1, 1), np.int64)], f"{nm}/x4")   # (B, C, S, 1)
        if n % 2:
            y = ctx.op("LRN", [x], f"{nm}/lrn", size=n, alpha=float(c["alpha"]), beta=float(c["beta"]),
                       bias=float(c["k"]))
        else:
            x = ctx.op("Transpose", [x], f"{nm}/x1", perm=[0, 3, 1, 2])                      # (B, 1, C, S)
            sq = ctx.op("Mul", [x, x], f"{nm}/squares")
            win = ctx.op("Conv", [sq, ctx.const(f"{nm}/window", np.ones((1, 1, n, 1)))], f"{nm}/sums",
                         kernel_shape=[n, 1], pads=[n // 2, 0, (n - 1) // 2, 0])            # c − ⌊n/2⌋ … c + ⌊(n−1)/2⌋
            d = ctx.op("Add", [ctx.op("Mul", [win, ctx.const(f"{nm}/alpha_n", c["alpha"] / n)], f"{nm}/scaled"),
                               ctx.const(f"{nm}/k", c["k"])], f"{nm}/base")
            y = ctx.op("Mul", [x, ctx.op("Pow", [d, ctx.const(f"{nm}/neg_beta", -c["beta"])], f"{nm}/factor")],
                       f"{nm}/lrn")
        y = ctx.op("Reshape", [y, ctx.const(f"{nm}/shape", (0,) + tuple(s), np.int64)], f"{nm}/cf" if seq else nm)
        return cf_onnx(ctx, self, y, back=True) if seq else y

    def to_torch(self):
        from ..torch_export import Emitted
        c = self.config
        return Emitted(f"nn.LocalResponseNorm({c['size']}, alpha={c['alpha']!r}, beta={c['beta']!r}, k={c['k']!r})",
                       call=cf_call(self))

    def torch_reference(self, xs, p, torch):
        c, seq = self.config, xs[0].ndim == 3
        y = torch.nn.functional.local_response_norm(xs[0].transpose(1, 2) if seq else xs[0], c["size"], c["alpha"],
                                                    c["beta"], c["k"])
        return y.transpose(1, 2) if seq else y

    @classmethod
    def samples(cls):
        return [({"size": 3, "alpha": 0.5}, [(5, 4)]), ({"size": 2, "alpha": 0.3, "beta": 0.5, "k": 2.0}, [(4, 2, 3)]),
                ({"size": 5, "alpha": 1.0}, [(3, 2, 2)]), ({"size": 4, "alpha": 0.7}, [(6, 2, 1, 2)])]

