"""ONNX's Attention operator (opset 23) as one ScaledDotProductAttention layer.

The 3-D form (batch, steps, heads·head size) with q_num_heads / kv_num_heads maps as it is; the 4-D form
(batch, heads, steps, head size) through a Permute and a Reshape per input to (steps, heads·head size) and back.
is_causal, scale and softcap become the layer's options. What the layer cannot compute is refused with one line
naming the input or attribute: a KV cache (past_key / past_value), the extra outputs (present_key, present_value,
qk_matmul_output), an attn_mask other than key padding (a per-query mask or additive bias), nonpad_kv_seqlen and a
sliding window. An attn_mask computed from a lengths/padding graph input of the key sequence (torch's
`attn_mask=key_valid[:, None, None, :]`) is that Input's mask, which the layer reads."""
import numpy as np

from .onnx_import import Unsupported, Value, _attrs, handles

INPUTS = ("Q", "K", "V", "attn_mask", "past_key", "past_value", "nonpad_kv_seqlen")
WHY = {"attn_mask": "a mask or bias per query and key step, which ScaledDotProductAttention cannot hold (it masks "
                    "padded key steps, from the lengths or padding mask of the key sequence, and causal steps only)",
       "past_key": "a KV cache (past_key/past_value) is not supported: the layer attends within the given keys only",
       "past_value": "a KV cache (past_key/past_value) is not supported: the layer attends within the given keys only",
       "nonpad_kv_seqlen": "per-sample key lengths given as a tensor (an external KV cache) are not supported"}


def _refusals(node, a):
    """The first thing of the node the layer cannot compute (one line), or None."""
    ins = dict(zip(INPUTS, list(node.input) + [""] * 7))
    for name in ("past_key", "past_value"):
        if ins[name]:
            return f"input {name} ({ins[name]!r}): {WHY[name]}"
    if a.get("qk_matmul_output_mode", 0):
        return f"attribute qk_matmul_output_mode = {a['qk_matmul_output_mode']} is not supported (only 0)"
    extra = [o for o in node.output[1:] if o]
    if extra:
        return (f"its outputs {', '.join(repr(o) for o in extra)} (present_key, present_value, qk_matmul_output) are "
                "not supported: only Y imports")
    for w in ("left_window_size", "right_window_size"):
        if a.get(w, -1) != -1:
            return f"attribute {w} = {a[w]}: a sliding window is not supported"
    if ins["nonpad_kv_seqlen"]:
        return f"input nonpad_kv_seqlen ({ins['nonpad_kv_seqlen']!r}): {WHY['nonpad_kv_seqlen']}"
    if a.get("scale") is not None and a["scale"] <= 0:
        return f"attribute scale = {a['scale']} is not positive"
    return None


def _split_from(c, t):
    """The tensor of shape (steps, heads·d) a 4-D input (heads, steps, d) was split from by a Reshape to
    (steps, heads, d) and a Permute 1,0,2 (as exporters write multi-head attention), or None."""
    g, v = c.graph, c.values[t]
    node = g.nodes[v.node]
    if node.type != "Permute" or list(node.config.get("axes", ())) != [1, 0, 2] or len(g.inputs_of(v.node)) != 1:
        return None
    r = g.inputs_of(v.node)[0]
    h, s, d = v.shape
    if g.nodes[r].type != "Reshape" or list(g.nodes[r].config.get("shape", ())) != [s, h, d]:
        return None
    src = g.inputs_of(r)[0]
    return next((n for n, w in c.values.items() if w.node == src and w.shape == (s, h * d) and w.view is None
                 and not w.squeezed and not w.stale), None)


def _to_steps(c, node, t, tag):
    """A 4-D input (heads, steps, d) as (steps, heads·d): the tensor it was split from, else through Permute and
    Reshape layers; its tensor name."""
    src = _split_from(c, t)
    if src is not None:
        return src
    v = c.values[t]
    hh, s, d = v.shape
    p = c.name(f"{node.name or 'attention'}_{tag}_steps", "permute")
    c.graph.add_node("Permute", p, {"axes": [1, 0, 2]}, {"onnx": "Transpose"})
    c.graph.connect(v.node, p, 0)
    r = c.name(f"{node.name or 'attention'}_{tag}_concat", "reshape")
    c.graph.add_node("Reshape", r, {"shape": [s, hh * d]}, {"onnx": "Reshape"})
    c.graph.connect(p, r, 0)
    c.values[f"{t}#steps"] = Value(r, (s, hh * d))
    return f"{t}#steps"


def _merged_after(c, y, T, h, dv):
    """The Transpose 0,2,1,3 and Reshape to (batch, T, h·d_v) that alone read output y (heads merged back, as
    exporters write it), or None."""
    one = (lambda t: c.consumers.get(t, [None])[0] if len(c.consumers.get(t, ())) == 1 and t not in c.outputs
           else None)
    tr = one(y)
    if tr is None or tr.op_type != "Transpose" or [int(i) for i in _attrs(tr).get("perm", [])] != [0, 2, 1, 3]:
        return None
    rs = one(tr.output[0])
    if rs is None or rs.op_type != "Reshape" or tuple(c.shapes.get(rs.output[0], ())[1:]) != (T, h * dv):
        return None
    return tr, rs


