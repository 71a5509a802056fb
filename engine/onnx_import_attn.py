"""Self-attention in an ONNX graph as one MultiHeadSelfAttention layer.

Anchored on each Softmax whose output is multiplied by a computed tensor (A·V): backwards to the projections with
constant weights (W_q, W_k, W_v, fused or not) through layout and scaling nodes only, forwards through layout
nodes to the out-projection (W_o, b_o) and back to (batch, steps, d_model). The exporters write the layout part in
many ways (time-major or not, heads folded into the batch, the scale on the scores or on Q and K), so the region
found is accepted only when it computes what our layer computes on random inputs (onnxruntime on the region
against the layer's forward, relative error 1e-4), trying each head count, without and with the causal mask (and
the q/k/v order of separate projections); otherwise its nodes go through the ordinary handlers and are listed
if they cannot be imported."""
from dataclasses import dataclass
from itertools import permutations

import numpy as np

from .layers import REGISTRY

LAYOUT = {"Reshape", "Transpose", "Unsqueeze", "Squeeze", "Gather", "Slice", "Split", "Identity"}
INSIDE = LAYOUT | {"Mul", "Div", "MatMul", "Add"}         # between the projections and the attention weights


@dataclass
class Block:
    """Several ONNX nodes recognised as one layer: the nodes, their input and output tensors, the layer."""

    nodes: list
    x: str
    y: str
    type: str
    config: dict
    weights: dict
    name: str
    e: str = None         # a second input (cross-attention's keys and values)
    out_shape: tuple = None   # the output's shape when it is not the input's (DepthToSpace)


def _const_weight(c, n):
    return n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in c.consts


def _dense(c, n, cons):
    """(W (out, in) as ours, bias or None, the bias Add node or None) of a MatMul/Gemm with constant weight."""
    from .onnx_import import _attrs
    B = c.consts[n.input[1]]
    a = _attrs(n) if n.op_type == "Gemm" else {}
    if B.ndim != 2 or a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        return None
    W = B if a.get("transB", 0) else B.T
    if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2]:
        return W, np.broadcast_to(c.consts[n.input[2]], (W.shape[0],)), None
    nxt = cons.get(n.output[0], [])
    if len(nxt) == 1 and nxt[0].op_type == "Add":
        k = [t for t in nxt[0].input if t in c.consts]
        if len(k) == 1 and c.consts[k[0]].size == W.shape[0]:
            return W, c.consts[k[0]].reshape(-1), nxt[0]
    return W, np.zeros(W.shape[0], np.float32), None


def split_rows(ws, parts):
    """(W, b) pairs of `parts` equal row blocks of one projection (a fused q|k|v or k|v)."""
    W, b = ws[:2]
    return tuple(zip(np.split(W, parts), np.split(np.asarray(b), parts)))


def _region(c, S, prod, cons):
    """(nodes, (x, e), y, in-projections, out-projection, mask input or None) around Softmax S, or None; e: the
    keys' and values' input of cross-attention (None: self-attention, all from x)."""
    nxt = cons.get(S.output[0], [])
    if len(nxt) != 1 or nxt[0].op_type != "MatMul" or nxt[0].input[0] != S.output[0]:
        return None
    P = nxt[0]
    region, inproj, stack, masks, vs = [S, P], [], [(S.input[0], False), (P.input[1], True)], set(), set()
    while stack:
        t, v = stack.pop()
        if t in c.maskish:                                 # key padding computed from a mask input
            masks.add(c.maskish[t])
            continue
        if t in c.consts or t in c.sym or not t:
            continue
        n = prod.get(t)
        if n is None:
            return None
        if _const_weight(c, n) and v:
            vs.add(n.input[0])                             # the values' input
        if any(n is r for r in region):
            continue
        region.append(n)
        if _const_weight(c, n):
            inproj.append(n)
            continue
        if n.op_type not in INSIDE:
            return None
        stack += [(i, v) for i in n.input]
    xs = {n.input[0] for n in inproj}
    if not inproj or len(xs) > 2 or len(masks) > 1 or (len(xs) == 2 and len(vs) != 1):
        return None
    e = vs.pop() if len(xs) == 2 else None
    x = (xs - {e}).pop()
    kv = [n for n in inproj if n.input[0] == e]            # cross-attention: the keys' and values' projections
    ends = []
    for x in (x, e) if e else (x,):
        t0 = prod.get(x)                                   # time-major: the Transpose before the projections
        if t0 is not None and t0.op_type == "Transpose" and list(t0.attribute[0].ints) == [1, 0, 2]:
            region.append(t0)
            x = t0.input[0]
        ends.append(x)
    t, out = P.output[0], None
    while True:
        nxt = cons.get(t, [])
        if len(nxt) != 1:
            break
        n = nxt[0]
        if n.op_type in ("Transpose", "Reshape"):
            region.append(n)
        elif out is None and _const_weight(c, n):
            out = n
            region.append(n)
            d = _dense(c, n, cons)
            if d and d[2] is not None:
                region.append(d[2])
                t = d[2].output[0]
                continue
        else:
            break
        t = n.output[0]
    if out is None:
        return None
    ids = {id(n) for n in region}
    for n in region:                                       # closed: nothing outside reads its inner tensors
        for o in n.output:
            if o != t and any(id(m) not in ids for m in cons.get(o, [])):
                return None
    return region, (ends + [None])[:2], t, inproj, out, next(iter(masks), None), kv


