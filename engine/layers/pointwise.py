"""Elementwise activations with numbers of their own (PyTorch's definitions): GELU, LeakyReLU, ELU, SELU, SiLU,
Softplus, Mish, Clip, and PReLU with learned slopes. One kernel (engine/kernels.py
pointwise) computes y and dy/dx for all but PReLU, on the per-layer and the fused path."""
import numpy as np

from .. import fused as F
from ..errors import ConfigError
from ..hparams import HP
from ..kernels import (K_CLIP, K_ELU, K_GELU_ERF, K_GELU_TANH, K_LEAKY, K_MISH, K_SELU, K_SILU, K_SOFTPLUS, SQRT_2_PI,
                       pointwise)
from .activations import _Activation, _each
from .base import Param, register

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946   # PyTorch's


class _Pointwise(_Activation):
    """y = f(x) through `pointwise` with this layer's kind and numbers; keeps f′(x) for backward."""

    kind = None

    def numbers(self):
        """(a, b) of the kernel: the values of torch_args (0 where there are fewer)."""
        return tuple([float(self.config[k]) for k in self.torch_args] + [0.0, 0.0])[:2]

    def forward(self, x, training=False):
        y, self.d = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
        kind, (a, b) = self.kind, self.numbers()
        _each(lambda x, y, d: pointwise(kind, a, b, x, y, d), x, y, self.d)
        return y

    def backward(self, dy):
        return (np.multiply(dy, self.d, dtype=self.d.dtype),)

    def fused(self, b):
        """One POINTWISE row: f′(x) in a buffer, the numbers (a, b) in the first two values of another."""
        n, (u, v) = b.size(), self.numbers()
        d, c = b.buffer("d", n), b.buffer("numbers", 2)

        def numbers(acts, nb):
            acts[c * nb:c * nb + 2] = u, v                   # sample 0's values of the buffer
        b.before_step(numbers)
        b.row(F.POINTWISE, a=b.src(), b=d, o=b.out(), n1=n, n2=self.kind, p1=c)


@register
class GELU(_Pointwise):
    fused = _Pointwise.fused
    doc = ("y = x·Φ(x) = ½x(1 + erf(x/√2)), Φ the standard normal CDF (the transformer feed-forward activation); "
           "approximate = tanh: ½x(1 + tanh(√(2/π)(x + 0.044715x³))).")
    hparams = (HP("approximate", "choice", "none", choices=("none", "tanh"),
                  doc="none: the exact erf form; tanh: the tanh approximation (GPT-2, BERT)"),)

    @property
    def kind(self):
        return K_GELU_TANH if self.config["approximate"] == "tanh" else K_GELU_ERF

    def formula(self):
        if self.config["approximate"] == "tanh":
            return "y = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))"
        return "y = x·Φ(x) = ½x(1 + erf(x/√2))"

    def to_onnx(self, ctx, ins):
        n, x = self.name, ins[0]                                   # opset 17 has no Gelu
        if self.config["approximate"] == "tanh":
            x3 = ctx.op("Mul", [ctx.op("Mul", [x, x], f"{n}/x2"), x], f"{n}/x3")
            u = ctx.op("Add", [x, ctx.op("Mul", [x3, ctx.const(f"{n}/c", 0.044715)], f"{n}/cx3")], f"{n}/inner")
            e = ctx.op("Tanh", [ctx.op("Mul", [u, ctx.const(f"{n}/sqrt_2_pi", SQRT_2_PI)], f"{n}/u")], f"{n}/tanh")
        else:
            e = ctx.op("Erf", [ctx.op("Mul", [x, ctx.const(f"{n}/rsqrt2", np.sqrt(0.5))], f"{n}/scaled")], f"{n}/erf")
        e = ctx.op("Add", [e, ctx.const(f"{n}/one", 1.0)], f"{n}/one_plus")
        return ctx.op("Mul", [ctx.op("Mul", [x, e], f"{n}/x_times"), ctx.const(f"{n}/half", 0.5)], n)

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted("nn.GELU(approximate='tanh')" if self.config["approximate"] == "tanh" else "nn.GELU()")

    def torch_reference(self, xs, p, torch):
        return torch.nn.functional.gelu(xs[0], approximate=self.config["approximate"])

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"approximate": "tanh"}, [(2, 5)]),
                                        ({"approximate": "tanh"}, [(4, 3)], {"mask": True})]


@register
class LeakyReLU(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = x for x > 0, α·x otherwise (α = negative_slope)."
    hparams = (HP("negative_slope", "float", 0.01, min=-1e6, max=1e6, doc="Slope α for x ≤ 0"),)
    kind = K_LEAKY
    onnx_op, onnx_attrs = "LeakyRelu", {"negative_slope": "alpha"}
    torch_name, torch_args = ("LeakyReLU", "leaky_relu"), ("negative_slope",)

    def formula(self):
        return f"y = x for x > 0, {self.config['negative_slope']:g}·x otherwise"

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"negative_slope": 0.2}, [(3, 2, 2)])]