def _key_padding(c, node, mask, key, shapes):
    """Accept attn_mask `mask` when it is the key padding of the key Input: computed by the nodes after a mask
    input of that Input alone, and for example lengths equal to valid keys (bool) or 0 / −∞ (float) broadcast over
    heads and queries; the mask input's meaning (valid or padding) is then fixed. Else Unsupported."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    from .onnx_import import reads
    from .onnx_import_multi import encode
    src = c.maskish.get(mask)
    mi = c.mask_inputs.get(src)
    if mi is None or mi["input"] != c.values[key].node or mi["steps"] != shapes[1][0]:
        raise Unsupported(f"input attn_mask ({mask!r}): {WHY['attn_mask']}")
    prod = {o: n for n in c.model.graph.node for o in n.output}
    need, stack = set(), [mask]
    while stack:
        t = stack.pop()
        if t not in need and t != src and t in prod:
            need.add(t)
            stack += [i for i in reads(prod[t]) if i not in c.consts]
    nodes = [n for n in c.model.graph.node if any(o in need for o in n.output)]
    used = {i for n in nodes for i in reads(n)}
    T, S, H = shapes[0][0], shapes[1][0], 4
    B = T + H + 1                                                      # no axis of another size coincides
    valid = np.arange(S)[None, :] < (S - np.arange(B) % S)[:, None]   # (B, S): S, S − 1, … valid keys
    for kind in [mi["kind"]] if mi["kind"] else mi["kinds"]:
        try:
            feeds = {src: encode(mi, kind, valid)} | {t: c.consts[t] for t in used if t in c.consts}
            g = helper.make_graph(nodes, "mask", [helper.make_tensor_value_info(src, 0, None)],
                                  [helper.make_tensor_value_info(mask, 0, None)])
            r = np.asarray(ReferenceEvaluator(helper.make_model(g, opset_imports=c.model.opset_import)).run(
                None, feeds)[0])
            r = np.broadcast_to(r, (B, H, T, S))                       # ONNX's right-aligned broadcast
        except Exception:                                             # not computable alone, or not broadcastable
            continue
        want = np.broadcast_to(valid[:, None, None, :], r.shape)
        if (r.dtype == np.bool_ and np.array_equal(r, want)) or (
                r.dtype != np.bool_ and np.all(r[want] == 0) and np.all(r[~want] <= -1e4)):
            mi["kind"] = kind
            return
    raise Unsupported(f"input attn_mask ({mask!r}) is computed from the mask input {src!r} but is not the key "
                      "padding of the key sequence (valid keys for every head and query step)")


@handles("Attention")
def _attention(c, node):
    a = _attrs(node)
    why = _refusals(node, a)
    if why:
        raise Unsupported(why)
    q, k, v = node.input[:3]
    if any(t in c.consts for t in (q, k, v)):
        raise Unsupported("its Q, K or V is a constant: ScaledDotProductAttention attends over layer outputs")
    for t in (q, k, v):
        w = c.values.get(t)
        if w is None or w.view is not None or w.stale or w.squeezed:
            raise Unsupported(f"its input {t!r} is not an imported layer output")
    mask = node.input[3] if len(node.input) > 3 else ""
    shapes = [c.values[t].shape for t in (q, k, v)]
    cfg = {"causal": bool(a.get("is_causal", 0)), "scale": float(a.get("scale") or 0.0),
           "softcap": float(a.get("softcap") or 0.0)}
    if all(len(s) == 2 for s in shapes):                               # (batch, steps, heads·head size)
        if "q_num_heads" not in a or "kv_num_heads" not in a:
            raise Unsupported("3-D inputs need attributes q_num_heads and kv_num_heads")
        cfg.update(heads=int(a["q_num_heads"]), kv_heads=int(a["kv_num_heads"]))
        if mask:
            _key_padding(c, node, mask, k, shapes)
        c.add(node, "ScaledDotProductAttention", cfg, [q, k, v])
        return
    if not all(len(s) == 3 for s in shapes):
        raise Unsupported(f"Q, K and V must all be 3-D or all 4-D, got shapes {', '.join(map(str, shapes))} "
                          "(without the batch axis)")
    (h, T, _), (hkv, _, _), (_, _, dv) = shapes                        # (heads, steps, head size) each
    cfg.update(heads=h, kv_heads=hkv)
    ins = [_to_steps(c, node, t, tag) for t, tag in ((q, "q"), (k, "k"), (v, "v"))]
    if mask:
        _key_padding(c, node, mask, ins[1], [c.values[t].shape for t in ins])
    out = c.layer_shape("ScaledDotProductAttention", cfg, [c.values[t].shape for t in ins])
    base = node.name or "attention"
    n = c.add(node, "ScaledDotProductAttention", cfg, ins, out_shape=out)          # (T, h·d_v)
    after = _merged_after(c, node.output[0], T, h, dv)
    if after is not None:                                              # the heads merged again right after: done
        c.done.update(id(x) for x in after)
        c.values[after[1].output[0]] = Value(n, out)
        return
    r = c.name(f"{base}_heads", "reshape")
    c.graph.add_node("Reshape", r, {"shape": [T, h, dv]}, {"onnx": "Reshape"})   # (T, h, d_v)
    c.graph.connect(n, r, 0)
    p = c.name(f"{base}_out", "permute")
    c.graph.add_node("Permute", p, {"axes": [1, 0, 2]}, {"onnx": "Transpose"})    # (h, T, d_v)
    c.graph.connect(r, p, 0)
    c.values[node.output[0]] = Value(p, (h, T, dv))


_attention.reads_masks = True       # onnx_import lets it read an attn_mask computed from a mask input
