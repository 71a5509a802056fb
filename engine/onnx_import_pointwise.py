"""ONNX import handlers for values: activations (each layer declaring its one ONNX operator is found by it, with
ONNX's attribute defaults), Softplus's threshold, activations written as several elementwise nodes (GELU's Erf and
tanh forms, x·σ(x)) and merges of computed tensors."""
import numpy as np

from .layers import REGISTRY
from . import onnx_import_legacy
from .onnx_import import Unsupported, _attrs, handles


# ---- activations: every registered layer naming its one ONNX operator, with the ONNX defaults ----
def _activations():
    out = {}
    for t, cls in REGISTRY.items():
        op = getattr(cls, "onnx_op", None)                    # a class attribute (RNN's is a property: skipped)
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


@handles("Softplus", "Mish")
def _softplus(c, node):
    _pointwise(c, node, node.op_type, {})


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
    if not same and onnx_import_legacy.prelu_channels(c, node, x, slope):
        return
    if not same:
        raise Unsupported(f"slopes of shape {slope.shape} are not one per channel of {full[1:]} nor one for all")
    _pointwise(c, node, "PReLU", {"per_channel": a.size > 1}, a=a)


@handles("Softmax", "LogSoftmax", "Hardmax")
def _softmax(c, node):
    (x,) = c.data(node)
    axis, v = _attrs(node).get("axis", -1), c.values[x]
    r = len(v.shape) + 1                                              # with the batch axis
    if v.squeezed:
        if axis not in (-1, 1):
            raise Unsupported(f"{node.op_type} over axis {axis} of a pooled (N, C, 1, 1) tensor")
        axis = r - 1
    if axis % r == 0:
        raise Unsupported(f"{node.op_type} over the batch axis; a layer sees one sample at a time")
    _pointwise(c, node, node.op_type, {} if axis % r == r - 1 else {"axis": axis % r - 1})


def _only(c, t, op):
    nxt = c.consumers.get(t, [])
    return nxt[0] if len(nxt) == 1 and nxt[0].op_type == op else None


# ---- activations written as several elementwise nodes (GELU's Erf and tanh forms, x·σ(x), …) ----
ELEMENTWISE = {"Mul", "Add", "Sub", "Div", "Pow", "Tanh", "Erf", "Sigmoid", "Softplus", "Exp", "Log", "Abs",
               "HardSigmoid", "Neg", "Sqrt"}
