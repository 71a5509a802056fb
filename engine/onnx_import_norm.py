"""Normalisations PyTorch writes as several ONNX nodes, as one layer each:

GroupNorm: Reshape (N, G, −1) → InstanceNormalization (scale 1, bias 0) → Reshape back → Mul γ → Add β.
LocalResponseNorm: x / (k + α·AveragePool(Pad(x²)))^β, the pool over `size` channels (both exporters).
A region found is accepted only when onnxruntime on it equals the layer on random inputs (relative error 1e-4)."""
import numpy as np

from .layers import REGISTRY
from .onnx_import_attn import Block, index, run_region, same

LRN_INSIDE = {"Mul", "Add", "Pow", "Reshape", "Pad", "AveragePool", "Squeeze", "Unsqueeze", "Transpose", "Slice",
              "Concat", "Cast", "If", "Identity"}


def _only(cons, t, op):
    nxt = cons.get(t, [])
    return nxt[0] if len(nxt) == 1 and nxt[0].op_type == op else None


def _const_of(c, n, size):
    """The constant operand of a two-input node when it holds `size` values (or one), else None."""
    k = [t for t in n.input if t in c.consts]
    if len(k) != 1 or len(n.input) != 2:
        return None
    v = np.asarray(c.consts[k[0]], np.float32)
    return v if v.size in (1, size) else None


def _fixed(c, x):
    s = c.shapes.get(x, ())
    return tuple(s[1:]) if len(s) >= 2 and all(isinstance(d, int) and d > 0 for d in s[1:]) else None


def _accept(c, m, region, x, y, type, config, weights, shape):
    """A Block when onnxruntime on the region equals the layer; None otherwise."""
    xv = np.random.default_rng(0).normal(0, 2, size=(2,) + shape).astype(np.float32)
    try:
        want = run_region(c, m, y, x, xv)
    except Exception:                                           # the region does not run on its own
        return None
    layer = REGISTRY[type]("candidate", **config)
    layer.build([shape])
    layer.p = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    if not same(layer.forward(xv), want):
        return None
    return Block(region, x, y, type, config, weights, region[0].name or y)


def _group_norm(c, m, n, prod, cons):
    from .onnx_import import _attrs
    r1 = prod.get(n.input[0])
    if r1 is None or r1.op_type != "Reshape" or r1.input[1] not in c.consts or len(n.input) < 3:
        return None
    g, x = c.consts[r1.input[1]].tolist(), r1.input[0]
    shape = _fixed(c, x)
    scale, bias = c.consts.get(n.input[1]), c.consts.get(n.input[2])
    if shape is None or len(g) != 3 or g[1] < 1 or scale is None or bias is None or np.any(scale != 1) \
            or np.any(bias != 0):
        return None
    r2 = _only(cons, n.output[0], "Reshape")
    if r2 is None:
        return None
    C, region, y = shape[0], [r1, n, r2], r2.output[0]
    gamma, beta = np.ones(C, np.float32), np.zeros(C, np.float32)
    mul = _only(cons, y, "Mul")
    if mul is not None and _const_of(c, mul, C) is not None:
        gamma = np.broadcast_to(_const_of(c, mul, C).reshape(-1), (C,)).copy()
        region.append(mul)
        y = mul.output[0]
        add = _only(cons, y, "Add")
        if add is not None and _const_of(c, add, C) is not None:
            beta = np.broadcast_to(_const_of(c, add, C).reshape(-1), (C,)).copy()
            region.append(add)
            y = add.output[0]
    cfg = {"groups": int(g[1]), "eps": float(_attrs(n).get("epsilon", 1e-5)), "affine": True}
    return _accept(c, m, region, x, y, "GroupNorm", cfg, {"gamma": gamma, "beta": beta}, shape)


def _lrn(c, m, div, prod):
    """x / (k + α·avg(x²))^β back from the Div to the x² it starts from."""
    from .onnx_import import _attrs, reads
    x = div.input[0]
    shape = _fixed(c, x)
    if shape is None or len(shape) < 2:
        return None
    region, stack, consts = [div], [div.input[1]], {}
    while stack:
        t = stack.pop()
        if t == x or t in c.consts or t in c.sym or not t:
            continue
        n = prod.get(t)
        if n is None or n.op_type not in LRN_INSIDE:
            return None
        if any(n is r for r in region):
            continue
        region.append(n)
        if n.op_type in ("Mul", "Add", "Pow") and _const_of(c, n, 1) is not None:
            consts[n.op_type] = float(_const_of(c, n, 1).reshape(-1)[0])
        if n.op_type == "AveragePool":
            consts["size"] = int(_attrs(n)["kernel_shape"][0])
        stack += reads(n)
    if set(consts) != {"Mul", "Add", "Pow", "size"} or len(region) > 60:
        return None
    cfg = {"size": consts["size"], "alpha": consts["Mul"], "beta": consts["Pow"], "k": consts["Add"]}
    return _accept(c, m, list(reversed(region)), x, div.output[0], "LocalResponseNorm", cfg, {}, shape)


def find(c, m, data):
    """GroupNorm and LocalResponseNorm blocks among the data nodes."""
    prod, cons = index(data)
    out = []
    for n in data:
        b = (_group_norm(c, m, n, prod, cons) if n.op_type == "InstanceNormalization" else
             _lrn(c, m, n, prod) if n.op_type == "Div" and n.input[1] not in c.consts else None)
        if b is not None:
            out.append(b)
    return out