def run_region(c, m, region_out, x, xv, extra=None):
    """onnxruntime on the part of model m computing region_out from x (given as xv) and the graph inputs in
    extra {name: array} (a mask input)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from .onnx_import import reads
    prod = {o: n for n in m.graph.node for o in n.output}
    extra = extra or {}
    need, stack, nodes = set(), [region_out], []
    while stack:
        t = stack.pop()
        if t in need or t == x or t in extra or t not in prod:
            continue
        need.add(t)
        stack += reads(prod[t])
    seen = set()
    for n in m.graph.node:
        if any(o in need for o in n.output) and id(n) not in seen:
            seen.add(id(n))
            nodes.append(n)
    used = {i for n in nodes for i in reads(n)}
    inits = [i for i in m.graph.initializer if i.name in used]
    extra = dict(extra)
    for i in m.graph.input:                                # other graph inputs read for their shape only: zeros
        if i.name in used and i.name != x and i.name not in extra and i.name not in c.consts:
            shape = [d if isinstance(d, int) else len(xv) for d in c.shapes[i.name]]
            extra[i.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
    ins = [helper.make_tensor_value_info(x, TensorProto.FLOAT, list(xv.shape))]
    ins += [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
            for k, v in extra.items()]
    g = helper.make_graph(nodes, "region", ins, [helper.make_tensor_value_info(region_out, TensorProto.FLOAT, None)],
                          inits)
    sub = helper.make_model(g, opset_imports=list(m.opset_import), ir_version=m.ir_version)
    s = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {x: xv, **extra})[0]


def _ours(heads, causal, w, xv, valid=None):
    layer = REGISTRY["MultiHeadSelfAttention"]("attention", heads=heads, causal=causal)
    layer.build([xv.shape[1:]])
    layer.p = {k: np.ascontiguousarray(v, np.float32) for k, v in w.items()}
    layer.in_masks = [valid]
    return layer.forward(xv)


def index(data):
    """({tensor: node computing it}, {tensor: nodes reading it}) over the data nodes."""
    cons = {}
    for n in data:
        for t in n.input:
            cons.setdefault(t, []).append(n)
    return {o: n for n in data for o in n.output}, cons


def same(got, want):
    """A candidate layer's output equals the region's (relative error 1e-4)."""
    return got.shape == want.shape and np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def find(c, m, data):
    """Every self-attention (and cross-attention) block among the data nodes of model m (consts and symbolic
    tensors known)."""
    from .onnx_import_multi import encode, example_valid
    prod, cons = index(data)
    blocks, taken = [], set()
    for S in (n for n in data if n.op_type == "Softmax"):
        r = _region(c, S, prod, cons)
        if r is None or any(id(n) in taken for n in r[0]):
            continue
        region, (x, e), y, inproj, out, mask, kv = r
        if e is not None:
            from .onnx_import_cross import block
            b = block(c, m, r, cons, S)
            if b:
                blocks.append(b)
                taken |= {id(n) for n in region}
            continue
        shape = c.shapes.get(x, ())
        if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape[1:]):
            continue
        T, d = shape[1:]
        ws = [_dense(c, n, cons) for n in inproj]
        wo = _dense(c, out, cons)
        if any(v is None for v in ws) or wo is None or wo[0].shape != (d, d):
            continue
        if len(ws) == 1 and ws[0][0].shape == (3 * d, d):
            orders = [split_rows(ws[0], 3)]
        elif len(ws) == 3 and all(v[0].shape == (d, d) for v in ws):
            orders = [tuple((ws[i][0], ws[i][1]) for i in p) for p in permutations(range(3))]
        else:
            continue
        xv = np.random.default_rng(0).normal(size=(2, T, d)).astype(np.float32)
        mi = c.mask_inputs.get(mask)
        valid = example_valid(T) if mi else None
        kinds = [None] if mi is None else [mi["kind"]] if mi["kind"] else mi["kinds"]
        found = None
        for kind in kinds:
            try:
                want = run_region(c, m, y, x, xv, mi and {mask: encode(mi, kind, valid)})
            except Exception:                                # the region does not run on its own
                continue
            found = _match(d, orders, wo, xv, valid, want)
            if found:
                break
        if found:
            if mi:
                mi["kind"] = kind
            heads, causal, w = found
            blocks.append(Block(region, x, y, "MultiHeadSelfAttention", {"heads": heads, "causal": causal},
                                w, S.name or S.output[0]))
            taken |= {id(n) for n in region}
    return blocks


def _match(d, orders, wo, xv, valid, want):
    """(heads, causal, weights) of our layer computing `want` (at the valid query steps), or None."""
    for heads, causal in ((h, k) for k in (False, True) for h in range(1, d + 1) if d % h == 0):
        for qkv in orders:
            w = {"Wo": wo[0], "bo": wo[1]}
            for k, (W, b) in zip("qkv", qkv):
                w[f"W{k}"], w[f"b{k}"] = W, b
            got = _ours(heads, causal, w, xv, valid)
            if same(got if valid is None else got[valid], want if valid is None else want[valid]):
                return heads, causal, w
    return None
