"""Open an ONNX model made elsewhere as a Layerboard project: operators become registry layers, weights come along.

Handlers in OPS turn one ONNX node into one layer or fold it into the layer before (a MatMul's bias Add, the
Flatten after a global pool): engine/onnx_import_ops.py (convolution, pooling, normalisation, layout),
onnx_import_pointwise.py (activations, merges), onnx_import_seq.py (recurrent nodes and the layout-only
Transpose/Squeeze/Gather around them). Blocks of several nodes become one layer where they compute what it computes
(onnx_import_attn.py: self-attention; an activation written as several elementwise nodes). Nodes computing only
from constants are evaluated at import; nodes computing from the input's shape (the batch size) are kept symbolic.
Whatever has no mapping is reported node by node (op, name, why) in one list. Several inputs and outputs, and
mask inputs (lengths, key padding): onnx_import_multi.py; cross-attention: onnx_import_cross.py; the command:
onnx_import_cli.py.
"""
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import LayerboardError
from .graph import Graph
from .layers import REGISTRY

OPS = {}             # ONNX op_type -> handler(ctx, node) (returns nothing; raises Unsupported)
MIN_OPSET = 13
NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


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
    view: object = None           # None: the layer's output as is; else how the ONNX tensor lays it out ("tb":
                                  # time-major (T, B, F)) or a recurrent node's output still to be made a layer
    stale: str = ""               # why this tensor no longer exists (its layer was changed afterwards)


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
    sym: dict = field(default_factory=dict)            # tensor name -> True when all zeros: computed from shapes only
    consumers: dict = field(default_factory=dict)      # tensor name -> nodes reading it
    done: set = field(default_factory=set)             # ids of nodes already imported as part of a pattern
    keep: bool = False                                 # keep unmapped nodes as OnnxNode layers (not --strict)
    kept: list = field(default_factory=list)           # (op, node name, why, OnnxNode layer) of each kept node
    runs: dict = field(default_factory=dict)           # tensor name -> the kept run (onnx_import_keep.Run) giving it
    outputs: set = field(default_factory=set)          # the model's output tensor names
    model: object = None                               # the ModelProto (opsets, types, functions)
    worlds: dict = field(default_factory=dict)         # shape-computed tensor -> its values for batch 1 and 2
    maskish: dict = field(default_factory=dict)        # tensor name -> the mask input it is computed from
    mask_inputs: dict = field(default_factory=dict)    # mask input -> its Input and encoding (onnx_import_multi)

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
        if out_shape is None:
            try:
                out_shape = self.out_shape(node)
            except Unsupported:                               # shape inference stopped at a folded constant
                out_shape = self.layer_shape(type, config, [self.values[t].shape for t in inputs])
        name = self.name(node.name, node.op_type)
        self.graph.add_node(type, name, config, {"onnx": node.op_type})
        for port, t in enumerate(inputs):
            self.graph.connect(self.values[t].node, name, port)
        for k, v in weights.items():
            self.weights[f"{name}/{k}"] = np.asarray(v, np.float32)
        self.values[node.output[0]] = Value(name, out_shape)
        return name

    def layer_shape(self, type, config, in_shapes):
        """Our layer's output shape for these inputs (when ONNX shape inference does not know it)."""
        from .errors import LayerboardError as E
        try:
            return tuple(REGISTRY[type](**config).compute_output_shape([tuple(s) for s in in_shapes]))
        except E as e:
            raise Unsupported(str(e)) from None

    def out_shape(self, node, i=0):
        s = self.shapes.get(node.output[i])
        if s is None or any(not isinstance(d, int) for d in s[1:]):
            raise Unsupported("its output shape is not known (run onnx shape inference on the file first)")
        return tuple(s[1:])

    def data(self, node, views=False):
        """The node's tensor inputs (not constants, not shape computations), each already imported."""
        ins = [t for t in node.input if t and t not in self.consts and t not in self.sym]
        for t in ins:
            if t not in self.values:
                raise Unsupported(f"its input {t!r} comes from a node that was not imported")
            v = self.values[t]
            if v.stale:
                raise Unsupported(f"its input {t!r} {v.stale}")
            if v.view is not None and not views:
                raise Unsupported(f"its input {t!r} is in a layout Layerboard keeps only around recurrent "
                                  f"layers ({v.view if isinstance(v.view, str) else 'a recurrent node output'})")
        return ins

    def full(self, t):
        """Tensor t as ONNX has it: a squeezed (C,) back to (C, 1, 1) through a Reshape layer."""
        v = self.values[t]
        if not v.squeezed:
            return t
        shape = tuple(self.shapes[t][1:])
        name = self.name(f"{v.node}_unsqueezed", "reshape")
        self.graph.add_node("Reshape", name, {"shape": list(shape)}, {"onnx": "Reshape"})
        self.graph.connect(v.node, name, 0)
        self.values[t + "#full"] = Value(name, shape)
        return t + "#full"

    def const(self, node, i, what):
        if len(node.input) <= i or node.input[i] not in self.consts:
            raise Unsupported(f"its {what} is computed, not a constant")
        return self.consts[node.input[i]]

    def alias(self, node, src):
        """The node's output is its input (Identity, Dropout at inference, Flatten after a global pool)."""
        self.values[node.output[0]] = self.values[src]