@register
class ELU(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = x for x > 0, α(eˣ − 1) otherwise."
    hparams = (HP("alpha", "float", 1.0, min=0.0, max=1e6, doc="α: the value approached as x → −∞ is −α"),)
    kind = K_ELU
    onnx_op, onnx_attrs = "Elu", {"alpha": "alpha"}
    torch_name, torch_args = ("ELU", "elu"), ("alpha",)

    def formula(self):
        return f"y = x for x > 0, {self.config['alpha']:g}·(eˣ − 1) otherwise"

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"alpha": 0.5}, [(6,)])]


@register
class SELU(_Pointwise):
    fused = _Pointwise.fused
    doc = ("y = λ·x for x > 0, λ·α(eˣ − 1) otherwise; self-normalising with PyTorch's "
           f"λ = {SELU_SCALE:.4f}…, α = {SELU_ALPHA:.4f}….")
    hparams = (HP("alpha", "float", SELU_ALPHA, min=0.0, max=1e6, doc="α (self-normalising: 1.6733)"),
               HP("scale", "float", SELU_SCALE, min=0.0, max=1e6, doc="λ (self-normalising: 1.0507)"))
    kind = K_SELU
    onnx_op, onnx_attrs = "Selu", {"alpha": "alpha", "scale": "gamma"}
    torch_args = ("alpha", "scale")
    TORCH = '''class ScaledELU(nn.Module):
    """scale·ELU(x; alpha): SELU with other numbers than torch's."""

    def __init__(self, alpha, scale):
        super().__init__()
        self.alpha, self.scale = alpha, scale

    def forward(self, x):
        return self.scale * nn.functional.elu(x, self.alpha)
'''

    def formula(self):
        a, s = self.config["alpha"], self.config["scale"]
        return f"y = {s:.5g}·x for x > 0, {s:.5g}·{a:.5g}·(eˣ − 1) otherwise"

    def _standard(self):
        return self.config["alpha"] == SELU_ALPHA and self.config["scale"] == SELU_SCALE

    def to_torch(self):
        from ..torch_export import Emitted
        if self._standard():
            return Emitted("nn.SELU()")
        return Emitted(f"ScaledELU({self.config['alpha']!r}, {self.config['scale']!r})", helpers=("ScaledELU",),
                       sources={"ScaledELU": self.TORCH})

    def torch_reference(self, xs, p, torch):
        if self._standard():
            return torch.nn.functional.selu(xs[0])
        return self.config["scale"] * torch.nn.functional.elu(xs[0], self.config["alpha"])

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"alpha": 2.0, "scale": 3.0}, [(6,)])]


@register
class SiLU(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = x·σ(x) = x / (1 + e^(−x)) (swish)."
    kind = K_SILU
    torch_name = ("SiLU", "silu")

    def to_onnx(self, ctx, ins):
        return ctx.op("Mul", [ins[0], ctx.op("Sigmoid", ins, f"{self.name}/sigmoid")], self.name)


@register
class Softplus(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = ln(1 + e^(β·x))/β, and y = x where β·x > threshold (as PyTorch)."
    hparams = (HP("beta", "float", 1.0, min=1e-6, max=1e6, doc="β: sharpness (large β → ReLU)"),
               HP("threshold", "float", 20.0, min=0.0, max=1e6, doc="Above β·x > threshold, y = x"))
    kind = K_SOFTPLUS
    torch_name, torch_args = ("Softplus", "softplus"), ("beta", "threshold")

    def formula(self):
        b, t = self.config["beta"], self.config["threshold"]
        return f"y = ln(1 + e^({b:g}·x))/{b:g}, and y = x where {b:g}·x > {t:g}"

    def to_onnx(self, ctx, ins):
        n, (b, t) = self.name, self.numbers()
        z = ctx.op("Mul", [ins[0], ctx.const(f"{n}/beta", b)], f"{n}/bx")
        s = ctx.op("Div", [ctx.op("Softplus", [z], f"{n}/softplus"), ctx.const(f"{n}/beta_div", b)], f"{n}/smooth")
        big = ctx.op("Greater", [z, ctx.const(f"{n}/threshold", t)], f"{n}/linear")
        return ctx.op("Where", [big, ins[0], s], n)

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"beta": 2.0, "threshold": 1.0}, [(3, 4)])]


