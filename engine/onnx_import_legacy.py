"""ONNX import of what older opsets mean and the version converter leaves as is, and of channel-first (N, C, L)
tensors: Softmax / LogSoftmax / Hardmax before opset 13 over the axes from `axis` on (a Reshape to (…, product),
the layer over the last axis, a Reshape back); PRelu before opset 7 with a 1-D slope per channel (axis 1); and
PReLU / BatchNorm per channel C of an (N, C, L) tensor, which Layerboard reads as (T, F), through Permute (L, C)."""
import numpy as np

from .onnx_import import Value

ROWS = ("Softmax", "LogSoftmax", "Hardmax")


def upgrade(m, opset):
    """The model with old-opset Softmax-family nodes and PRelu slopes written as opset 13 reads them."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference
    if not any(n.op_type in ROWS + ("PRelu",) for n in m.graph.node):
        return m
    m = onnx.ModelProto.FromString(m.SerializeToString())    # the caller's model stays as it is
    try:
        shapes = shape_inference.infer_shapes(m)
    except Exception:                                         # the converter's error is clearer
        return m
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in
             list(shapes.graph.value_info) + list(shapes.graph.input) + list(shapes.graph.output)}
    inits = {t.name: t for t in m.graph.initializer}
    nodes = []
    for n in m.graph.node:
        r = ranks.get(n.input[0]) if n.input else None
        if n.op_type in ROWS and opset < 13 and r:
            nodes += _rows(n, r, helper)
            continue
        if n.op_type == "PRelu" and opset < 7 and r and r > 2 and len(n.input) > 1 and n.input[1] in inits:
            a = numpy_helper.to_array(inits[n.input[1]])
            if a.ndim == 1 and a.size > 1:                    # before opset 7: one slope per channel (axis 1)
                name = n.input[1] + "_per_channel"
                a = a.reshape((-1,) + (1,) * (r - 2))          # (C, 1, …)
                m.graph.initializer.append(numpy_helper.from_array(a, name))
                if any(i.name == n.input[1] for i in m.graph.input):  # IR < 4: each initializer is also an input
                    m.graph.input.append(helper.make_tensor_value_info(name, inits[n.input[1]].data_type, a.shape))
                n.input[1] = name
        nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def _rows(n, r, helper):
    """Nodes computing old-opset op n over the axes from `axis` on of a rank-r input (one node when that is the
    last axis; from axis 0, one row of the whole batch, which the importer refuses)."""
    axis = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"), 1) % r
    del n.attribute[:]
    if axis == r - 1:
        n.attribute.append(helper.make_attribute("axis", axis))
        return [n]
    x, y, base = n.input[0], n.output[0], (n.name or n.output[0]) + "_rows"
    rows = [0] * axis + [-1]                                 # (N, …, product of the axes from `axis` on)
    shape = helper.make_node("Constant", [], [base + "_shape"], value=helper.make_tensor(
        base + "_shape", 7, [len(rows)], rows))
    first = ([helper.make_node("Flatten", [x], [base + "_in"], name=base + "_in", axis=0)] if axis == 0 else
             [shape, helper.make_node("Reshape", [x, base + "_shape"], [base + "_in"], name=base + "_in")])
    return first + [helper.make_node(n.op_type, [base + "_in"], [base + "_out"], name=n.name, axis=max(axis, 1)),
            helper.make_node("Shape", [x], [base + "_back"], name=base + "_back"),
            helper.make_node("Reshape", [base + "_out", base + "_back"], [y], name=base + "_out")]


def channels_first(c, node, x, type, config, **weights):
    """Layer `type` per channel C of x's (C, L) sample: Permute to (L, C), the layer, Permute back."""
    C, L = c.values[x].shape
    base = c.name(node.name or node.op_type, node.op_type.lower())
    c.names.discard(base)
    p = c.name(f"{base}_to_LC", "permute")
    c.graph.add_node("Permute", p, {"axes": [1, 0]}, {"onnx": "Transpose"})
    c.graph.connect(c.values[x].node, p, 0)
    c.values[x + "#LC"] = Value(p, (L, C))                  # (L, C)
    name = c.add(node, type, config, [x + "#LC"], out_shape=(L, C), **weights)
    q = c.name(f"{base}_to_CL", "permute")
    c.graph.add_node("Permute", q, {"axes": [1, 0]}, {"onnx": "Transpose"})
    c.graph.connect(name, q, 0)
    c.values[node.output[0]] = Value(q, (C, L))             # (C, L)


def prelu_channels(c, node, x, slope):
    """PRelu with slopes (C, 1) for an (N, C, L) tensor: PReLU per channel through Permute; False otherwise."""
    s = c.values[x].shape
    a = slope.reshape(-1)
    if len(s) != 2 or a.size != s[0] or c.values[x].squeezed:
        return False
    try:
        same = np.array_equal(np.broadcast_to(slope, (1,) + s), np.broadcast_to(a[:, None], (1,) + s))
    except ValueError:
        return False
    if same:
        channels_first(c, node, x, "PReLU", {"per_channel": True}, a=a)
    return same
