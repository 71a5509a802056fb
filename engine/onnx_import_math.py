"""ONNX import handlers of engine/layers/unary.py (Math: Abs, Neg, Exp, Log, …, Sign), reduce.py (ReduceX over
feature axes) and the two-input Div (Divide)."""
from .layers.unary import FUNCTIONS
from .onnx_import import handles
from .onnx_import_pointwise import _pointwise

MATH_OPS = {op: f for f, (op, *_) in FUNCTIONS.items()}     # ONNX op -> Math's function


@handles(*MATH_OPS)
def _math(c, node):
    _pointwise(c, node, "Math", {"function": MATH_OPS[node.op_type]})
