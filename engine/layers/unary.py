"""Math: one unary function per value (ONNX's Abs, Neg, Exp, Log, Sqrt, Reciprocal, the trigonometric and hyperbolic
functions and their inverses, Erf, Floor, Ceil, Round, Sign), through the pointwise kernel (engine/kernels.py) on
the per-layer and the fused path; Power: x to a constant exponent (ONNX Pow)."""
import numpy as np

from ..hparams import HP
from ..kernels import K_MATH, MATH
from .activations import _Activation
from .base import register
from .pointwise import _Pointwise

# function -> (ONNX operator, y, dy/dx, sample domain (low, high) or None for all reals); torch.<function> is it
FUNCTIONS = {
    "abs": ("Abs", "|x|", "sign(x)", None),
    "neg": ("Neg", "−x", "−1", None),
    "exp": ("Exp", "eˣ", "eˣ", None),
    "log": ("Log", "ln x", "1/x (x > 0)", (0.1, 3.0)),
    "sqrt": ("Sqrt", "√x", "1/(2√x) (x ≥ 0)", (0.1, 3.0)),
    "reciprocal": ("Reciprocal", "1/x", "−1/x²", (0.3, 3.0)),
    "sin": ("Sin", "sin x", "cos x", None),
    "cos": ("Cos", "cos x", "−sin x", None),
    "tan": ("Tan", "tan x", "1 + tan²x", (-1.2, 1.2)),
    "asin": ("Asin", "arcsin x", "1/√(1 − x²) (|x| ≤ 1)", (-0.9, 0.9)),
    "acos": ("Acos", "arccos x", "−1/√(1 − x²) (|x| ≤ 1)", (-0.9, 0.9)),
    "atan": ("Atan", "arctan x", "1/(1 + x²)", None),
    "sinh": ("Sinh", "sinh x", "cosh x", None),
    "cosh": ("Cosh", "cosh x", "sinh x", None),
    "asinh": ("Asinh", "arsinh x", "1/√(x² + 1)", None),
    "acosh": ("Acosh", "arcosh x", "1/√(x² − 1) (x ≥ 1)", (1.1, 3.0)),
    "atanh": ("Atanh", "artanh x", "1/(1 − x²) (|x| < 1)", (-0.9, 0.9)),
    "erf": ("Erf", "erf x = (2/√π) ∫₀ˣ e^(−t²) dt", "(2/√π)·e^(−x²)", None),
    "floor": ("Floor", "⌊x⌋", "0", None),
    "ceil": ("Ceil", "⌈x⌉", "0", None),
    "round": ("Round", "x rounded to the nearest integer, halves to even", "0", None),
    "sign": ("Sign", "sign(x) ∈ {−1, 0, 1}", "0", None),
}
assert tuple(FUNCTIONS) == MATH

TORCH = '''class Math(nn.Module):
    """y = torch.<function>(x) per value (torch.abs, torch.sin, torch.erf, torch.round, ...)."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return getattr(torch, self.function)(x)
'''


@register
class Math(_Pointwise):
    fused = _Pointwise.fused
    doc = ("y = f(x) per value for a function f: abs, neg, exp, log, sqrt, reciprocal, sin, cos, tan, asin, acos, "
           "atan, sinh, cosh, asinh, acosh, atanh, erf, floor, ceil, round, sign (the last four pass no gradient); "
           "outside f's domain (log of x ≤ 0, asin of |x| > 1, …) y is NaN.")
    hparams = (HP("function", "choice", "abs", choices=MATH, doc="f: the function applied to every value"),)

    @property
    def kind(self):
        return K_MATH + MATH.index(self.config["function"])

    def formula(self):
        return f"y = {FUNCTIONS[self.config['function']][1]}"

    def formulas(self, in_shapes):
        f = super().formulas(in_shapes)
        return {**f, "shape": f"{f['shape']}; dy/dx = {FUNCTIONS[self.config['function']][2]}"}

    def to_onnx(self, ctx, ins):
        return ctx.op(FUNCTIONS[self.config["function"]][0], ins, self.name)

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"Math({self.config['function']!r})", helpers=("Math",), sources={"Math": TORCH})

    def torch_reference(self, xs, p, torch):
        return getattr(torch, self.config["function"])(xs[0])

    @classmethod
    def samples(cls):
        out = []
        for i, (f, (*_, dom)) in enumerate(FUNCTIONS.items()):      # every other one on variable-length sequences
            opts = {"domain": dom} if dom else {}
            if i % 2:
                opts["mask"] = True
            out.append(({"function": f}, [(4, 3) if i % 2 else (2, 3)], opts))
        return out + [({"function": "reciprocal"}, [(5,)], {"domain": (-3.0, -0.3)}),
                      ({"function": "exp"}, [(2, 2, 3)]), ({"function": "round"}, [(2, 2, 3)])]


TORCH_POWER = '''class Power(nn.Module):
    """y = x ** exponent per value."""

    def __init__(self, exponent):
        super().__init__()
        self.exponent = exponent

    def forward(self, x):
        return torch.pow(x, self.exponent)
'''


@register
class Power(_Activation):
    fused = None          # runs on the per-layer path
    doc = "y = xᵖ per value for a constant exponent p (dy/dx = p·xᵖ⁻¹); a negative x and a non-integer p give NaN."
    hparams = (HP("exponent", "float", 2.0, min=-1e6, max=1e6, doc="p: the constant exponent"),)

    def formula(self):
        return f"y = x^{self.config['exponent']:g}"

    def formulas(self, in_shapes):
        f, p = super().formulas(in_shapes), self.config["exponent"]
        return {**f, "shape": f"{f['shape']}; dy/dx = {p:g}·x^{p - 1:g}"}

    def forward(self, x, training=False):
        self.x = x
        return np.power(x, self.config["exponent"])                  # float32 stays float32

    def backward(self, dy):
        p = self.config["exponent"]
        if p == 0:                                                    # y = 1: no gradient, as torch.pow
            return (np.zeros(self.x.shape, self.x.dtype),)
        return (np.multiply(dy, p * np.power(self.x, p - 1), dtype=self.x.dtype),)

    def to_onnx(self, ctx, ins):
        return ctx.op("Pow", [ins[0], ctx.const(f"{self.name}/exponent", self.config["exponent"])], self.name)

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"Power({self.config['exponent']!r})", helpers=("Power",), sources={"Power": TORCH_POWER})

    def torch_reference(self, xs, p, torch):
        return torch.pow(xs[0], self.config["exponent"])

    @classmethod
    def samples(cls):
        pos = {"domain": (0.2, 2.0)}
        return [({}, [(2, 3)]), ({"exponent": 3.0}, [(4, 3)], {"mask": True}), ({"exponent": 1.5}, [(2, 3)], pos),
                ({"exponent": -1.0}, [(5,)], pos), ({"exponent": 0.5}, [(2, 2, 3)], pos), ({"exponent": 0.0}, [(4,)])]
