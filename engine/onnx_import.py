"""Open an ONNX model made elsewhere as a Layerboard project: operators become registry layers, weights come along.

Handlers in OPS turn one ONNX node into one layer (or fold it into the layer before: a MatMul's bias Add, the
Flatten after a global pool). Whatever has no mapping is reported node by node (op, name, why) in one list.
"""
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import LayerboardError
from .graph import Graph
from .layers import REGISTRY

OPS = {}             # ONNX op_type -> handler(ctx, node) (returns nothing; raises Unsupported)
MIN_OPSET = 13


class Unsupported(Exception):
    """This node has no layer in Layerboard (the message says why)."""


class ImportFailed(LayerboardError):
    """The model cannot be opened; .problems lists (op, node name, why) for every node that has no mapping."""

    def __init__(self, msg, problems=()):
        super().__init__(msg)
        self.problems = list(problems)


def handles(*ops):
    def deco(fn):
        for o in ops:
            OPS[o] = fn
        return fn
    return deco


@dataclass
class Value:
    """An ONNX tensor as the importer sees it: the node computing it and its shape without the batch axis."""

    node: str
    shape: tuple
    squeezed: bool = False        # a global pool's (C, 1, 1) kept as our (C,)


@dataclass
class Ctx:
    graph: Graph = field(default_factory=Graph)
    consts: dict = field(default_factory=dict)         # tensor name -> numpy array (initializers, Constant)
    values: dict = field(default_factory=dict)         # tensor name -> Value
    shapes: dict = field(default_factory=dict)         # tensor name -> full shape from ONNX shape inference
    weights: dict = field(default_factory=dict)        # "node/param" -> array
    readers: dict = field(default_factory=dict)        # tensor name -> number of nodes reading it
    names: set = field(default_factory=set)
    problems: list = field(default_factory=list)

    def name(self, onnx_name, op):
        """A canvas name from the ONNX node name ('/' is not allowed in ours), unique."""
        base = re.sub(r"[/:]+", "_", (onnx_name or op.lower()).strip("/")) or op.lower()
        n, i = base, 2
        while n in self.names:
            n, i = f"{base}_{i}", i + 1
        self.names.add(n)
        return n

    def add(self, node, type, config, inputs, out_shape=None, **weights):
        """A layer for an ONNX node, connected to the layers computing its inputs; returns its name."""
        name = self.name(node.name, node.op_type)
        self.graph.add_node(type, name, config, {"onnx": node.op_type})
        for port, t in enumerate(inputs):
            self.graph.connect(self.values[t].node, name, port)
        for k, v in weights.items():
            self.weights[f"{name}/{k}"] = np.asarray(v, np.float32)
        shape = out_shape if out_shape is not None else self.out_shape(node)
        self.values[node.output[0]] = Value(name, shape)
        return name

    def out_shape(self, node, i=0):
        s = self.shapes.get(node.output[i])
        if s is None or any(not isinstance(d, int) for d in s[1:]):
            raise Unsupported("its output shape is not known (run onnx shape inference on the file first)")
        return tuple(s[1:])

    def data(self, node):
        """The node's tensor inputs (not constants), each already imported."""
        ins = [t for t in node.input if t and t not in self.consts]
        for t in ins:
            if t not in self.values:
                raise Unsupported(f"its input {t!r} comes from a node that was not imported")
        return ins

    def const(self, node, i, what):
        if len(node.input) <= i or node.input[i] not in self.consts:
            raise Unsupported(f"its {what} is computed, not a constant")
        return self.consts[node.input[i]]

    def alias(self, node, src):
        """The node's output is its input (Identity, Dropout at inference, Flatten after a global pool)."""
        self.values[node.output[0]] = self.values[src]


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _has(type, hp):
    return type in REGISTRY and any(h.name == hp for h in REGISTRY[type].hparams)


