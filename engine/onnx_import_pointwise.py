"""ONNX import handlers for values: activations (each layer declaring its one ONNX operator is found by it, with
ONNX's attribute defaults), Softplus's threshold and GELU's Erf form as patterns, and merges of computed tensors."""
import numpy as np

from .layers import REGISTRY
from .onnx_import import Unsupported, _attrs, handles


# ---- activations: every registered layer naming its one ONNX operator, with the ONNX defaults ----
def _activations():
    out = {}
    for t, cls in REGISTRY.items():
        op = cls.__dict__.get("onnx_op") or next((k.__dict__["onnx_op"] for k in cls.__mro__ if "onnx_op" in k.__dict__), None)
        if isinstance(op, str) and op and cls.category == "activation":
            out[op] = (t, dict(getattr(cls, "onnx_attrs", {}) or {}))
    return out


ACTIVATIONS = _activations()          # ONNX op -> (layer type, {config key: ONNX attribute})


def _default(op, attr):
    from onnx import defs, helper
    d = defs.get_schema(op).attributes[attr].default_value
    return helper.get_attribute_value(d)


def _pointwise(c, node, type, cfg, **weights):
    (x,) = c.data(node)
    v = c.values[x]
    c.add(node, type, cfg, [x], out_shape=v.shape, **weights)
    c.values[node.output[0]].squeezed = v.squeezed


@handles(*ACTIVATIONS)
def _act(c, node):
    type, attrs = ACTIVATIONS[node.op_type]
    a = _attrs(node)
    _pointwise(c, node, type, {k: float(a[o] if o in a else _default(node.op_type, o)) for k, o in attrs.items()})


@handles("Softplus")
def _softplus(c, node):
    _pointwise(c, node, "Softplus", {})


@handles("Greater")
def _softplus_threshold(c, node):
    """PyTorch's Softplus threshold: Where(x > θ, x, softplus(x)) after the Softplus node."""
    x, thr = node.input
    where = _only(c, node.output[0], "Where")
    sp = where and c.values.get(where.input[2])
    layer = sp and c.graph.nodes[sp.node]
    if (not layer or layer.type != "Softplus" or thr not in c.consts or list(where.input[:2]) != [node.output[0], x]
            or c.values.get(x) is None or c.graph.inputs_of(sp.node) != [c.values[x].node]):
        raise Unsupported("a comparison is imported only as Softplus's threshold")
    layer.config["threshold"] = float(c.consts[thr])
    c.values[where.output[0]] = sp
    c.done.add(id(where))


@handles("Gelu")
def _gelu(c, node):
    _pointwise(c, node, "GELU", {"approximate": _attrs(node).get("approximate", "none")})


@handles("Clip")
def _clip(c, node):
    lo = float(c.const(node, 1, "min")) if len(node.input) > 1 and node.input[1] else -1e30
    hi = float(c.const(node, 2, "max")) if len(node.input) > 2 and node.input[2] else 1e30
    _pointwise(c, node, "Clip", {"min": max(lo, -1e30), "max": min(hi, 1e30)})


@handles("PRelu")
def _prelu(c, node):
    (x,) = c.data(node)
    slope, s = c.const(node, 1, "slope"), c.values[x].shape
    a = slope.reshape(-1)
    ours = a.reshape((-1,) + (1,) * (len(s) - 1)) if len(s) + 1 > 3 else a
    full = (1,) + tuple(s)
    try:
        same = np.array_equal(np.broadcast_to(slope, full), np.broadcast_to(ours, full))
    except ValueError:
        same = False
    if not same:
        raise Unsupported(f"slopes of shape {slope.shape} are not one per channel of {full[1:]} nor one for all")
    _pointwise(c, node, "PReLU", {"per_channel": a.size > 1}, a=a)


@handles("Softmax", "LogSoftmax")
def _softmax(c, node):
    (x,) = c.data(node)
    axis = _attrs(node).get("axis", -1)
    if axis not in (-1, len(c.values[x].shape)):
        raise Unsupported(f"{node.op_type} over axis {axis}; Layerboard's is over the last axis")
    _pointwise(c, node, node.op_type, {})


