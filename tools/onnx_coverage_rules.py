"""The per-operator rules of tools/onnx_coverage.py: what registry layer (and options) an ONNX node needs.

A rule takes a Node and returns ("layer", type), ("option", type, the first missing option) or ("none", what);
rules read the registry, so the counts follow the code."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.layers import REGISTRY  # noqa: E402


def has(type, option=None):
    """The layer type is registered (and declares hyperparameter `option`)."""
    cls = REGISTRY.get(type)
    return cls is not None and (option is None or option in {h.name for h in cls.hparams})


def broadcasts(type):
    """The merge layer accepts inputs of different shapes ((4, 3) with (3,))."""
    if type not in REGISTRY:
        return False
    try:
        REGISTRY[type]("probe").compute_output_shape([(4, 3), (3,)])
        return True
    except Exception:
        return False


class Node:
    """One ONNX node with what the rules read: attributes, input ranks and shapes, the model's opset."""

    def __init__(self, node, shapes, inits, opset):
        from onnx import helper
        self.op, self.opset = node.op_type, opset
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.shapes = [shapes.get(i) for i in node.input]
        self.inputs, self.outputs, self.inits = list(node.input), [o for o in node.output if o], inits

    def rank(self, i=0):
        s = self.shapes[i] if i < len(self.shapes) else None
        return None if s is None else len(s)

    def a(self, name, default=None):
        v = self.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else v


def _need(type, *options):
    """('layer', type), or ('option', type, the first missing option), or ('none', type) when type is absent."""
    if not has(type):
        return ("none", type)
    for o in options:
        if o and not has(type, o):
            return ("option", type, o)
    return ("layer", type)