# ---- handlers ----
@handles("Conv")
def _conv(c, node):
    a = _attrs(node)
    W = c.const(node, 1, "weight")
    (x,) = c.data(node)
    if W.ndim != 4:
        raise Unsupported(f"only 2-D convolution maps to Conv2D (weight of rank {W.ndim})")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise Unsupported("auto_pad is not supported; export with explicit pads")
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise Unsupported(f"asymmetric pads {pads}")
    cfg = {"filters": int(W.shape[0]), "kernel_size": list(W.shape[2:]), "stride": list(a.get("strides", [1, 1])),
           "padding": "explicit" if any(pads) else "valid", "pad": pads[:2], "use_bias": len(node.input) > 2}
    for key, hp, default in (("group", "groups", 1), ("dilations", "dilation", [1, 1])):
        v = a.get(key, default)
        if v != default and v != list(default if isinstance(default, list) else [default]):
            if not _has("Conv2D", hp):
                raise Unsupported(f"{key} {v} has no Conv2D option yet")
            cfg[hp] = v if isinstance(v, int) else list(v)
    w = {"W": W}
    if len(node.input) > 2:
        w["b"] = c.const(node, 2, "bias")
    c.add(node, "Conv2D", cfg, [x], **w)


@handles("BatchNormalization")
def _bn(c, node):
    a = _attrs(node)
    (x,) = c.data(node)[:1]
    g, b, m, v = (c.const(node, i, k) for i, k in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
    c.add(node, "BatchNorm", {"eps": float(a.get("epsilon", 1e-5)), "momentum": round(1 - float(a.get("momentum", 0.9)), 6)},
          [x], out_shape=c.values[x].shape, gamma=g, beta=b, running_mean=m, running_var=v)


@handles("Relu", "Sigmoid", "Tanh")
def _act(c, node):
    (x,) = c.data(node)
    c.add(node, {"Relu": "ReLU"}.get(node.op_type, node.op_type), {}, [x], out_shape=c.values[x].shape)


@handles("Softmax")
def _softmax(c, node):
    (x,) = c.data(node)
    axis = _attrs(node).get("axis", -1)
    if axis not in (-1, len(c.values[x].shape)):
        raise Unsupported(f"softmax over axis {axis}; Layerboard's Softmax is over the last axis")
    c.add(node, "Softmax", {}, [x], out_shape=c.values[x].shape)


@handles("Gemm")
def _gemm(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise Unsupported("only Y = X·Bᵀ + C (or X·B + C) with alpha = beta = 1 maps to Dense")
    B = c.const(node, 1, "weight")
    W = B if a.get("transB", 0) else B.T                                # (U, F)
    w = {"W": W}
    if len(node.input) > 2:
        w["b"] = np.broadcast_to(c.const(node, 2, "bias"), (W.shape[0],))
    c.add(node, "Dense", {"units": int(W.shape[0]), "use_bias": "b" in w}, [x], out_shape=(int(W.shape[0]),), **w)


@handles("MatMul")
def _matmul(c, node):
    (x,) = c.data(node)
    if node.input[1] not in c.consts:
        raise Unsupported("a product of two computed tensors (attention) is imported only as a whole block")
    B = c.consts[node.input[1]]                                          # (F, U)
    if B.ndim != 2:
        raise Unsupported(f"weight of rank {B.ndim}")
    c.add(node, "Dense", {"units": int(B.shape[1]), "use_bias": False}, [x],
          out_shape=c.values[x].shape[:-1] + (int(B.shape[1]),), W=B.T)


@handles("Add", "Sum")
def _add(c, node):
    ins = c.data(node)
    consts = [t for t in node.input if t in c.consts]
    if len(ins) >= 2 and not consts:
        shapes = {c.values[t].shape for t in ins}
        if len(shapes) != 1 and not _has("Add", "broadcast"):
            raise Unsupported(f"adds tensors of different shapes {sorted(shapes)}")
        c.add(node, "Add", {}, ins, out_shape=c.values[ins[0]].shape)
        return
    if len(ins) == 1 and len(consts) == 1:                               # a bias: fold into the Dense before
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
    raise Unsupported("adds constants only")


@handles("Flatten")
def _flatten(c, node):
    (x,) = c.data(node)
    if _attrs(node).get("axis", 1) != 1:
        raise Unsupported("Flatten keeps the batch axis only with axis = 1")
    if len(c.values[x].shape) == 1:
        c.alias(node, x)
        return
    c.add(node, "Flatten", {}, [x], out_shape=(int(np.prod(c.values[x].shape)),))


@handles("Reshape")
def _reshape(c, node):
    (x,) = c.data(node)
    shape = c.out_shape(node)
    if shape == c.values[x].shape or (c.values[x].squeezed and shape in ((c.values[x].shape[0],),)):
        c.alias(node, x)
    elif len(shape) == 1:
        c.add(node, "Flatten", {}, [x], out_shape=shape) if len(c.values[x].shape) > 1 else c.alias(node, x)
    else:
        c.add(node, "Reshape", {"shape": list(shape)}, [x], out_shape=shape)


@handles("MaxPool", "AveragePool")
def _pool(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    type = "MaxPool2D" if node.op_type == "MaxPool" else "AveragePool2D"
    k = list(a["kernel_shape"])
    if len(k) != 2:
        raise Unsupported(f"{len(k)}-D pooling")
    cfg = {"kernel_size": k, "stride": list(a.get("strides", [1, 1]))}
    pads = list(a.get("pads", [0, 0, 0, 0]))
    extra = {"padding": (pads, [0, 0, 0, 0]), "ceil_mode": (a.get("ceil_mode", 0), 0),
             "dilation": (list(a.get("dilations", [1, 1])), [1, 1])}
    for hp, (v, default) in extra.items():
        if v != default:
            if not _has(type, hp):
                raise Unsupported(f"{hp} {v} has no {type} option yet")
            if hp == "padding":
                if pads[:2] != pads[2:]:
                    raise Unsupported(f"asymmetric pads {pads}")
                v = pads[:2]
            cfg[hp] = v
    if type == "AveragePool2D" and any(pads) and not a.get("count_include_pad", 0) and _has(type, "count_include_pad"):
        cfg["count_include_pad"] = False
    c.add(node, type, cfg, [x])


@handles("GlobalAveragePool")
def _gap(c, node):
    (x,) = c.data(node)
    c.add(node, "GlobalAveragePool", {}, [x], out_shape=(c.values[x].shape[0],))
    c.values[node.output[0]].squeezed = True


@handles("ReduceMean")
def _reduce_mean(c, node):
    """A mean over every spatial axis of (C, H, W) is a global average pool (PyTorch's AdaptiveAvgPool2d(1))."""
    a = _attrs(node)
    (x,) = c.data(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1:
        axes = c.const(node, 1, "axes").tolist()
    rank = len(c.values[x].shape) + 1
    if axes is None or len(c.values[x].shape) != 3 or sorted(int(i) % rank for i in axes) != [2, 3]:
        raise Unsupported(f"only a mean over the spatial axes of (C, H, W) maps to GlobalAveragePool, got axes {axes}")
    c.add(node, "GlobalAveragePool", {}, [x], out_shape=(c.values[x].shape[0],))
    c.values[node.output[0]].squeezed = True


@handles("Concat")
def _concat(c, node):
    ins = c.data(node)
    axis = _attrs(node)["axis"]
    c.add(node, "Concatenate", {"axis": axis - 1 if axis > 0 else axis}, ins)


@handles("Identity", "Dropout")
def _identity(c, node):
    (x,) = c.data(node)[:1]
    c.alias(node, x)


# ---- the whole model ----
def _layout(graph):
    """Canvas positions: layers by longest path from the input, top to bottom (a wide graph: left to right)."""
    depth, ins = {}, graph.inputs_index()
    for n in graph.topo_order():
        depth[n] = 1 + max((depth[s] for s in ins[n]), default=-1)
    rows = {}
    for n, d in depth.items():
        rows.setdefault(d, []).append(n)
    wide = max(len(v) for v in rows.values()) > len(rows)
    for d, names in rows.items():
        for i, n in enumerate(names):
            x, y = (d * 220.0, i * 90.0) if wide else (i * 200.0 - (len(names) - 1) * 100.0, d * 90.0)
            graph.nodes[n].meta["pos"] = [x, y]


def read(path_or_model):
    """(Graph, weights {"node/param": array}, problems) of an ONNX file or ModelProto; ImportFailed on a file
    that cannot be read or mapped (its .problems list every node without a mapping)."""
    import onnx
    from onnx import numpy_helper, shape_inference
    try:
        m = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    except Exception as e:                                    # protobuf DecodeError, OSError
        raise ImportFailed(f"cannot read {path_or_model}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        try:
            m = onnx.version_converter.convert_version(m, MIN_OPSET)
        except Exception as e:
            raise ImportFailed(f"opset {opset} is older than {MIN_OPSET} and could not be converted: {e}")
    m = shape_inference.infer_shapes(m)
    c = Ctx()
    c.consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        c.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
    for node in m.graph.node:
        for t in node.input:
            c.readers[t] = c.readers.get(t, 0) + 1
    inputs = [i for i in m.graph.input if i.name not in c.consts]     # zoo models list initializers as inputs
    if len(inputs) != 1 or len(m.graph.output) != 1:
        raise ImportFailed(f"Layerboard models have one input and one output; this one has {len(inputs)} inputs "
                           f"({', '.join(i.name for i in inputs)}) and {len(m.graph.output)} outputs")
    shape = c.shapes[inputs[0].name][1:]
    if any(not isinstance(d, int) or d < 1 for d in shape):
        raise ImportFailed(f"input {inputs[0].name!r} needs fixed sizes after the batch axis, got {shape}")
    name = c.name(inputs[0].name, "input")
    c.graph.add_node("Input", name, {"shape": list(shape)}, {"onnx": "input"})
    c.values[inputs[0].name] = Value(name, tuple(shape))
    for node in m.graph.node:
        if node.op_type == "Constant":
            from onnx import helper
            c.consts[node.output[0]] = numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
            continue
        fn = OPS.get(node.op_type)
        try:
            if fn is None:
                raise Unsupported("Layerboard has no layer for this operator yet")
            if node.domain not in ("", "ai.onnx"):
                raise Unsupported(f"operator domain {node.domain!r}")
            fn(c, node)
        except Unsupported as e:
            c.problems.append((node.op_type, node.name or node.output[0], str(e)))
    out = m.graph.output[0].name
    if c.problems:
        lines = [f"{op} '{n}': {why}" for op, n, why in c.problems]
        raise ImportFailed(f"{len(c.problems)} ONNX node(s) cannot be imported: " + "; ".join(lines[:5])
                           + (f"; … and {len(lines) - 5} more" if len(lines) > 5 else ""), c.problems)
    if out not in c.values:
        raise ImportFailed(f"the output {out!r} is not computed by an imported node")
    keep = _upstream(c.graph, c.values[out].node)
    for n in [n for n in c.graph.topo_order() if n not in keep]:
        c.graph.remove_node(n)
    _layout(c.graph)
    return c.graph, {k: v for k, v in c.weights.items() if k.split("/")[0] in keep}, []


def _upstream(graph, name):
    seen, todo, ins = set(), [name], graph.inputs_index()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += ins[n]
    return seen


def import_project(path, name=None):
    """(Project, weights) for an ONNX file: the graph with its trained weights, default training settings."""
    from pathlib import Path
    from .project import Project
    g, w, _ = read(path)
    p = Project(graph=g, name=name or Path(str(path)).stem, description=f"Imported from {Path(str(path)).name}")
    return p, w


# ---- command line: layerboard import MODEL.onnx -o PROJECT.json [--weights W] ----
def add_parser(sub):
    s = sub.add_parser("import", help="open an ONNX model as a Layerboard project with its weights")
    s.add_argument("model", help="an .onnx file (opset 13 or later; older ones are converted)")
    s.add_argument("-o", "--output", required=True, help="the project file to write (.json)")
    s.add_argument("--weights", help="where to write the weights (.npz or .safetensors; default: "
                                     "PROJECT.weights.safetensors beside the project, which the window loads)")
    s.set_defaults(fn=cmd_import)


def cmd_import(a):
    import os
    from pathlib import Path
    from .model import Model
    from .weights import beside, save
    out = Path(a.output)
    wpath = Path(a.weights) if a.weights else beside(out)
    for f in (out, wpath):
        if not os.access(f.resolve().parent, os.W_OK):
            raise LayerboardError(f"cannot write {f}: its folder {f.resolve().parent} is not writable")
    try:
        p, w = import_project(a.model, out.stem)
    except ImportFailed as e:
        if e.problems:
            print(f"layerboard import: {len(e.problems)} node(s) of {a.model} have no Layerboard layer:")
            for op, n, why in e.problems:
                print(f"  {op} '{n}': {why}")
        raise
    model = Model(p.graph)
    model.set_weights({**model.weights(), **w}, where=f"the weights of {a.model}")
    p.save(out)
    save(wpath, model)
    print(f"wrote {out} ({len(p.graph.nodes)} nodes, {model.theta.size:,} values) and its weights {wpath}")
    return 0
