"""Unmapped ONNX nodes kept as they are: each node (or connected run of them) becomes one OnnxNode layer holding
the node(s) and their constants, run in onnxruntime, not trainable (engine/layers/onnx_node.py)."""
from dataclasses import dataclass

import numpy as np

from .onnx_import import Value


@dataclass
class Run:
    """Kept nodes in one OnnxNode layer: its name, the nodes, the ONNX tensor it reads and that tensor's shape."""

    name: str
    nodes: list
    x: str
    in_shape: tuple


def _types(c):
    if not hasattr(c, "_types"):
        g = c.model.graph
        c._types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input)
                    + list(g.output)}
    return c._types


def keep(c, node, why):
    """Keep an unmapped node: a new OnnxNode, or added to the kept run whose output only it reads. None when kept
    (c.kept gets (op, name, why, layer)), else why it cannot be kept."""
    from onnx import TensorProto
    ins = [t for t in dict.fromkeys(node.input) if t and t not in c.consts]
    if any(t in c.sym for t in ins):
        return "it computes from the input's shape"
    if len(ins) != 1:
        return f"it reads {len(ins)} tensors computed by the model (a kept ONNX node reads one)"
    t = ins[0]
    v = c.values.get(t)
    if v is None or v.stale or v.view is not None:
        return f"its input {t!r} is not an imported layer output"
    outs = [o for o in node.output if o and (c.consumers.get(o) or o in c.outputs)]
    if len(outs) != 1:
        return f"{len(outs)} of its outputs are used (a kept ONNX node gives one)"
    floats = (TensorProto.FLOAT, 0)
    if _types(c).get(t, 0) not in floats or _types(c).get(outs[0], 0) not in floats:
        return "it reads or gives a tensor that is not float (Layerboard layers pass float tensors)"
    run = c.runs.get(t)
    if run is not None and len({id(n) for n in c.consumers.get(t, [])}) == 1 and t not in c.outputs:
        run = Run(run.name, run.nodes + [node], run.x, run.in_shape)
        src = None
    else:
        src = c.full(t) if v.squeezed else t
        run = Run("", [node], t, tuple(c.values[src].shape))
    try:
        text, out_shape = _pack(c, run, outs[0])
    except ValueError as e:                                   # it runs, but not as a batch-first layer
        return str(e)
    except Exception as e:                                    # onnxruntime cannot load or run it on its own
        return f"onnxruntime cannot run it on its own ({str(e).splitlines()[0][:160]})"
    ops = " → ".join(dict.fromkeys(n.op_type for n in run.nodes))
    config = {"op": ops, "onnx": text}
    if src is None:                                           # one more node in an existing OnnxNode
        c.graph.nodes[run.name].config = config
        c.values[t].stale = f"is inside the kept ONNX node '{run.name}'"
        c.runs.pop(t)
    else:
        run.name = c.name(node.name, node.op_type)
        c.graph.add_node("OnnxNode", run.name, config, {"onnx": node.op_type})
        c.graph.connect(c.values[src].node, run.name, 0)
    c.values[outs[0]] = Value(run.name, out_shape)
    c.runs[outs[0]] = run
    c.kept.append((node.op_type, node.name or node.output[0], why, run.name))
    return None


def _pack(c, run, y):
    """(config text, output shape) of the kept nodes as a one-input one-output model; checked in onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from .layers.onnx_node import pack, session
    made = {o for n in run.nodes for o in n.output}
    consts = dict.fromkeys(t for n in run.nodes for t in n.input if t and t in c.consts and t not in made)
    inits = [numpy_helper.from_array(np.asarray(c.consts[t]), t) for t in consts]
    nodes = []
    for n in run.nodes:
        p = onnx.NodeProto()
        p.CopyFrom(n)
        nodes.append(p)
    s = c.shapes.get(y)
    known = s is not None and all(isinstance(d, int) and d > 0 for d in s[1:])
    out_shape = tuple(s[1:]) if known else None

    def model(shape):
        out = helper.make_tensor_value_info(y, TensorProto.FLOAT, None if shape is None else ["batch", *shape])
        g = helper.make_graph(nodes, "kept", [helper.make_tensor_value_info(run.x, TensorProto.FLOAT,
                                                                             ["batch", *run.in_shape])], [out], inits)
        return helper.make_model(g, opset_imports=list(c.model.opset_import), ir_version=c.model.ir_version,
                                 functions=list(c.model.functions))
    if out_shape is None:                                     # shape inference did not know it: one run tells
        sess = session(pack(model(None)))
        got = sess.run([y], {run.x: np.zeros((2, *run.in_shape), np.float32)})[0].shape
        if got[:1] != (2,):
            raise ValueError(f"its output {y!r} does not keep the batch axis first")
        out_shape = tuple(got[1:])
    text = pack(model(out_shape))
    got = session(text).run([y], {run.x: np.zeros((2, *run.in_shape), np.float32)})[0].shape
    if got != (2, *out_shape):                               # runs in onnxruntime, batch first, as inferred
        raise ValueError(f"its output {y!r} is {got} for a batch of 2, not (2, *{out_shape}): it must keep the "
                         "batch axis first")
    return text, out_shape


def report(kept):
    """The lines `layerboard import` prints for the kept nodes (op, name, why → layer)."""
    return [f"  {op} '{n}': {why}; kept as OnnxNode '{layer}' (runs in onnxruntime, not trainable)"
            for op, n, why, layer in kept]
