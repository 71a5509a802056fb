"""ONNX import handlers of engine/layers/unary.py (Math: Abs, Neg, Exp, Log, …, Sign; Power: Pow with a constant
exponent) and reduce.py (ReduceX over feature axes). Div of two tensors (Divide): engine/onnx_import_pointwise.py."""
import numpy as np

from .layers.reduce import OPS as REDUCE
from .layers.unary import FUNCTIONS
from .onnx_import import OPS, Unsupported, _attrs, handles
from .onnx_import_pointwise import _pointwise

MATH_OPS = {op: f for f, (op, *_) in FUNCTIONS.items()}     # ONNX op -> Math's function


@handles(*MATH_OPS)
def _math(c, node):
    _pointwise(c, node, "Math", {"function": MATH_OPS[node.op_type]})


@handles("Pow")
def _pow(c, node):
    ins = c.data(node)
    if len(ins) != 1 or node.input[0] != ins[0]:
        raise Unsupported("raises to a computed exponent (only x to a constant power has a layer, Power)")
    p = np.asarray(c.const(node, 1, "exponent"))
    if p.size != 1 or p.ndim > len(c.values[ins[0]].shape) + 1:
        raise Unsupported(f"an exponent of shape {p.shape}: Power takes one constant exponent for every value")
    _pointwise(c, node, "Power", {"exponent": float(p.reshape(-1)[0])})


# ---- ReduceX over feature axes: a Reduce layer (ReduceMean/ReduceMax over all of (C, …)'s spatial axes or a
# sequence's steps stay a global pool / TimePool: engine/onnx_import_ops.py) ----
REDUCE_OPS = {op: k for k, (op, *_) in REDUCE.items()}     # ONNX op -> Reduce's op


def _reduce(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = c.const(node, 1, "axes").reshape(-1).tolist()
    if not axes and a.get("noop_with_empty_axes", 0):
        c.alias(node, x)
        return
    if not axes:
        raise Unsupported(f"{node.op_type} over every axis, the batch axis too; a layer sees one sample at a time")
    x = c.full(x)
    rank = len(c.values[x].shape) + 1
    axes = sorted({int(i) % rank for i in axes})
    if 0 in axes:
        raise Unsupported(f"{node.op_type} over the batch axis; a layer sees one sample at a time")
    keep = bool(a.get("keepdims", 1))
    if not keep and len(axes) == rank - 1:
        raise Unsupported(f"{node.op_type} of every axis but the batch gives (N,), one number per sample; Layerboard's "
                          "Reduce keeps (N, 1) (keepdims = 1)")
    c.add(node, "Reduce", {"op": REDUCE_OPS[node.op_type], "axes": [i - 1 for i in axes], "keepdims": keep}, [x])


def _or_reduce(pool):
    """The global pool / TimePool handler first, a Reduce layer where it has none."""
    def handler(c, node):
        try:
            pool(c, node)
        except Unsupported:
            _reduce(c, node)
    return handler


for _op in REDUCE_OPS:
    OPS[_op] = _or_reduce(OPS[_op]) if _op in OPS else _reduce