def _conv(n):
    d = (n.rank() or 4) - 2
    opts = ["groups" if (n.a("group", 1) or 1) > 1 else None,
            "dilation" if any(v != 1 for v in (n.a("dilations") or [1])) else None]
    pads = n.a("pads") or []
    base = "ConvTranspose" if n.op == "ConvTranspose" else "Conv"
    if pads and list(pads[:len(pads) // 2]) != list(pads[len(pads) // 2:]) and base == "Conv":
        opts.append("asymmetric padding")                  # ConvTranspose's pad takes (before, after) per axis
    if base == "ConvTranspose" and any(n.a("output_padding") or []):
        opts.append("output_padding")
    return _need(f"{base}{d}D", *opts)                     # output_shape, auto_pad SAME: pads at import


def _pool(n):
    d = (n.rank() or 4) - 2
    kind = "MaxPool" if n.op == "MaxPool" else "AveragePool"
    pads, auto, k = list(n.a("pads") or []), n.a("auto_pad", "NOTSET"), list(n.a("kernel_shape") or [])
    opts = ["pad" if any(pads) else None,                       # symmetric, or (before, after) per axis
            "padding" if auto.startswith("SAME") else None,    # same_upper / same_lower
            "padding as wide as the window" if any(p >= kk for p, kk in zip(pads, 2 * k)) else None,
            "ceil_mode" if n.a("ceil_mode", 0) else None,
            "dilation" if any(v != 1 for v in (n.a("dilations") or [1])) else None,
            "count_include_pad" if n.a("count_include_pad", 0) else None]
    if len(n.outputs) > 1:
        opts.append("the indices output")
    return _need(f"{kind}{d}D", *opts)


def _global(n):
    d = (n.rank() or 4) - 2
    t = "GlobalAveragePool" if n.op == "GlobalAveragePool" else "GlobalMaxPool"
    return _need(t) if 1 <= d <= 3 or _need(t)[0] == "none" else _need(t, f"{d}-D input")


def _softmax(n):
    t = {"Softmax": "Softmax", "LogSoftmax": "LogSoftmax", "Hardmax": "Hardmax"}[n.op]
    r = n.rank()
    axis = n.a("axis", -1 if n.opset >= 13 else 1)
    if r is None or axis in (-1, r - 1):
        return _need(t)
    if n.opset < 13:                                          # before opset 13: over all the axes from `axis` on,
        if axis % r and has("Reshape"):                       # a row: Reshape (…, product), the layer, Reshape back
            return _need(t)
        return _need(t, f"the axes from {axis} on of a rank-{r} input (opset < 13)")
    return _need(t, "axis" if axis % r else "normalising over the batch axis")


def _merge(type):
    def rule(n):
        if len(n.inputs) < 2:
            return ("layer", "Identity")                       # of one tensor: that tensor (the importer aliases it)
        shapes = [s for s in n.shapes if s is not None]
        same = all(tuple(s) == tuple(shapes[0]) for s in shapes)
        return _need(type) if same or broadcasts(type) else _need(type, "broadcasting")
    return rule


def _prelu(n):
    """One slope, or one per channel as PReLU has them: F of (F,) and (T, F), C of (C, …) as (C, 1, …)."""
    s, x = (n.shapes[1] if len(n.shapes) > 1 else None), n.shapes[0]
    if s is None or x is None or int(np.prod(s)) == 1:
        return _need("PReLU")
    ps, s = x[1:], tuple(s)
    if len(s) == len(x) and s[0] != 1:
        return _need("PReLU", "slopes along the batch axis")
    if n.opset < 7 and len(s) == 1 and len(x) > 2:             # before opset 7 a 1-D slope is per channel (axis 1)
        s = s + (1,) * (len(x) - 2)
    while s and s[0] == 1:
        s = s[1:]
    ours = (ps[-1],) if len(ps) <= 2 else (ps[0],) + (1,) * (len(ps) - 1)
    if len(ps) == 2 and s == (ps[0], 1) and has("Permute"):  # C of (C, L): through Permute (L, C)
        ours = s
    return _need("PReLU", "per_channel" if s == ours else f"slopes of shape {s} for {tuple(x)}")


def _recurrent(n):
    t = n.op
    d = n.a("direction", "forward")
    opts = ["bidirectional" if d == "bidirectional" else None, "direction" if d == "reverse" else None,
            "clip" if n.a("clip") is not None else None, "input_forget" if n.a("input_forget", 0) else None]
    acts = [a.decode() if isinstance(a, bytes) else a for a in (n.a("activations") or [])]
    default = {"RNN": ["Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}[t]
    if acts and acts[:len(default)] != default and not (t == "RNN" and acts[0] == "Relu"):
        opts.append("activations " + "/".join(acts))
    if t == "GRU" and not n.a("linear_before_reset", 0):
        opts.append("linear_before_reset")
    if t == "LSTM" and len(n.inputs) > 7 and n.inputs[7]:
        opts.append("peepholes")
    return _need(t, *opts)


def _pad(n):
    mode = n.a("mode", "constant")
    return _need("ZeroPad", "mode" if mode != "constant" else None, "value" if len(n.inputs) > 2 and n.inputs[2] else None,
                 None if mode in ("constant", "reflect", "edge", "wrap") else f"{mode} padding")


def _resize(n):
    mode, r = n.a("mode", "nearest"), n.rank()
    if r not in (None, 4) or mode not in ("nearest", "linear", "cubic"):
        return _need("Upsample2D", f"{mode} resize of a rank-{r} tensor")
    if mode == "nearest":
        return _need("Upsample2D")
    ctm = n.a("coordinate_transformation_mode", "half_pixel")
    hp = {h.name: h for h in REGISTRY["Upsample2D"].hparams} if has("Upsample2D") else {}
    ok = "coordinate_transformation_mode" in hp and ctm in hp["coordinate_transformation_mode"].choices
    return _need("Upsample2D", None if mode == "linear" or "bicubic" in hp["mode"].choices else "cubic resize",
                 None if ok or ctm == "half_pixel" else f"coordinate_transformation_mode {ctm}",
                 "cubic_coeff_a" if n.a("cubic_coeff_a", -0.75) != -0.75 else None,
                 "exclude_outside" if n.a("exclude_outside", 0) else None, "antialias" if n.a("antialias", 0) else None)


def _last_axes(n, type):
    """LayerNorm / RMSNorm over the axes from `axis` on: the last one, or several with the option axes."""
    axis, r = n.a("axis", -1), n.rank()
    if axis in (-1, (r or 0) - 1):
        return _need(type)
    return _need(type, "axes" if axis % max(r or 1, 1) > 0 else "normalising over the batch axis")


def _matmul(n):
    if len(n.inputs) > 1 and n.inputs[1] in n.inits and n.rank(1) == 2:
        return _need("Dense")
    a, b = n.shapes[0], n.shapes[1] if len(n.shapes) > 1 else None       # two tensors: the MatMul layer, per sample
    if a is None or b is None:
        return _need("MatMul")
    if min(len(a), len(b)) < 3:
        return _need("MatMul", "a factor without the batch axis and two more")
    return _need("MatMul", None if a[0] == b[0] or -1 in (a[0], b[0]) else "broadcasting along the batch axis")


def _lp_pool(n):
    d = len(n.a("kernel_shape") or []) or (n.rank() or 4) - 2
    return _need(f"LpPool{d}D", "ceil_mode" if n.a("ceil_mode", 0) else None)


def _attention(n):
    """ONNX Attention as ScaledDotProductAttention (engine/onnx_import_attention.py refuses the same things; an
    attn_mask imports only as the key padding computed from a mask input, which no backend case has)."""
    ins = n.inputs + [""] * 7
    return _need("ScaledDotProductAttention",
                 "a KV cache (past_key/past_value)" if ins[4] or ins[5] else None,
                 "qk_matmul_output_mode" if n.a("qk_matmul_output_mode", 0) else None,
                 "the outputs besides Y" if len(n.outputs) > 1 else None,
                 "a sliding window" if -1 != n.a("left_window_size", -1) or -1 != n.a("right_window_size", -1)
                 else None,
                 "nonpad_kv_seqlen" if ins[6] else None,
                 "attn_mask: a mask or bias per query and key step" if ins[3] else None)


RULES = {
    "Relu": lambda n: _need("ReLU"), "Sigmoid": lambda n: _need("Sigmoid"), "Tanh": lambda n: _need("Tanh"),
    "LeakyRelu": lambda n: _need("LeakyReLU"), "Elu": lambda n: _need("ELU"),
    "Selu": lambda n: _need("SELU", None if (abs(n.a("alpha", 1.67326) - 1.67326) < 1e-4 and
                                            abs(n.a("gamma", 1.0507) - 1.0507) < 1e-4) else "scale"),
    "Softplus": lambda n: _need("Softplus"), "Mish": lambda n: _need("Mish"), "Clip": lambda n: _need("Clip"),
    "Gelu": lambda n: _need("GELU", None if n.a("approximate", "none") in ("none", "tanh") else "approximate"),
    "Swish": lambda n: _need("SiLU", None if n.a("alpha", 1.0) == 1.0 else "alpha"),
    "Celu": lambda n: _need("CELU"), "Softsign": lambda n: _need("Softsign"),
    "HardSigmoid": lambda n: _need("HardSigmoid"), "HardSwish": lambda n: _need("Hardswish"),
    "ThresholdedRelu": lambda n: _need("ThresholdedReLU"),
    "Shrink": lambda n: (_need("Softshrink") if n.a("bias", 0.0) == n.a("lambd", 0.5) else _need("Hardshrink")
                         if n.a("bias", 0.0) == 0 else _need("Hardshrink", "a bias other than 0 or λ")),
    "PRelu": _prelu, "Softmax": _softmax, "LogSoftmax": _softmax, "Hardmax": _softmax, "LpPool": _lp_pool,
    "Add": _merge("Add"), "Sum": _merge("Add"), "Sub": _merge("Subtract"), "Mul": _merge("Multiply"),
    "Max": _merge("Maximum"), "Min": _merge("Minimum"), "Mean": _merge("Average"),
    "Concat": lambda n: _need("Concatenate", "along the batch axis" if n.a("axis") == 0 else None),
    "Gemm": lambda n: _need("Dense", "transA: the batch axis second" if n.a("transA", 0) else None),
    "MatMul": _matmul,
    "Conv": _conv, "ConvTranspose": _conv, "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _global, "GlobalMaxPool": _global,
    "BatchNormalization": lambda n: _need("BatchNorm", None if n.rank() in (None, 2, 4, 5) or n.rank() == 3 and
                                          has("Permute") else                      # (N, C, L): through Permute
                                          f"channel axis 1 of a rank-{n.rank()} input"),
    "InstanceNormalization": lambda n: _need("InstanceNorm"), "LRN": lambda n: _need("LocalResponseNorm"),
    "LayerNormalization": lambda n: _last_axes(n, "LayerNorm"), "RMSNormalization": lambda n: _last_axes(n, "RMSNorm"),
    "GroupNormalization": lambda n: _need("GroupNorm"),
    "LpNormalization": lambda n: _need("LpNormalize", None if n.a("p", 2) in (1, 2) and n.a("axis", -1) % (n.rank() or 2)
                                       else "normalising along the batch axis" if n.a("p", 2) in (1, 2) else "p > 2"),
    "Flatten": lambda n: _need("Flatten", None if n.a("axis", 1) == 1 or n.rank() and n.a("axis") % n.rank() == 1 else
                               f"axis {n.a('axis')}: folding the batch axis into the rows"),
    "Reshape": lambda n: _need("Reshape"), "Dropout": lambda n: _need("Dropout"),
    "RNN": _recurrent, "LSTM": _recurrent, "GRU": _recurrent, "Pad": _pad, "Resize": _resize, "Upsample": _resize,
    "GridSample": lambda n: _need("GridSample", None if n.rank() in (None, 4) else "volumetric (5-D) sampling"),
    "RotaryEmbedding": lambda n: _need(
        "RotaryEmbedding", "4-D (batch, heads, steps, head size) input" if n.rank() == 4 else None,
        None if all(len(n.inputs) > i and n.inputs[i] in n.inits for i in (1, 2)) else "cos/sin caches that are "
        "graph inputs (the layer computes the standard table)",
        "position_ids that are a graph input" if len(n.inputs) > 3 and n.inputs[3] and n.inputs[3] not in n.inits
        else None),
    "Attention": _attention,
}
# mathops: Math's unary functions (engine/layers/unary.py), by their ONNX operator
RULES.update({op: (lambda n: _need("Math")) for op in (
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
    "Asinh", "Acosh", "Atanh", "Erf", "Floor", "Ceil", "Round", "Sign")})


def _reduce(n):
    """Reduce over constant axes that exclude the batch axis (ReduceMean/ReduceMax of (C, …): a global pool too)."""
    from onnx import numpy_helper
    axes, r = n.a("axes"), n.rank()
    if axes is None and len(n.inputs) > 1 and n.inputs[1]:
        if n.inputs[1] not in n.inits:
            return _need("Reduce", "axes computed at run time (a graph input)")
        axes = numpy_helper.to_array(n.inits[n.inputs[1]]).reshape(-1).tolist()
    if not axes:
        return (("layer", "Identity") if n.a("noop_with_empty_axes", 0) else
                _need("Reduce", "reducing over the batch axis"))
    ax = {a % r for a in axes} if r else set()
    if 0 in ax:
        return _need("Reduce", "reducing over the batch axis")
    return _need("Reduce", "(N,): one number per sample" if r and not n.a("keepdims", 1) and len(ax) == r - 1 else None)


RULES.update({op: _reduce for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                     "ReduceL2", "ReduceLogSumExp", "ReduceLogSum", "ReduceSumSquare")})


def _const_axes(n):
    """The axes attribute or constant second input; 'input' when a graph input gives them; None when absent."""
    from onnx import numpy_helper
    if n.a("axes") is not None or len(n.inputs) < 2 or not n.inputs[1]:
        return n.a("axes")
    return numpy_helper.to_array(n.inits[n.inputs[1]]).reshape(-1).tolist() if n.inputs[1] in n.inits else "input"


def _squeeze(n):
    """Squeeze / Unsqueeze as a Reshape (engine/onnx_import_seq.py) when the batch axis stays first."""
    axes, r, s = _const_axes(n), n.rank(), n.shapes[0]
    if axes == "input":
        return _need("Reshape", "axes computed at run time (a graph input)")
    if axes is None or r is None:
        return _need("Reshape", "squeezing the batch axis" if n.op == "Squeeze" and s and s[0] == 1 else None)
    out_r = r + len(axes) if n.op == "Unsqueeze" else r
    return _need("Reshape", "squeezing or inserting the batch axis" if any(a % out_r == 0 for a in axes) else None)


def _pow(n):
    """Power: x to one constant exponent."""
    if len(n.inputs) < 2 or n.inputs[1] not in n.inits:
        return _need("Power", "a computed exponent (a graph input)")
    return _need("Power", None if int(np.prod(n.shapes[1] or (1,))) == 1 else "an exponent per value")


def _div(n):
    """Divide of two tensors; x / constant is a ScaleShift; a constant / x has no layer."""
    if len(n.inputs) == 2 and n.inputs[0] in n.inits and n.inputs[1] not in n.inits:
        return ("none", "a constant divided by a tensor")
    return _merge("Divide")(n)


RULES.update({"Div": _div, "Pow": _pow, "Squeeze": _squeeze, "Unsqueeze": _squeeze})


def _transpose(n):
    """Transpose as a Permute of the sample's axes when the batch axis stays first (default perm: reversed)."""
    perm = n.a("perm") or (list(range(n.rank()))[::-1] if n.rank() else None)
    return _need("Permute", None if perm is None or perm[0] == 0 else "moves the batch axis")


RULES["Transpose"] = _transpose


def _slice(n):
    """Slice with constant bounds that keep the batch axis whole (engine/onnx_import_layout.py)."""
    from onnx import numpy_helper
    v = {k: n.a(k) for k in ("starts", "ends", "axes")} if n.opset < 10 else {}
    for i, k in enumerate(("starts", "ends", "axes", "steps"), 1):
        if n.opset >= 10 and len(n.inputs) > i and n.inputs[i]:
            if n.inputs[i] not in n.inits:
                return _need("Slice", f"{k} computed at run time (a graph input)")
            v[k] = numpy_helper.to_array(n.inits[n.inputs[i]]).reshape(-1).tolist()
    starts, ends = v.get("starts") or [], v.get("ends") or []
    axes, steps = v.get("axes") or list(range(len(starts))), v.get("steps") or [1] * len(starts)
    r, x = n.rank() or 1 << 30, n.shapes[0] or ()
    b = x[0] if x and x[0] > 0 else 2 ** 31 - 1                 # the file's fixed batch size: a slice to it is whole
    batch = [(s, e, st) for a, s, e, st in zip(axes, starts, ends, steps) if a % r == 0]
    empty = x and any(not len(range(*slice(s, e, st).indices(x[a % r])))
                      for a, s, e, st in zip(axes, starts, ends, steps))
    return _need("Slice", "slices the batch axis" if any((s, st) != (0, 1) or e < b for s, e, st in batch) else None,
                 "an empty output" if empty else None)


def _split(n):
    """Split (torch.chunk) as one Slice per output, along a non-batch axis."""
    axis, r = n.a("axis", 0), n.rank()
    if len(n.inputs) > 1 and n.inputs[1] and n.inputs[1] not in n.inits:
        return _need("Slice", "split sizes computed at run time (a graph input)")
    return _need("Slice", "splits the batch axis" if r is None or axis % r == 0 else None)


RULES.update({"Slice": _slice, "Split": _split})
RULES.update({op: (lambda n: _need(n.op, None if n.rank() in (None, 4) else f"a rank-{n.rank()} input"))
              for op in ("DepthToSpace", "SpaceToDepth")})      # (N, C, H, W); modes DCR and CRD


def _tile(n):
    """Tile with constant repeats, 1 on the batch axis."""
    from onnx import numpy_helper
    if len(n.inputs) < 2 or n.inputs[1] not in n.inits:
        return _need("Tile", "repeats computed at run time (a graph input)")
    return _need("Tile", None if numpy_helper.to_array(n.inits[n.inputs[1]]).reshape(-1)[:1].tolist() == [1]
                 else "repeats the batch axis")


RULES["Tile"] = _tile
FREE = {"Constant", "Identity"}      # data and no-ops: no layer needed
