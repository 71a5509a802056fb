"""OnnxNode: ONNX node(s) of an imported model that no layer maps, kept as they are and run in onnxruntime.

Its config holds the node(s) with their constants as a one-input, one-output ONNX model (base64). It has no
gradient: the Model freezes every layer before it (engine/model.py), so training updates only the layers after it.
ONNX export re-emits the original nodes; PyTorch code export refuses it by name (it declares no to_torch)."""
import base64
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register

NO_GRADIENT = "an ONNX node has no gradient"


@dataclass(frozen=True)
class Sub:
    """A parsed OnnxNode model: the ModelProto bytes, tensor names and batch-less shapes."""

    data: bytes
    x: str
    y: str
    in_shape: tuple
    out_shape: tuple
    ops: tuple


def pack(model):
    """The config text of an ONNX ModelProto (one float input and output, batch axis first)."""
    return base64.b64encode(model.SerializeToString()).decode("ascii")


@lru_cache(maxsize=256)
def parse(text):
    """Sub of a config text; ShapeError if it is not one."""
    import onnx
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
        m = onnx.load_from_string(data)
        (x,), (y,) = m.graph.input, m.graph.output
    except Exception:                                     # binascii.Error, DecodeError, ValueError (not one in/out)
        raise ShapeError("holds no readable ONNX node: OnnxNode layers are made by importing an ONNX model "
                         "(File ▸ Open or `layerboard import`)") from None

    def dims(vi):
        return tuple(d.dim_value for d in vi.type.tensor_type.shape.dim[1:])
    return Sub(data, x.name, y.name, dims(x), dims(y), tuple(n.op_type for n in m.graph.node))


@lru_cache(maxsize=64)
def session(text):
    """An onnxruntime session for a config text (one per distinct node, shared by every copy of the layer)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(parse(text).data, opts, providers=["CPUExecutionProvider"])


def frozen_note(graph, params):
    """'layers before 'TopK_3' are frozen: an ONNX node has no gradient', or None when no OnnxNode has a layer
    with weights before it. params: node -> trainable values (NodeInfo.params)."""
    ins = graph.inputs_index()
    stops = [n for n, v in graph.nodes.items() if v.type == "OnnxNode"]
    before, todo = set(), [s for n in stops for s in ins[n]]
    while todo:
        n = todo.pop()
        if n not in before:
            before.add(n)
            todo += ins[n]
    if not any(params.get(n) for n in before):
        return None
    names = ", ".join(f"'{n}'" for n in stops if ins[n])
    return f"layers before {names} are frozen: {NO_GRADIENT}"


@register
class OnnxNode(Layer):
    category = "core"
    doc = "ONNX node(s) of an imported model kept as they are: run in onnxruntime, not trainable (no gradient)."
    hparams = (HP("op", "str", "", doc="The ONNX operator(s) it runs, e.g. TopK"),
               HP("onnx", "str", "", doc="The ONNX node(s) with their constants (a base64 ONNX model)"))
    opaque = True           # no gradient: the Model freezes the layers before it
    palette = False         # made only by an import: not offered in the palette (projects holding one still load)
    fused = None            # runs in onnxruntime, never in the fused training kernel

    @property
    def sub(self):
        try:
            return parse(self.config["onnx"])
        except ShapeError as e:
            raise ShapeError(f"{self.where} {e}") from None

    def compute_output_shape(self, in_shapes):
        s = self.sub
        if tuple(in_shapes[0]) != s.in_shape:
            raise ShapeError(f"{self.where} runs ONNX {self.config['op'] or 'nodes'} imported for inputs of shape "
                             f"{fmt(s.in_shape)}, but got {fmt(in_shapes[0])}")
        return s.out_shape

    def formulas(self, in_shapes):
        return {"shape": f"{fmt(in_shapes[0])} → {fmt(self.compute_output_shape(in_shapes))} (ONNX shape inference)",
                "params": "no trainable parameters = 0",
                "macs": f"not counted: ONNX {self.config['op']} runs in onnxruntime = 0"}

    def forward(self, x, training=False):
        s = self.sub
        y = session(self.config["onnx"]).run([s.y], {s.x: np.ascontiguousarray(x, np.float32)})[0]
        return y.astype(x.dtype, copy=False)                                     # (B, *out_shape)

    def backward(self, dy):
        """No gradient flows through it (the Model never asks: the layers before it are frozen)."""
        return (np.zeros((dy.shape[0],) + self.in_shapes[0], dy.dtype),)

    def to_onnx(self, ctx, ins):
        """The original node(s), their tensors renamed under this layer's name."""
        import onnx
        m = onnx.load_from_string(self.sub.data)
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
        from ..onnx_export import OPSET, unsupported
        if opset != OPSET:
            try:
                m = onnx.version_converter.convert_version(m, OPSET)
            except Exception as e:
                raise unsupported(self, f"its ONNX nodes (opset {opset}) cannot be written at opset {OPSET}: {e}")
        n, s = self.name, self.sub
        rename = {s.x: ins[0], s.y: n}

        def r(t):
            return t if not t else rename.get(t, f"{n}/{t}")
        for t in m.graph.initializer:
            t.name = r(t.name)
            ctx.inits.append(t)
        for node in m.graph.node:
            node.input[:] = [r(t) for t in node.input]
            node.output[:] = [r(t) for t in node.output]
            node.name = f"{n}/{node.name or node.op_type}"
            ctx.nodes.append(node)
        return n

    @classmethod
    def samples(cls):
        return [({"op": "TopK", "onnx": example("TopK", (6,))}, [(6,)]),
                ({"op": "CumSum", "onnx": example("CumSum", (3, 4))}, [(3, 4)])]


def example(op, shape):
    """The config text of a one-node model (TopK k=2 on the last axis, CumSum on axis 1) for the samples."""
    from onnx import TensorProto, helper, numpy_helper
    k = {"TopK": np.array([2], np.int64), "CumSum": np.array(1, np.int64)}[op]
    out = shape[:-1] + (2,) if op == "TopK" else shape
    node = helper.make_node(op, ["x", "k"], ["y", "i"] if op == "TopK" else ["y"], name=op.lower())
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *out])],
                          [numpy_helper.from_array(k, "k")])
    return pack(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


