"""More elementwise activations of torch.nn and ONNX: CELU, Softsign, HardSigmoid, Hardswish, ThresholdedReLU,
Hardshrink, Softshrink; the same kernel (engine/kernels.py pointwise) as pointwise.py on both paths."""
from ..hparams import HP
from ..kernels import K_CELU, K_HARDSIGMOID, K_HARDSWISH, K_SHRINK, K_SOFTSIGN, K_THRESHOLD
from .activations import _Activation
from .base import register
from .pointwise import _Pointwise


@register
class CELU(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = x for x > 0, α(e^(x/α) − 1) otherwise (continuously differentiable ELU)."
    hparams = (HP("alpha", "float", 1.0, min=1e-6, max=1e6, doc="α: the value approached as x → −∞ is −α"),)
    kind = K_CELU
    onnx_op, onnx_attrs = "Celu", {"alpha": "alpha"}
    torch_name, torch_args = ("CELU", "celu"), ("alpha",)

    def formula(self):
        a = self.config["alpha"]
        return f"y = x for x > 0, {a:g}·(e^(x/{a:g}) − 1) otherwise"

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"alpha": 0.5}, [(6,)])]


@register
class Softsign(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = x / (1 + |x|)."
    kind = K_SOFTSIGN
    onnx_op, torch_name = "Softsign", ("Softsign", "softsign")


HARDSIGMOID = '''class HardSigmoid(nn.Module):
    """max(0, min(1, alpha·x + beta))."""

    def __init__(self, alpha, beta):
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, x):
        return torch.clamp(self.alpha * x + self.beta, 0.0, 1.0)
'''


@register
class HardSigmoid(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = max(0, min(1, α·x + β)); PyTorch's Hardsigmoid is α = 1/6, β = ½ (ONNX's default: α = 0.2)."
    hparams = (HP("alpha", "float", 1 / 6, min=-1e6, max=1e6, doc="α: slope"),
               HP("beta", "float", 0.5, min=-1e6, max=1e6, doc="β: value at x = 0"))
    kind = K_HARDSIGMOID
    onnx_op, onnx_attrs = "HardSigmoid", {"alpha": "alpha", "beta": "beta"}
    torch_args = ("alpha", "beta")

    def formula(self):
        return f"y = max(0, min(1, {self.config['alpha']:.4g}·x + {self.config['beta']:g}))"

    def to_torch(self):
        from ..torch_export import Emitted
        if self.config["alpha"] == 1 / 6 and self.config["beta"] == 0.5:
            return Emitted("nn.Hardsigmoid()")
        return Emitted(f"HardSigmoid({self.config['alpha']!r}, {self.config['beta']!r})", helpers=("HardSigmoid",),
                       sources={"HardSigmoid": HARDSIGMOID})

    def torch_reference(self, xs, p, torch):
        return torch.clamp(self.config["alpha"] * xs[0] + self.config["beta"], 0.0, 1.0)

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"alpha": 0.2, "beta": 0.4}, [(3, 4)])]


@register
class Hardswish(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = x·max(0, min(1, x/6 + ½)): 0 below −3, x above 3 (MobileNetV3)."
    kind = K_HARDSWISH
    onnx_op, torch_name = "HardSwish", ("Hardswish", "hardswish")


@register
class ThresholdedReLU(_Pointwise):
    fused = _Pointwise.fused
    doc = "y = x for x > θ, 0 otherwise (ONNX ThresholdedRelu; PyTorch Threshold(θ, 0))."
    hparams = (HP("threshold", "float", 1.0, min=-1e6, max=1e6, doc="θ: values at or below it become 0"),)
    kind = K_THRESHOLD
    onnx_op, onnx_attrs = "ThresholdedRelu", {"threshold": "alpha"}
    torch_args = ("threshold",)

    def formula(self):
        return f"y = x for x > {self.config['threshold']:g}, 0 otherwise"

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"nn.Threshold({self.config['threshold']!r}, 0.0)")

    def torch_reference(self, xs, p, torch):
        return torch.nn.functional.threshold(xs[0], self.config["threshold"], 0.0)

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"threshold": -0.3}, [(6,)])]


class _Shrink(_Pointwise):
    """ONNX Shrink with bias 0 (hard) or λ (soft)."""

    hparams = (HP("lambd", "float", 0.5, min=0.0, max=1e6, doc="λ: values within ±λ become 0"),)
    kind = K_SHRINK
    soft = False

    def numbers(self):
        lam = self.config["lambd"]
        return lam, lam if self.soft else 0.0

    def to_onnx(self, ctx, ins):
        lam, bias = self.numbers()
        return ctx.op("Shrink", ins, self.name, lambd=float(lam), bias=float(bias))

    @classmethod
    def samples(cls):
        return _Activation.samples() + [({"lambd": 0.2}, [(2, 5)])]


@register
class Hardshrink(_Shrink):
    fused = _Pointwise.fused
    doc = "y = x where |x| > λ, 0 otherwise."
    torch_name, torch_args = ("Hardshrink", "hardshrink"), ("lambd",)

    def formula(self):
        return f"y = x where |x| > {self.config['lambd']:g}, 0 otherwise"


@register
class Softshrink(_Shrink):
    fused = _Pointwise.fused
    doc = "y = x − λ for x > λ, x + λ for x < −λ, 0 otherwise."
    torch_name, torch_args = ("Softshrink", "softshrink"), ("lambd",)
    soft = True

    def formula(self):
        lam = self.config["lambd"]
        return f"y = x − {lam:g} for x > {lam:g}, x + {lam:g} for x < −{lam:g}, 0 otherwise"