CANDIDATES = [("GELU", {"approximate": "none"}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("Mish", {}),
              ("Hardswish", {}), ("Softsign", {}), ("Softplus", {})]


def find_pointwise(c, m, data):
    """Blocks of two or more elementwise nodes computing one activation of one tensor, each checked against the
    layer on random inputs (engine/onnx_import_attn.py runs the region)."""
    from .onnx_import_attn import Block, index, run_region, same
    cons = index(data)[1]
    out, taken = [], set()
    for x in [i.name for i in m.graph.input] + [o for n in data for o in n.output]:
        shape = c.shapes.get(x, ())
        if len(shape) < 2 or not all(isinstance(v, int) and v > 0 for v in shape[1:]):
            continue
        region, inside, grew = [], {x}, True
        while grew:                                           # every elementwise node reading only x and the region
            grew = False
            for n in {id(n): n for t in list(inside) for n in cons.get(t, [])}.values():
                if (n.op_type in ELEMENTWISE and id(n) not in taken and all(n is not r for r in region)
                        and all(t in inside or t in c.consts for t in n.input if t)):
                    region.append(n)
                    inside |= set(n.output)
                    grew = True
        sinks = [o for n in region for o in n.output
                 if o in c.values or o == m.graph.output[0].name or any(all(k is not r for r in region)
                                                                         for k in cons.get(o, []))]
        if len(region) < 2 or len(sinks) != 1:
            continue
        xv = np.random.default_rng(0).normal(0, 2, size=(2,) + tuple(shape[1:])).astype(np.float32)
        try:
            want = run_region(c, m, sinks[0], x, xv)
        except Exception:                                    # the region does not run on its own
            continue
        for type, cfg in CANDIDATES:
            layer = REGISTRY[type]("candidate", **cfg)
            layer.build([xv.shape[1:]])
            got = layer.forward(xv)
            if same(got, want):
                out.append(Block(region, x, sinks[0], type, cfg, {}, region[0].name or sinks[0]))
                taken |= {id(n) for n in region}
                break
    return out


# ---- merges ----
@handles("Add", "Sum", "Mul", "Sub", "Max", "Min", "Mean")
def _merge(c, node):
    ins = c.data(node)
    consts = [t for t in node.input if t in c.consts]
    if len(node.input) == 1 and ins:                                    # Sum / Max / Min / Mean of one tensor: itself
        c.alias(node, ins[0])
        return
    if node.op_type in ("Max", "Min", "Mean") and consts:
        raise Unsupported(f"{node.op_type} with a constant operand has no layer (only computed tensors merge)")
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
        type = {"Mul": "Multiply", "Sub": "Subtract", "Max": "Maximum", "Min": "Minimum", "Mean": "Average",
                "Div": "Divide"}.get(
            node.op_type, "Add")
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
    if len(ins) == 1 and len(consts) == 1 and len(node.input) == 2:
        return _scale_shift(c, node, ins[0], node.input[0] == ins[0], np.asarray(c.consts[consts[0]], np.float32))
    raise Unsupported(f"{node.op_type} with a constant operand has no layer (only computed tensors merge)")


@handles("Div")
def _div(c, node):
    ins = c.data(node)
    if len(ins) == 2:                                                  # two computed tensors: Divide
        return _merge(c, node)
    if len(ins) != 1 or node.input[0] != ins[0] or node.input[1] not in c.consts:
        raise Unsupported("divides by a computed tensor (only x / constant has a layer)")
    _merge(c, node)


def _scale_shift(c, node, x, first, k):
    """x ⊕ k with a constant k as a ScaleShift layer y = x·a + b (merged into the ScaleShift before when only this
    node reads it: (x − mean) / std is one layer)."""
    if c.values[x].squeezed:
        x = c.full(x)
    shape = c.values[x].shape
    if k.ndim == len(shape) + 1 and k.shape[0] == 1:        # ONNX broadcasting: a leading batch axis of 1
        k = k[0]
    if k.ndim > len(shape) or np.broadcast_shapes(k.shape, shape) != tuple(shape):
        raise Unsupported(f"its constant of shape {k.shape} does not broadcast over {shape} without changing it")
    op = node.op_type
    if op == "Div" and np.any(k == 0):
        raise Unsupported("divides by a constant holding zeros")
    one, zero = np.ones_like(k), np.zeros_like(k)
    a, b = {"Add": (one, k), "Sum": (one, k), "Mul": (k, zero), "Div": (1 / k, zero),
            "Sub": (one, -k) if first else (-one, k)}[op]
    src = c.values[x].node
    if (c.graph.nodes[src].type == "ScaleShift" and len({id(n) for n in c.consumers.get(x, [])}) == 1
            and x not in c.outputs):                         # fold into the one before: (x·a1 + b1)·a + b
        a1, b1 = c.weights[f"{src}/scale"], c.weights[f"{src}/shift"]
        a, b = a1 * a, b1 * a + b
        out = np.broadcast_shapes(a.shape, b.shape)
        out = out or (1,)
        c.graph.nodes[src].config["shape"] = list(out)
        c.weights[f"{src}/scale"] = np.ascontiguousarray(np.broadcast_to(a, out), np.float32)
        c.weights[f"{src}/shift"] = np.ascontiguousarray(np.broadcast_to(b, out), np.float32)
        c.alias(node, x)
        return
    out = np.broadcast_shapes(a.shape, b.shape) or (1,)
    c.add(node, "ScaleShift", {"shape": list(out)}, [x], out_shape=tuple(shape),
          scale=np.ascontiguousarray(np.broadcast_to(a, out)), shift=np.ascontiguousarray(np.broadcast_to(b, out)))


@handles("Concat")
def _concat(c, node):
    ins = c.data(node)
    if len({c.values[t].squeezed for t in ins}) > 1:
        ins = [c.full(t) for t in ins]
    axis = int(_attrs(node)["axis"])
    if axis == 0:
        raise Unsupported("concatenates along the batch axis")
    c.add(node, "Concatenate", {"axis": axis - 1 if axis > 0 else axis}, ins)
