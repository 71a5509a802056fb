"""An ONNX graph's several inputs and outputs, and its mask inputs, as a Layerboard model.

Each float graph input becomes an Input layer. An integer (B,) input (valid steps per sequence, `lengths`) or a
(B, T) boolean input (or integer one named *mask*: a key-padding or attention mask) is not data: it becomes the
mask of the sequence Input it belongs to (ours are built from lengths), and the nodes computing from it are not
imported; an attention block that reads it is accepted only when our masked layer computes what the region
computes with that mask (onnx_import_attn.py); any other node reading it is listed as unsupported. Several graph
outputs: each output layer is marked meta["output"] = k (engine/model.py trains the first, predicts them all).
"""
import numpy as np

from . import onnx_import_time
from .onnx_import import ImportFailed, Value

# how a mask input encodes the valid steps: lengths (B,); padding: nonzero = padded (torch's key_padding_mask);
# valid: nonzero = valid step (an attention_mask of 1s and 0s)
KINDS = ("lengths", "padding", "valid")


def _dtype(elem):
    from onnx import helper
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem))


def add_inputs(c, m):
    """Input layers for the data inputs; c.mask_inputs {mask input: {"input", "kinds", "dtype", "kind"}}."""
    from onnx import TensorProto
    ins = [i for i in m.graph.input if i.name not in c.consts]        # zoo models list initializers as inputs
    elem = {i.name: i.type.tensor_type.elem_type for i in ins}
    ints = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8}

    def is_mask(i):
        s = c.shapes[i.name]
        return len(ins) > 1 and ((elem[i.name] in ints and len(s) == 1) or (len(s) == 2 and (
            elem[i.name] == TensorProto.BOOL or (elem[i.name] in ints and "mask" in i.name.lower()))))
    data, masks = [i for i in ins if not is_mask(i)], [i for i in ins if is_mask(i)]
    if not data:
        raise ImportFailed(f"the model has no data input (its inputs: {', '.join(i.name for i in ins) or 'none'})")
    for i in data:
        tm = onnx_import_time.time_major(c, i.name)                     # (T, B, F) read by a recurrent node
        shape = onnx_import_time.input_shape(i.name, c.shapes[i.name]) if tm else c.shapes[i.name][1:]
        if any(not isinstance(d, int) or d < 1 for d in shape):
            raise ImportFailed(f"input {i.name!r} needs fixed sizes after the batch axis, got {shape}")
        name = c.name(i.name, "input")
        c.graph.add_node("Input", name, {"shape": list(shape)},
                         {"onnx": "input"} | ({"onnx_layout": {"layout": "tb", "onnx": i.name}} if tm else {}))
        c.values[i.name] = Value(name, tuple(shape), view="tb" if tm else None)
    taken = set()
    for i in masks:
        s = c.shapes[i.name]
        seq = [d for d in data if len(c.shapes[d.name]) in (2, 3) and (len(s) == 1 or c.shapes[d.name][1] == s[1])]
        named = [d for d in seq if d.name.lower() in i.name.lower()]
        free = [d for d in named + seq if d.name not in taken]
        if not free:
            raise ImportFailed(f"input {i.name!r} looks like a mask (valid steps or padding) but no sequence input "
                               f"(batch, T, …) of its length is left for it")
        d = free[0]
        taken.add(d.name)
        kinds = ("lengths",) if len(s) == 1 else ("padding", "valid") if elem[i.name] == TensorProto.BOOL \
            else ("valid", "padding")
        c.mask_inputs[i.name] = {"input": c.values[d.name].node, "steps": c.values[d.name].shape[0], "kinds": kinds,
                                 "dtype": _dtype(elem[i.name]), "kind": None}
        c.maskish[i.name] = i.name


def masked(c, node, ins):
    """True (and its outputs marked) if the node computes from a mask input and constants/shapes only."""
    if ins and any(t in c.maskish for t in ins) and all(t in c.consts or t in c.sym or t in c.maskish for t in ins):
        src = next(c.maskish[t] for t in ins if t in c.maskish)
        for o in node.output:
            c.maskish[o] = src
        return True
    return False


def encode(mi, kind, valid):
    """The mask input's value for (B, T) valid steps under `kind`."""
    if kind == "lengths":
        return valid.sum(1).astype(mi["dtype"])
    return (~valid if kind == "padding" else valid).astype(mi["dtype"])


def example_valid(T, B=2):
    """(B, T) valid steps for checking a masked block: one full sequence, the others shorter."""
    lengths = [T] + [max(1, T - 1 - k * (T // 2)) for k in range(B - 1)]
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def note(c):
    """Each Input's mask inputs in its meta: meta["onnx_masks"] = {ONNX input: kind}."""
    for name, mi in c.mask_inputs.items():
        if mi["kind"] is not None and mi["input"] in c.graph.nodes:
            c.graph.nodes[mi["input"]].meta.setdefault("onnx_masks", {})[name] = mi["kind"]


def report(graph):
    """Lines for `layerboard import`: which ONNX input became whose mask, and the outputs when several."""
    out = []
    for n, v in graph.nodes.items():
        for name, kind in v.meta.get("onnx_masks", {}).items():
            what = "valid steps" if kind == "lengths" else f"{kind} mask"
            out.append(f"  ONNX input '{name}' ({what}) is the mask of Input '{n}': predict takes its lengths "
                       "(--lengths)")
    out += onnx_import_time.report(graph)
    outs = sorted((v.meta["output"], n) for n, v in graph.nodes.items() if isinstance(v.meta.get("output"), int))
    if len(outs) > 1:
        out.append(f"  {len(outs)} outputs: {', '.join(repr(n) for _, n in outs)}; training fits the first, the "
                   "others' own layers stay as imported; predict writes them all (.npz)")
    return out


def outputs(c, m):
    """The layer of each graph output, in order, with the graph pruned to what they need; several outputs are
    marked meta["output"] = k, through an identity Reshape where a layer is read by others too or given twice."""
    nodes, layouts = [], onnx_import_time.raw_outputs(c, m)           # a recurrent node's raw Y, Y_h
    for o in m.graph.output:
        out = o.name
        if out not in c.values:
            raise ImportFailed(f"the output {out!r} is not computed by an imported node")
        if c.values[out].squeezed and all(isinstance(d, int) for d in c.shapes.get(out, ("?",))[1:]):
            out = c.full(out)                                 # the model's own (C, 1, 1) output, not our (C,)
        nodes.append(c.values[out].node)
    keep = set()
    for n in nodes:
        keep |= upstream(c.graph, n)
    for n in [n for n in c.graph.topo_order() if n not in keep]:
        c.graph.remove_node(n)
    if len(nodes) > 1:
        for k, n in enumerate(nodes):
            if c.graph.consumers(n) or n in nodes[:k] or c.graph.nodes[n].type == "Input":
                shape = list(c.values[m.graph.output[k].name].shape)
                name = c.name(f"{m.graph.output[k].name}_output", "output")
                c.graph.add_node("Reshape", name, {"shape": shape or [1]}, {"onnx": "output"})
                c.graph.connect(n, name, 0)
                keep.add(name)
                nodes[k] = n = name
            c.graph.nodes[n].meta["output"] = k
    for k, o in enumerate(m.graph.output):
        if o.name in layouts:
            c.graph.nodes[nodes[k]].meta["onnx_layout"] = layouts[o.name]
    return keep


def upstream(graph, name):
    seen, todo, ins = set(), [name], graph.inputs_index()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += ins[n]
    return seen
