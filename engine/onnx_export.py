"""ONNX export of a model for inference: a layer's own to_onnx, else a small function per layer type in EXPORTERS."""
import json

import numpy as np

from .errors import LayerboardError
from .project import VERSION, atomic_write

OPSET = 17          # ONNX operator set (Softmax over one axis needs ≥ 13, BatchNormalization inference ≥ 15)
IR_VERSION = 8      # the IR version that goes with opset 17; onnxruntime ≥ 1.12 reads it
BATCH = "batch"     # symbolic name of the batch axis
LENGTHS = "lengths"  # second graph input of sequence models: (batch,) int32 valid steps (ONNX RNN's sequence_lens)
TARGET_LENGTHS = "target_lengths"  # encoder–decoder models: (batch,) int32 valid steps of the target Input

EXPORTERS = {}      # layer type -> fn(ctx, layer, inputs) -> name of the output tensor


def exports(*types):
    """Decorator: register fn as the ONNX exporter of the given layer types."""
    def deco(fn):
        for t in types:
            EXPORTERS[t] = fn
        return fn
    return deco


class Builder:
    """Collects ONNX nodes and initializers while the layers are exported in graph order."""

    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits = [], []

    def const(self, name, value, dtype=np.float32):
        """Add an initializer and return its name."""
        self.inits.append(self.nh.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    def op(self, op, inputs, output, **attrs):
        """Add one node computing `output` (a tensor name) and return that name."""
        self.nodes.append(self.h.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    extra_inputs = ()      # (name, elem_type, shape) of graph inputs besides the data, e.g. the lengths
    stream = "source"      # the stream ("source" or "target" Input) the layer being exported belongs to
    in_streams = ()        # the stream of each of its inputs

    def lengths(self, stream=None):
        """Name of the graph input LENGTHS (batch,) int32: valid steps per sequence (added on first use);
        TARGET_LENGTHS for the target stream of an encoder–decoder (stream: default the current layer's)."""
        name = TARGET_LENGTHS if (stream or self.stream) == "target" else LENGTHS
        if name not in [i[0] for i in self.extra_inputs]:
            from onnx import TensorProto
            self.extra_inputs = tuple(self.extra_inputs) + ((name, TensorProto.INT32, [BATCH]),)
        return name

    def valid_steps(self, T, stream=None):
        """(batch, T) bool tensor: step t < lengths[b] of the stream (built once per T and stream)."""
        lg = self.lengths(stream)
        name = f"{lg}/valid{T}"
        made = {n.output[0] for n in self.nodes}
        if name not in made:
            steps = self.const(f"{lg}/steps{T}", np.arange(T), np.int32)                         # (T,)
            lens = f"{lg}/column"                                                                 # (B, 1), once
            if lens not in made:
                self.op("Unsqueeze", [lg, self.const(f"{lg}/axis1", [1], np.int64)], lens)
            self.op("Less", [steps, lens], name)                                                  # (B, T)
        return name


def exporter(layer):
    """fn(ctx, layer, ins) exporting this layer: the layer's own to_onnx, else the one registered here; None."""
    if layer.to_onnx is not None:                       # the method declared beside the layer: to_onnx(self, ctx, ins)
        return lambda ctx, lyr, ins: lyr.to_onnx(ctx, ins)
    return EXPORTERS.get(layer.type)


def unsupported(layer, why):
    return LayerboardError(f"cannot export {layer.type} '{layer.name}' to ONNX: {why}")


# ---- per-layer exporters; each returns its output tensor, named after the layer (Input: the graph input) ----
@exports("Input")
def _input(ctx, layer, ins):
    x, n = ins[0], layer.name                                          # the graph input, named after the layer
    if not layer.p:
        return x
    centred = ctx.op("Sub", [x, ctx.const(f"{n}/mean", layer.p["mean"])], f"{n}/centred")
    return ctx.op("Div", [centred, ctx.const(f"{n}/std", layer.p["std"])], f"{n}/standardized")


@exports("Dense")
def _dense(ctx, layer, ins):
    W, n = layer.p["W"], layer.name                                     # (U, F)
    if len(layer.in_shapes[0]) == 1:                                    # (B, F) → Gemm with W transposed
        args = [ins[0], ctx.const(f"{n}/W", W)] + ([ctx.const(f"{n}/b", layer.p["b"])] if "b" in layer.p else [])
        return ctx.op("Gemm", args, n, transB=1)
    y = ctx.op("MatMul", [ins[0], ctx.const(f"{n}/W_t", W.T)],           # (B, T, F) @ (F, U) → (B, T, U)
               f"{n}/matmul" if "b" in layer.p else n)
    return ctx.op("Add", [y, ctx.const(f"{n}/b", layer.p["b"])], n) if "b" in layer.p else y


def _elementwise(op):
    return lambda ctx, layer, ins: ctx.op(op, ins, layer.name)


EXPORTERS.update(Dropout=_elementwise("Identity"))                      # dropout is the identity at inference


@exports("Flatten", "Reshape")
def _reshape(ctx, layer, ins):
    shape = ctx.const(f"{layer.name}/shape", (0,) + layer.out_shape, np.int64)  # 0 copies the batch size
    return ctx.op("Reshape", [ins[0], shape], layer.name)


@exports("Conv2D")
def conv_node(ctx, layer, ins, out=None):
    """Conv of any rank (Conv1D and Conv3D use it too): groups, dilation, symmetric padding."""
    n = layer.name
    args = [ins[0], ctx.const(f"{n}/W", layer.p["W"])] + ([ctx.const(f"{n}/b", layer.p["b"])] if "b" in layer.p else [])
    return ctx.op("Conv", args, out or n, kernel_shape=list(layer.k), strides=list(layer.s), pads=list(layer.pads) * 2,
                  dilations=list(layer.dil), group=layer.config["groups"])


@exports("MaxPool2D", "AveragePool2D")
def pool_node(ctx, layer, ins, out=None):
    """MaxPool / AveragePool of any rank (the 1-D and 3-D pools use it too): padding, ceil mode, dilations (max),
    count_include_pad (average)."""
    a = dict(kernel_shape=list(layer.k), strides=list(layer.s), pads=list(layer.pads) * 2,
             ceil_mode=int(layer.config["ceil_mode"]))
    if layer.kind == "max":
        return ctx.op("MaxPool", ins, out or layer.name, dilations=list(layer.dil), **a)
    return ctx.op("AveragePool", ins, out or layer.name, count_include_pad=int(layer.config["count_include_pad"]), **a)


@exports("GlobalAveragePool")
def _gap(ctx, layer, ins):
    y = ctx.op("GlobalAveragePool", ins, f"{layer.name}/pooled")                          # (B, C, 1, 1)
    return ctx.op("Flatten", [y], layer.name, axis=1)                                     # (B, C)


# ---- sequences: a second graph input "lengths" (batch,) int32 holds each sequence's valid steps ----

def _step_mask(ctx, layer, t):
    """(B, T, 1) float: 1 at valid steps from the lengths input."""
    n = layer.name
    m = ctx.op("Cast", [ctx.valid_steps(t)], f"{n}/mask", to=1)                                 # (B, T) float
    return ctx.op("Unsqueeze", [m, ctx.const(f"{n}/ax2", [2], np.int64)], f"{n}/mask3")       # (B, T, 1)


@exports("Embedding")
def _embedding(ctx, layer, ins):
    n = layer.name
    E = layer.p["E"].copy()
    E[0] = 0                                                                                  # padding id → 0
    ids = ctx.op("Cast", ins, f"{n}/ids", to=7)                                               # float → int64
    return ctx.op("Gather", [ctx.const(f"{n}/E", E), ids], n, axis=0)                       # (B, T, d)


@exports("TimePool")
def _timepool(ctx, layer, ins):
    n, mode, t = layer.name, layer.config["mode"], layer.in_shapes[0][0]
    ax = ctx.const(f"{n}/axis", [1], np.int64)
    if mode == "max":
        m = ctx.op("Cast", [_step_mask(ctx, layer, t)], f"{n}/maskb", to=9)                  # bool
        low = ctx.const(f"{n}/low", np.float32(-3.0e38))
        return ctx.op("ReduceMax", [ctx.op("Where", [m, ins[0], low], f"{n}/masked")], n, axes=[1], keepdims=0)
    if mode == "mean":
        m = _step_mask(ctx, layer, t)
        s = ctx.op("ReduceSum", [ctx.op("Mul", [ins[0], m], f"{n}/masked"), ax], f"{n}/sum", keepdims=0)
        cnt = ctx.op("ReduceSum", [m, ax], f"{n}/count", keepdims=0)                          # (B, 1)
        return ctx.op("Div", [s, cnt], n)
    steps = ctx.const(f"{n}/steps", np.arange(t)[None, :], np.int32)                          # last: one-hot
    lg = ctx.op("Sub", [ctx.op("Unsqueeze", [ctx.lengths(), ctx.const(f"{n}/ax1", [1], np.int64)], f"{n}/lengths"),
                        ctx.const(f"{n}/one", np.int32(1), np.int32)], f"{n}/lastidx")
    hot = ctx.op("Cast", [ctx.op("Equal", [steps, lg], f"{n}/is_last")], f"{n}/hot", to=1)
    hot = ctx.op("Unsqueeze", [hot, ctx.const(f"{n}/ax2", [2], np.int64)], f"{n}/hot3")
    return ctx.op("ReduceSum", [ctx.op("Mul", [ins[0], hot], f"{n}/picked"), ax], n, keepdims=0)


# ---- attention, normalisation over features, positions ----
@exports("MultiHeadSelfAttention")
def _mhsa(ctx, layer, ins):
    """MatMul/Softmax form: A = softmax(QKᵀ/√d_k) with padded (and future, if causal) keys masked, Z = AV, W_O."""
    n, p, (T, d) = layer.name, layer.p, layer.in_shapes[0]
    h = layer.config["heads"]
    dk = layer._dk(d)
    heads = ctx.const(f"{n}/heads_shape", (0, T, h, dk), np.int64)

    def proj(k, perm):                                                   # (B, T, d) → (B, h, T, d_k) or its ᵀ
        y = ctx.op("MatMul", [ins[0], ctx.const(f"{n}/W{k}_t", p[f"W{k}"].T)], f"{n}/{k}_matmul")
        y = ctx.op("Add", [y, ctx.const(f"{n}/b{k}", p[f"b{k}"])], f"{n}/{k}_flat")         # (B, T, h·d_k)
        y = ctx.op("Reshape", [y, heads], f"{n}/{k}_heads")                                 # (B, T, h, d_k)
        return ctx.op("Transpose", [y], f"{n}/{k}", perm=perm)

    q = proj("q", [0, 2, 1, 3])                                          # (B, h, T, d_k)
    kt = proj("k", [0, 2, 3, 1])                                         # (B, h, d_k, T)
    v = proj("v", [0, 2, 1, 3])                                          # (B, h, T, d_k)
    s = ctx.op("MatMul", [q, kt], f"{n}/qk")                             # (B, h, T, T)
    s = ctx.op("Mul", [s, ctx.const(f"{n}/scale", 1 / np.sqrt(dk))], f"{n}/scores")
    valid = ctx.valid_steps(T)                                           # (B, T) bool
    keys = ctx.op("Unsqueeze", [valid, ctx.const(f"{n}/axes12", [1, 2], np.int64)], f"{n}/keys")   # (B, 1, 1, T)
    if layer.config["causal"]:
        past = ctx.const(f"{n}/causal", np.tril(np.ones((T, T), bool)), np.bool_)           # (T, T): s ≤ t
        keys = ctx.op("And", [keys, past], f"{n}/allowed")                                 # (B, 1, T, T)
    s = ctx.op("Where", [keys, s, ctx.const(f"{n}/neg", -1e30)], f"{n}/masked")
    a = ctx.op("Softmax", [s], f"{n}/attention", axis=-1)                # (B, h, T, T)
    z = ctx.op("MatMul", [a, v], f"{n}/context")                         # (B, h, T, d_k)
    z = ctx.op("Transpose", [z], f"{n}/context_t", perm=[0, 2, 1, 3])    # (B, T, h, d_k)
    z = ctx.op("Reshape", [z, ctx.const(f"{n}/concat_shape", (0, T, h * dk), np.int64)], f"{n}/concat")
    y = ctx.op("MatMul", [z, ctx.const(f"{n}/Wo_t", p["Wo"].T)], f"{n}/o_matmul")
    y = ctx.op("Add", [y, ctx.const(f"{n}/bo", p["bo"])], f"{n}/out")   # (B, T, d)
    rows = ctx.op("Cast", [ctx.op("Unsqueeze", [valid, ctx.const(f"{n}/axis2", [2], np.int64)], f"{n}/rows_b")],
                  f"{n}/rows", to=1)                                     # (B, T, 1) float: padded steps → 0
    return ctx.op("Mul", [y, rows], n)


@exports("PositionalEncoding", "PositionEmbedding")
def _position(ctx, layer, ins):
    from .layers.position import sinusoid
    T, d = layer.in_shapes[0]
    table = sinusoid(T, d) if layer.type == "PositionalEncoding" else layer.p["P"][:T]
    return ctx.op("Add", [ins[0], ctx.const(f"{layer.name}/positions", table)], layer.name)


# ---- the whole model ----
def _version():
    try:
        from importlib.metadata import version
        return version("layerboard")
    except Exception:                                   # running from a source tree that is not installed
        return "unknown"



def problems(model):
    """One message per layer that has no ONNX equivalent (empty when the model exports)."""
    return [str(unsupported(model.layers[n], "Layerboard has no ONNX mapping for this layer type yet"))
            for n in model.order if exporter(model.layers[n]) is None]


def to_onnx(model):
    """An onnx.ModelProto computing model.predict (evaluation mode) with a symbolic batch axis."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise LayerboardError("ONNX export needs the 'onnx' package: pip install onnx") from None
    bad = problems(model)
    if bad:
        raise LayerboardError(bad[0])
    ctx = Builder(helper, numpy_helper)
    x_name, out = model.inputs[0], {}
    first = x_name
    if "x_mean" in model.data:                          # per-feature standardisation kept with the weights
        c = ctx.op("Sub", [x_name, ctx.const("__data__/x_mean", model.data["x_mean"])], "__data__/centred")
        first = ctx.op("Div", [c, ctx.const("__data__/x_std", model.data["x_std"])], "__data__/standardized")
    stream = {}                                         # node -> the stream (Input feed) its first input carries
    for n in model.order:
        srcs = model.srcs[n]
        stream[n] = stream[srcs[0]] if srcs else model.feeds[n]
        ctx.stream, ctx.in_streams = stream[n], [stream[s] for s in srcs]
        ins = [out[s] for s in srcs] or [first if n == x_name else n]
        out[n] = exporter(model.layers[n])(ctx, model.layers[n], ins)
    y_name = out[model.output]
    if "y_mean" in model.data:                          # outputs in the targets' original units, same name
        inner = f"{y_name}/standardized_units"
        for node in ctx.nodes:
            if node.name == y_name:
                node.name = inner
            node.output[:] = [inner if o == y_name else o for o in node.output]
            node.input[:] = [inner if i == y_name else i for i in node.input]
        s = ctx.op("Mul", [inner, ctx.const("__data__/y_std", model.data["y_std"])], f"{y_name}/scaled")
        y_name = ctx.op("Add", [s, ctx.const("__data__/y_mean", model.data["y_mean"])], y_name)
    if y_name == x_name:                                # a lone Input: ONNX wants distinct input and output names
        y_name = ctx.op("Identity", [x_name], f"{x_name}/output")
    xs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [BATCH, *model.infos[n].shape]) for n in model.inputs]
    y = helper.make_tensor_value_info(y_name, TensorProto.FLOAT, [BATCH, *model.output_shape])
    if any(model.layers[n].reads_lengths for n in model.order):
        for f in dict.fromkeys(model.feeds.values()):
            ctx.lengths(f)                             # every sequence model takes its lengths, used or not
    extra = [helper.make_tensor_value_info(*i) for i in ctx.extra_inputs]
    graph = helper.make_graph(ctx.nodes, "layerboard", xs + extra, [y], ctx.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                          producer_name="layerboard", producer_version=_version(),
                          doc_string="Exported by Layerboard for inference (evaluation mode).")
    helper.set_model_props(m, {"layerboard_format_version": str(VERSION),
                               "layerboard_graph": json.dumps(model.graph.to_dict())})
    onnx.checker.check_model(m)
    return m


def save_onnx(path, model):
    """Write model as a checked .onnx file; atomic. An encoder–decoder also gets <stem>_greedy.py beside it."""
    atomic_write(path, to_onnx(model).SerializeToString())
    from .seq2seq_export import save_onnx_greedy
    save_onnx_greedy(path, model)
