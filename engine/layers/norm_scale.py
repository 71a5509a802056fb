"""Normalisation by a norm, without centring: RMSNorm over each sample's last axes, LpNormalize along one axis
(PyTorch's definitions)."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, Param, fmt, register
from .normalization import AXES, _LastAxes


@register
class RMSNorm(_LastAxes):
    doc = ("Scales each sample by the root mean square of its last axes (features of (F,) and (T, F)): "
           "y = γ·x/√(mean(x²) + ε), without centring (LLaMA; PyTorch nn.RMSNorm, ONNX RMSNormalization).")
    fused = None          # runs on the per-layer path
    hparams = (HP("eps", "float", 1e-6, min=1e-12, max=1.0, doc="ε added to the mean square"), AXES,
               HP("affine", "bool", True, doc="Learn a scale γ per value of those axes"))

    def params(self, in_shapes):
        return {"gamma": Param(self._normalized(in_shapes[0]), "ones")} if self.config["affine"] else {}

    def formulas(self, in_shapes):
        f, n = self._normalized(in_shapes[0]), int(np.prod(in_shapes[0]))
        m = int(np.prod(f))
        out = {**super().formulas(in_shapes),
               "shape": (f"y = γ·x/√(mean(x²) + {self.config['eps']:g}), the mean over each sample's last "
                         f"{len(f)} ax{'is' if len(f) == 1 else 'es'} {fmt(f)} ({m:,} values); output shape = "
                         f"input shape = {fmt(in_shapes[0])}"),
               "macs": f"2·values = 2·{n} = {2 * n:,}"}
        if self.config["affine"]:
            out["params"] = f"γ per value of {fmt(f)} = {m:,}"
        return out

    def forward(self, x, training=False):
        x2 = self._rows(x)                                     # (M, F)
        self.inv = 1.0 / np.sqrt(np.mean(np.square(x2, dtype=np.float64), axis=1, keepdims=True)
                                 + self.config["eps"])         # (M, 1)
        self.xhat = (x2 * self.inv).astype(x.dtype)
        y = self.xhat * self.p["gamma"].reshape(-1).astype(x.dtype) if self.config["affine"] else self.xhat.copy()
        return y.reshape(x.shape)

    def backward(self, dy):
        dy2 = np.ascontiguousarray(dy, self.xhat.dtype).reshape(self.xhat.shape)   # (M, F)
        g = dy2
        if self.config["affine"]:
            self.g["gamma"].reshape(-1)[...] = np.einsum("mf,mf->f", dy2, self.xhat)
            g = dy2 * self.p["gamma"].reshape(-1)
        dx = self.inv * (g - self.xhat * np.mean(g * self.xhat, axis=1, keepdims=True))   # x̂ = x·inv depends on x
        return (dx.astype(self.xhat.dtype).reshape(dy.shape),)

    def to_onnx(self, ctx, ins):
        """x / √(ReduceMean(x²) + ε) · γ (opset 17 has no RMSNormalization)."""
        n, k = self.name, self.config["axes"]
        ms = ctx.op("ReduceMean", [ctx.op("Mul", [ins[0], ins[0]], f"{n}/squares")], f"{n}/mean_square",
                    axes=list(range(-k, 0)), keepdims=1)               # ReduceMean takes attribute axes in opset 17
        r = ctx.op("Sqrt", [ctx.op("Add", [ms, ctx.const(f"{n}/eps", self.config["eps"])], f"{n}/plus_eps")], f"{n}/rms")
        y = ctx.op("Div", [ins[0], r], f"{n}/normalized" if self.config["affine"] else n)
        return ctx.op("Mul", [y, ctx.const(f"{n}/gamma", self.p["gamma"])], n) if self.config["affine"] else y

    def to_torch(self):
        from ..torch_export import Emitted
        f = self._normalized(self.in_shapes[0])
        aff = "" if self.config["affine"] else ", elementwise_affine=False"
        return Emitted(f"nn.RMSNorm({f[0] if len(f) == 1 else f}, eps={self.config['eps']!r}{aff})", {"gamma": "weight"})

    def torch_reference(self, xs, p, torch):
        f = self._normalized(xs[0].shape[1:])
        return torch.nn.functional.rms_norm(xs[0], f, p.get("gamma"), self.config["eps"])

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({"eps": 1e-3}, [(3, 4)]), ({}, [(4, 3)], {"mask": True}), ({"axes": 2}, [(3, 4)]),
                ({"axes": 3, "affine": False}, [(2, 3, 2)])]


LPNORM = '''class LpNormalize(nn.Module):
    """x / max(‖x‖_p, eps) along dim (torch.nn.functional.normalize)."""

    def __init__(self, p, dim, eps):
        super().__init__()
        self.p, self.dim, self.eps = p, dim, eps

    def forward(self, x):
        return nn.functional.normalize(x, self.p, self.dim, self.eps)
'''


@register
class LpNormalize(Layer):
    doc = ("Divides each vector along an axis by its p-norm: y = x / max(‖x‖_p, ε), ‖x‖_p = (Σ|x_i|^p)^(1/p) "
           "(unit-length embeddings; PyTorch F.normalize, ONNX LpNormalization).")
    category = "normalization"
    fused = None          # runs on the per-layer path
    hparams = (HP("p", "choice", 2, choices=(1, 2), doc="1: sum of magnitudes; 2: Euclidean length"),
               HP("axis", "int", -1, min=-4, max=3, doc="The axis the norm runs along, batch excluded (−1: last)"),
               HP("eps", "float", 1e-12, min=0.0, max=1.0, doc="ε: the smallest norm divided by"))

    def _axis(self, rank):
        a = self.config["axis"]
        if not -rank <= a < rank:
            raise ShapeError(f"{self.where} normalises along axis {a} but its input has only {rank} axes")
        return a % rank

    def compute_output_shape(self, in_shapes):
        self._axis(len(in_shapes[0]))
        return in_shapes[0]

    def macs(self, in_shapes):
        return 2 * int(np.prod(in_shapes[0]))

    def formulas(self, in_shapes):
        s, p = in_shapes[0], self.config["p"]
        a = self._axis(len(s))
        norm = "Σ|x_i|" if p == 1 else "√(Σ x_i²)"
        return {**super().formulas(in_shapes),
                "shape": f"y = x / max({norm}, {self.config['eps']:g}) along axis {a} ({s[a]} values); output shape "
                         f"= input shape = {fmt(s)}",
                "macs": f"2·values = 2·{int(np.prod(s))} = {2 * int(np.prod(s)):,}"}

    def forward(self, x, training=False):
        a = self._axis(x.ndim - 1) + 1                               # + 1: the batch axis
        m = self.in_masks[0] if self.in_masks else None
        if m is not None and x.ndim == 3 and a == 1 and not m.all():
            raise ShapeError(f"{self.where} normalises along the steps of a variable-length (T, F) sequence, so "
                             "padded steps would change the valid ones: use axis −1")
        p, self.a, self.x = self.config["p"], a, x
        self.n = np.abs(x).sum(a, keepdims=True) if p == 1 else np.sqrt(np.square(x).sum(a, keepdims=True))
        self.d = np.maximum(self.n, self.config["eps"])
        self.y = x / self.d
        return self.y

    def backward(self, dy):
        """dx = (dy − s·Σ dy·y)/‖x‖ with s = sign(x) (p = 1) or y (p = 2) where ‖x‖ > ε; dy/ε where it is not."""
        s = np.sign(self.x) if self.config["p"] == 1 else self.y
        inner = (dy * self.y).sum(self.a, keepdims=True)
        dx = np.where(self.n > self.config["eps"], dy - s * inner, dy) / self.d
        return (dx.astype(self.x.dtype, copy=False),)

    def to_onnx(self, ctx, ins):
        """ReduceL1 or ReduceL2 (kept axis), Max with ε, Div (ONNX LpNormalization has no ε)."""
        n, a = self.name, self._axis(len(self.in_shapes[0])) + 1
        r = ctx.op("ReduceL1" if self.config["p"] == 1 else "ReduceL2", ins, f"{n}/norm", axes=[a], keepdims=1)
        r = ctx.op("Max", [r, ctx.const(f"{n}/eps", self.config["eps"])], f"{n}/at_least_eps")
        return ctx.op("Div", [ins[0], r], n)

    def to_torch(self):
        from ..torch_export import Emitted
        c, a = self.config, self._axis(len(self.in_shapes[0])) + 1
        return Emitted(f"LpNormalize({c['p']}, {a}, {c['eps']!r})", helpers=("LpNormalize",),
                       sources={"LpNormalize": LPNORM})

    def torch_reference(self, xs, p, torch):
        c = self.config
        return torch.nn.functional.normalize(xs[0], c["p"], self._axis(xs[0].ndim - 1) + 1, c["eps"])

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({"p": 1}, [(3, 4)]), ({"axis": 0}, [(3, 4)]), ({"p": 1, "axis": 1}, [(2, 3, 2)]),
                ({}, [(4, 3)], {"mask": True})]
