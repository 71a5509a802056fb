"""Cross-attention in an ONNX graph (torch's nn.MultiheadAttention with query ≠ key, as in nn.TransformerDecoder)
as one CrossAttention layer: the region onnx_import_attn finds around a Softmax whose queries are projected from
one tensor and keys and values from another, accepted only when our layer computes what the region computes on
random inputs in onnxruntime (relative error 1e-4), with the keys' padding mask when the region reads one."""
import numpy as np

from .layers import REGISTRY
from .onnx_import_attn import Block, _dense, run_region, same, split_rows
from .onnx_import_multi import encode, example_valid


def _ours(heads, w, xv, ev, valid):
    layer = REGISTRY["CrossAttention"]("attention", heads=heads)
    layer.build([xv.shape[1:], ev.shape[1:]])
    layer.p = {k: np.ascontiguousarray(v, np.float32) for k, v in w.items()}
    layer.in_masks = [None, valid]
    return layer.forward(xv, ev)


def block(c, m, r, cons, S):
    """The CrossAttention Block of region r (onnx_import_attn._region), or None when it does not compute one."""
    region, (x, e), y, inproj, out, mask, kv = r
    sx, se = c.shapes.get(x, ()), c.shapes.get(e, ())
    if len(sx) != 3 or len(se) != 3 or not all(isinstance(v, int) and v > 0 for v in sx[1:] + se[1:]):
        return None
    (T, d), (Sn, de) = sx[1:], se[1:]
    q = [_dense(c, n, cons) for n in inproj if n not in kv]
    kvs = [_dense(c, n, cons) for n in kv]
    wo = _dense(c, out, cons)
    if len(q) != 1 or any(v is None for v in q + kvs) or wo is None or wo[0].shape != (d, d) or q[0][0].shape != (d, d):
        return None
    if len(kvs) == 1 and kvs[0][0].shape == (2 * d, de):
        orders = [split_rows(kvs[0], 2)]
    elif len(kvs) == 2 and all(v[0].shape == (d, de) for v in kvs):
        orders = [(kvs[0][:2], kvs[1][:2]), (kvs[1][:2], kvs[0][:2])]
    else:
        return None
    rng = np.random.default_rng(0)
    xv, ev = rng.normal(size=(2, T, d)).astype(np.float32), rng.normal(size=(2, Sn, de)).astype(np.float32)
    mi = c.mask_inputs.get(mask)
    valid = example_valid(Sn) if mi else None
    for kind in [None] if mi is None else [mi["kind"]] if mi["kind"] else mi["kinds"]:
        try:
            want = run_region(c, m, y, x, xv, {e: ev, **({mask: encode(mi, kind, valid)} if mi else {})})
        except Exception:                                    # the region does not run on its own
            continue
        for heads in (h for h in range(1, d + 1) if d % h == 0):
            for (Wk, bk), (Wv, bv) in orders:
                w = {"Wq": q[0][0], "bq": q[0][1], "Wk": Wk, "bk": bk, "Wv": Wv, "bv": bv, "Wo": wo[0], "bo": wo[1]}
                if same(_ours(heads, w, xv, ev, valid), want):
                    if mi:
                        mi["kind"] = kind
                    return Block(region, x, y, "CrossAttention", {"heads": heads}, w, S.name or S.output[0], e)
    return None