def reads(node):
    """The tensors a node reads: its inputs and what its subgraphs (If/Loop branches) take from outside them."""
    out = [t for t in node.input if t]
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            made = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {t.name for t in g.initializer}
            out += [t for n in g.node for t in reads(n) if t not in made]
    return list(dict.fromkeys(out))


def _attrs(node):
    from onnx import helper
    return {a.name: _text(helper.get_attribute_value(a)) for a in node.attribute}


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def reshape_to(c, node, x, shape):
    """The node's output is x reshaped to shape (batch kept): the same tensor, a Flatten or a Reshape layer."""
    v = c.values[x]
    if shape == v.shape or (v.squeezed and shape == (v.shape[0],)):
        c.alias(node, x)
    elif v.squeezed and shape == tuple(c.shapes.get(x, ())[1:]):
        c.values[node.output[0]] = Value(v.node, v.shape, squeezed=True)
    elif len(shape) == 1:
        c.add(node, "Flatten", {}, [x], out_shape=shape) if len(v.shape) > 1 else c.alias(node, x)
    else:
        c.add(node, "Reshape", {"shape": list(shape)}, [x], out_shape=shape)


def _fold(c, node):
    """Evaluate a node whose inputs are all constants (weights sliced and concatenated by the exporter)."""
    from onnx.reference import ReferenceEvaluator
    ins = [t for t in node.input if t]
    outs = ReferenceEvaluator(node).run(None, {t: c.consts[t] for t in ins})
    for name, v in zip(node.output, outs):
        if name:
            c.consts[name] = np.asarray(v)


def _symbolic(c, node):
    """A node computing from shapes (Shape, and what follows it up to ConstantOfShape/Expand): kept symbolic,
    remembered as all zeros when it is (a recurrent node's zero initial state)."""
    from onnx import numpy_helper
    first = node.input[0] if node.input else ""
    zero = {"ConstantOfShape": lambda: not node.attribute or not np.any(numpy_helper.to_array(_attrs(node)["value"])),
            "Expand": lambda: first in c.consts and not np.any(c.consts[first])}.get(node.op_type)
    if zero is not None:
        z = zero()
    else:
        z = node.op_type in ("Slice", "Gather", "Reshape", "Unsqueeze", "Squeeze", "Transpose", "Identity",
                             "Cast", "Concat") and all(c.sym.get(t) or (t in c.consts and not np.any(c.consts[t]))
                                                       for t in node.input[:1])
    for o in node.output:
        c.sym[o] = bool(z)


def _block(c, b):
    """The layer of a recognised block of nodes (self-attention, an activation written out)."""
    v = c.values.get(b.x)
    if v is None or v.view is not None or v.stale:
        c.problems.append((b.nodes[0].op_type, b.name, f"the {b.type} block's input is not an imported layer output"))
        return
    if b.out_shape is not None:                               # a block that changes the shape reads the full tensor
        v = c.values[c.full(b.x)]
    name = c.name(b.name.rsplit("/", 1)[0] if "/" in b.name else b.name, b.type.lower())
    c.graph.add_node(b.type, name, dict(b.config), {"onnx": b.type})
    c.graph.connect(v.node, name, 0)
    if b.e is not None:                                       # cross-attention: keys and values from input 2
        ve = c.values.get(b.e)
        if ve is None or ve.view is not None or ve.stale or ve.squeezed:
            c.graph.remove_node(name)
            c.problems.append((b.nodes[0].op_type, b.name, f"the {b.type} block's keys input is not a layer output"))
            return
        c.graph.connect(ve.node, name, 1)
    for k, w in b.weights.items():
        c.weights[f"{name}/{k}"] = np.asarray(w, np.float32)
    c.values[b.y] = Value(name, v.shape, squeezed=v.squeezed) if b.out_shape is None else Value(name, b.out_shape)


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