@register
class Mish(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = x·tanh(ln(1 + eˣ))."
    kind = K_MISH
    torch_name = ("Mish", "mish")

    def to_onnx(self, ctx, ins):                                   # opset 17 has no Mish
        t = ctx.op("Tanh", [ctx.op("Softplus", ins, f"{self.name}/softplus")], f"{self.name}/tanh")
        return ctx.op("Mul", [ins[0], t], self.name)


@register
class Clip(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = min(max(x, min), max); gradient 1 for min ≤ x ≤ max, else 0 (ReLU6: min 0, max 6)."
    hparams = (HP("min", "float", -1.0, min=-1e30, max=1e30, doc="Lower bound"),
               HP("max", "float", 1.0, min=-1e30, max=1e30, doc="Upper bound"))
    kind = K_CLIP
    torch_name, torch_args = ("Hardtanh", "hardtanh"), ("min", "max")

    def __init__(self, name="", **config):
        super().__init__(name, **config)
        if self.config["min"] > self.config["max"]:
            raise ConfigError(f"{self.where}: min = {self.config['min']:g} is above max = {self.config['max']:g}")

    def formula(self):
        return f"y = min(max(x, {self.config['min']:g}), {self.config['max']:g})"

    def to_onnx(self, ctx, ins):
        n = self.name
        return ctx.op("Clip", [ins[0], ctx.const(f"{n}/min", self.config["min"]),
                               ctx.const(f"{n}/max", self.config["max"])], n)


    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({"min": 0.0, "max": 0.5}, [(2, 3, 4)]), ({"min": -0.5, "max": 0.3}, [(4, 3)],
                                                                            {"mask": True})]


@register
class PReLU(_Activation):
    fused = None          # runs on the per-layer path
    doc = ("y = x for x > 0, a·x otherwise, with a learned slope a: one for all values or one per channel "
           "(features of (F,) and (T, F), channels of (C, …)).")
    hparams = (HP("per_channel", "bool", False, doc="One slope per channel/feature (else one shared slope)"),
               HP("init", "float", 0.25, min=-1e6, max=1e6, doc="Starting slope (PyTorch: 0.25)"))

    def _channels(self, s):
        return s[-1] if len(s) <= 2 else s[0]                  # F of (F,), (T, F); C of (C, H, W)

    def params(self, in_shapes):
        n = self._channels(in_shapes[0]) if self.config["per_channel"] else 1
        return {"a": Param((n,), self.config["init"])}

    def formula(self):
        return "y = x for x > 0, a·x otherwise"

    def formulas(self, in_shapes):
        f = super().formulas(in_shapes)
        c = self._channels(in_shapes[0])
        if self.config["per_channel"]:
            f["params"] = f"one slope a per channel: C = {c:,}"
        else:
            f["params"] = "one shared slope a = 1"
        return f

    def _slopes(self, nd, a=None):
        """The slopes shaped to broadcast against a (B, …) input of nd axes."""
        a = self.p["a"] if a is None else a
        return a.reshape((-1,) + (1,) * (nd - 2)) if nd > 3 else a

    def forward(self, x, training=False):
        self.x = x
        a = self._slopes(x.ndim).astype(x.dtype, copy=False)
        return np.where(x > 0, x, a * x)

    def backward(self, dy):
        x, a = self.x, self._slopes(self.x.ndim)
        neg = x <= 0
        dx = np.where(neg, a * dy, dy).astype(x.dtype, copy=False)
        da = np.where(neg, dy * x, 0)                           # (B, …)
        axes = tuple(i for i in range(x.ndim) if not (i == x.ndim - 1 and x.ndim <= 3 or i == 1 and x.ndim > 3))
        self.g["a"][...] = da.sum(axis=axes if self.p["a"].size > 1 else None).reshape(self.g["a"].shape)
        return (dx,)

    def to_onnx(self, ctx, ins):
        nd = len(self.in_shapes[0]) + 1
        return ctx.op("PRelu", [ins[0], ctx.const(f"{self.name}/slope", self._slopes(nd))], self.name)

    def to_torch(self):
        from ..torch_export import Emitted
        s, n = self.in_shapes[0], self.params(self.in_shapes)["a"].shape[0]
        seq = len(s) == 2 and n > 1                             # (T, F): torch's channel axis is 1, ours F
        return Emitted(f"nn.PReLU({n}, init={self.config['init']!r})" if n > 1 else
                       f"nn.PReLU(init={self.config['init']!r})", {"a": "weight"},
                       call="{self}({x0}.transpose(1, 2)).transpose(1, 2)" if seq else "{self}({args})")

    def torch_reference(self, xs, p, torch):
        x = xs[0]
        return torch.where(x > 0, x, self._slopes(x.ndim, p["a"]) * x)

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({"per_channel": True}, [(4,)]), ({"per_channel": True}, [(3, 2, 2)]),
                ({"per_channel": True}, [(4, 3)], {"mask": True}), ({}, [(2, 3, 4)])]