@handles("Div")
def _div(c, node):
    """The Erf form of GELU: x/√2 → Erf → +1 → ·x → ·½ (PyTorch's exact GELU in opsets before 20)."""
    nodes = _erf_gelu(c, node)
    if nodes is None:
        raise Unsupported("a division is imported only inside the Erf form of GELU")
    c.add(nodes[-1], "GELU", {"approximate": "none"}, [node.input[0]], out_shape=c.values[node.input[0]].shape)
    c.done.update(id(n) for n in nodes[1:])


def _only(c, t, op):
    nxt = c.consumers.get(t, [])
    return nxt[0] if len(nxt) == 1 and nxt[0].op_type == op else None


def _scalar(c, node, value, tol=1e-4):
    k = [t for t in node.input if t in c.consts]
    return len(k) == 1 and c.consts[k[0]].size == 1 and abs(float(c.consts[k[0]]) - value) < tol


def _erf_gelu(c, div):
    x = div.input[0]
    if x not in c.values or not _scalar(c, div, np.sqrt(2)):
        return None
    erf = _only(c, div.output[0], "Erf")
    add = erf and _only(c, erf.output[0], "Add")
    if not add or not _scalar(c, add, 1.0):
        return None
    m1 = _only(c, add.output[0], "Mul")
    if m1 and x in m1.input:                                      # x·(1 + erf) then ·½
        m2 = _only(c, m1.output[0], "Mul")
        return [div, erf, add, m1, m2] if m2 and _scalar(c, m2, 0.5) else None
    if m1 and _scalar(c, m1, 0.5):                                 # ½·(1 + erf) then ·x
        m2 = _only(c, m1.output[0], "Mul")
        return [div, erf, add, m1, m2] if m2 and x in m2.input else None
    return None


# ---- merges ----
@handles("Add", "Sum", "Mul", "Sub")
def _merge(c, node):
    ins = c.data(node)
    consts = [t for t in node.input if t in c.consts]
    if len(ins) >= 2 and not consts:
        if len(set(ins)) < len(ins):
            raise Unsupported(f"{node.op_type} of a tensor with itself (x·x, x + x) has no layer")
        if node.op_type == "Sub" and len(ins) != 2:
            raise Unsupported("Sub of more than two tensors")
        if len({c.values[t].squeezed for t in ins}) > 1:            # (C, H, W) ⊙ (C, 1, 1): unsqueeze the (C,)
            ins = [c.full(t) for t in ins]
        v = [c.values[t] for t in ins]
        try:
            shape = tuple(np.broadcast_shapes(*[u.shape for u in v]))
        except ValueError:
            raise Unsupported(f"shapes {[u.shape for u in v]} do not broadcast") from None
        type = {"Mul": "Multiply", "Sub": "Subtract"}.get(node.op_type, "Add")
        c.add(node, type, {}, ins, out_shape=shape)
        c.values[node.output[0]].squeezed = all(u.squeezed for u in v)
        return
    if node.op_type == "Add" and len(ins) == 1 and len(consts) == 1:      # a bias: fold into the Dense before
        src = c.values[ins[0]].node
        n = c.graph.nodes[src]
        bias = np.asarray(c.consts[consts[0]])
        if (n.type == "Dense" and not n.config.get("use_bias") and c.readers.get(ins[0], 0) == 1
                and bias.size == n.config["units"]):
            n.config["use_bias"] = True
            c.weights[f"{src}/b"] = bias.reshape(-1).astype(np.float32)
            c.alias(node, ins[0])
            return
        raise Unsupported("adds a constant that is not the bias of the layer before")
    raise Unsupported(f"{node.op_type} with a constant operand has no layer (only computed tensors merge)")


@handles("Concat")
def _concat(c, node):
    ins = c.data(node)
    if len({c.values[t].squeezed for t in ins}) > 1:
        ins = [c.full(t) for t in ins]
    axis = int(_attrs(node)["axis"])
    if axis == 0:
        raise Unsupported("concatenates along the batch axis")
    c.add(node, "Concatenate", {"axis": axis - 1 if axis > 0 else axis}, ins)