def read(path_or_model, strict=False):
    """(Graph, weights {"node/param": array}, kept) of an ONNX file or ModelProto; kept lists (op, node name, why,
    OnnxNode layer) of each node without a mapping kept as it is. ImportFailed on a file that cannot be read or
    mapped (its .problems list every node without a mapping; strict: also those that could be kept)."""
    import onnx
    from onnx import numpy_helper, shape_inference
    try:
        m = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    except Exception as e:                                    # protobuf DecodeError, OSError
        raise ImportFailed(f"cannot read {path_or_model}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        try:
            m = onnx_import_legacy.upgrade(m, opset)           # what the converter leaves in the old meaning
            m = onnx.version_converter.convert_version(m, MIN_OPSET)
        except Exception as e:
            raise ImportFailed(f"opset {opset} is older than {MIN_OPSET} and could not be converted: {e}")
    m = shape_inference.infer_shapes(m)
    c = Ctx(keep=not strict, model=m, outputs={o.name for o in m.graph.output})
    c.consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        c.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
    for node in m.graph.node:
        for t in node.input:
            c.readers[t] = c.readers.get(t, 0) + 1
            c.consumers.setdefault(t, []).append(node)
    onnx_import_multi.add_inputs(c, m)                         # Input layers; lengths/padding inputs as masks
    from onnx import helper
    for node in m.graph.node:                                 # constants first: patterns look ahead at them
        if node.op_type == "Constant":
            c.consts[node.output[0]] = numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
    data = []
    for node in m.graph.node:                                 # pass 1: constants folded, shape computations marked
        ins = reads(node)
        if node.op_type == "Constant":
            continue
        if ins and all(t in c.consts for t in ins) and node.op_type not in NO_FOLD:
            try:
                _fold(c, node)
            except Exception as e:                             # an operator the reference evaluator lacks
                c.problems.append((node.op_type, node.name or node.output[0], f"cannot be evaluated at import: {e}"))
        elif node.op_type == "Shape" or (ins and all(t in c.consts or t in c.sym for t in ins)
                                         and any(t in c.sym for t in ins)):
            _symbolic(c, node)
            onnx_import_shapes.worlds(c, node)                # a weight sliced by shape-computed bounds: constant
        elif not onnx_import_multi.masked(c, node, ins):      # nodes computing a mask are not layers
            data.append(node)
    blocks = {}
    found = (onnx_import_attn.find(c, m, data) + onnx_import_norm.find(c, m, data)
             + onnx_import_layout.find(c, m, data))                # PixelShuffle as Reshape → Transpose → Reshape
    for b in found + onnx_import_pointwise.find_pointwise(c, m, data):
        if not any(id(n) in blocks for n in b.nodes):          # attention first; no block inside another
            blocks.update({id(n): b for n in b.nodes})
    for node in data:                                         # pass 2: layers
        if id(node) in c.done:
            continue
        if id(node) in blocks:
            b = blocks[id(node)]
            if b.y in node.output:
                _block(c, b)
            continue
        fn = OPS.get(node.op_type)
        try:
            if fn is None:
                raise Unsupported("Layerboard has no layer for this operator yet")
            if node.domain not in ("", "ai.onnx"):
                raise Unsupported(f"operator domain {node.domain!r}")
            if any(t in c.maskish for t in node.input) and not getattr(fn, "reads_masks", False):
                raise Unsupported(f"it reads the mask input {c.maskish[next(t for t in node.input if t in c.maskish)]!r}"
                                  ", which Layerboard maps only as the key padding of an attention block")
            fn(c, node)
        except Unsupported as e:
            why = c.keep and onnx_import_keep.keep(c, node, str(e))
            if why is None:
                continue
            c.problems.append((node.op_type, node.name or next((o for o in node.output if o), ""),
                               f"{e}; it cannot be kept as an ONNX node either: {why}" if why else str(e)))
    if c.problems:
        lines = [f"{op} '{n}': {why}" for op, n, why in c.problems]
        raise ImportFailed(f"{len(c.problems)} ONNX node(s) cannot be imported: " + "; ".join(lines[:5])
                           + (f"; … and {len(lines) - 5} more" if len(lines) > 5 else ""), c.problems)
    keep = onnx_import_multi.outputs(c, m)                    # the graph pruned to what the outputs need
    onnx_import_multi.note(c)                                 # each Input's mask inputs, in its meta
    _layout(c.graph)
    return (c.graph, {k: v for k, v in c.weights.items() if k.split("/")[0] in keep},
            [k for k in c.kept if k[3] in keep])


from . import onnx_import_attn, onnx_import_keep, onnx_import_norm, onnx_import_ops, onnx_import_pointwise  # noqa: E402,F401
from . import onnx_import_sample  # noqa: E402,F401  (GridSample, RotaryEmbedding)
from . import onnx_import_math  # noqa: E402,F401  (Math, Reduce, Divide)
from . import onnx_import_layout  # noqa: E402,F401  (Slice, Split, DepthToSpace, SpaceToDepth, Tile)
from . import onnx_import_legacy  # noqa: E402  (old-opset Softmax axes and PRelu slopes, (N, C, L) channels)
from . import onnx_import_attention, onnx_import_multi, onnx_import_seq, onnx_import_shapes  # noqa: E402,F401
from .onnx_import_cli import add_parser, cmd_import, import_project  # noqa: E402,F401
