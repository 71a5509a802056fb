"""ONNX export of a model for inference: each layer's own to_onnx(ctx, ins) adds its nodes to a Builder."""
import json

import numpy as np

from .errors import LayerboardError
from .project import VERSION, atomic_write

OPSET = 17          # ONNX operator set (Softmax over one axis needs ≥ 13, BatchNormalization inference ≥ 15)
IR_VERSION = 8      # the IR version that goes with opset 17; onnxruntime ≥ 1.12 reads it
BATCH = "batch"     # symbolic name of the batch axis
LENGTHS = "lengths"  # second graph input of sequence models: (batch,) int32 valid steps (ONNX RNN's sequence_lens)
TARGET_LENGTHS = "target_lengths"  # encoder–decoder models: (batch,) int32 valid steps of the target Input


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
        s = stream or self.stream
        name = TARGET_LENGTHS if s == "target" else LENGTHS if s == "source" else f"{s}_lengths"   # else: an Input
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
    """fn(ctx, layer, ins) exporting this layer: the to_onnx(self, ctx, ins) declared beside it; None without one."""
    if layer.to_onnx is None:
        return None
    return lambda ctx, lyr, ins: lyr.to_onnx(ctx, ins)


def unsupported(layer, why):
    return LayerboardError(f"cannot export {layer.type} '{layer.name}' to ONNX: {why}")


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
    feeds = {}                                          # feed -> its first Input; a later one is its own stream
    for n in model.order:
        srcs = model.srcs[n]
        stream[n] = stream[srcs[0]] if srcs else model.feeds[n] if feeds.setdefault(model.feeds[n], n) == n else n
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
    more = [helper.make_tensor_value_info(out[o], TensorProto.FLOAT, [BATCH, *model.infos[o].shape])
            for o in getattr(model, "outputs", [model.output])[1:]]       # an imported model's other outputs
    if any(model.layers[n].reads_lengths for n in model.order):
        for f in dict.fromkeys(stream[n] for n in model.inputs):
            ctx.lengths(f)                             # every sequence model takes its lengths, used or not
    extra = [helper.make_tensor_value_info(*i) for i in ctx.extra_inputs]
    graph = helper.make_graph(ctx.nodes, "layerboard", xs + extra, [y] + more, ctx.inits)
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
