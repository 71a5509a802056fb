"""Shape inference and per-node analysis: output shape, params, MACs, receptive field, or an error."""
from dataclasses import dataclass, replace
from math import prod

from .errors import LayerboardError, ShapeError
from .layers import REGISTRY, create
from .layers.base import fmt
from .receptive import dims, shown
from .receptive import field as _field
from .seq2seq import stream_error, stream_of


@dataclass
class NodeInfo:
    """What the canvas shows for one node. shape is None when the node or an input has an error."""

    name: str
    type: str
    shape: tuple | None = None
    params: int = 0
    macs: int = 0                    # per sample
    field: tuple | None = None       # receptive field per positional axis ((L,), (h, w), (d, h, w)), spec §3
    stride: tuple | None = None      # effective stride per positional axis (a Fraction after upsampling)
    axes: str | None = None          # rank-2 data: positions first ("T") or last ("L"), None while undecided
    error: str | None = None         # this node's own problem
    fix: object = None               # layers.Fix offered for the error
    blocked: str | None = None       # name of an upstream node whose error hides this one's shape
    pending: str | None = None       # why the shape is not known yet, without an error (an "auto" Input)

    @property
    def ok(self):
        return self.shape is not None

    @property
    def memory(self):
        """Activation values per sample."""
        return prod(self.shape) if self.shape else 0

    def to_dict(self):
        d = {"name": self.name, "type": self.type, "output_shape": list(self.shape) if self.shape else None,
             "params": self.params, "macs": self.macs, "activations": self.memory}
        if self.field is not None:
            d["receptive_field"] = list(self.field)
            d["effective_stride"] = [v if isinstance(v, int) else float(v) for v in self.stride]
        if self.error:
            d["error"] = self.error
        return d


_LAYERS, _SHAPES = {}, {}       # memo: (type, name, config) -> layer; + input shapes -> analysis or error


def _layer(node, name):
    """The layer for a node, reused while its type, name and hyperparameters stay the same."""
    key = (REGISTRY.get(node.type), node.type, name, repr(node.config))
    layer = _LAYERS.get(key)
    if layer is None:
        if len(_LAYERS) > 20000:
            _LAYERS.clear()
        layer = _LAYERS[key] = create(node.type, name, node.config)
    return key, layer


def _analyse(key, layer, shapes):
    """(output shape, params, MACs, kernel_stride) for these input shapes, or the ShapeError; memoised."""
    key = key + (tuple(shapes),)
    r = _SHAPES.get(key)
    if r is None:
        if len(_SHAPES) > 20000:
            _SHAPES.clear()
        try:
            r = (tuple(layer.compute_output_shape(shapes)), layer.param_count(shapes), int(layer.macs(shapes)),
                 layer.kernel_stride())
        except ShapeError as e:
            r = e.with_traceback(None)      # keep no frames (they would pin the caller's objects)
        _SHAPES[key] = r
    return r


AUTO = "auto: from the dataset"     # what an Input with "shape": "auto" shows until a dataset is known


class Infos(dict):
    """infer's result: NodeInfo by node name; `two`: the graph had an encoder–decoder's two streams."""
    two = True


def infer(graph, prev=None, changed=None, auto=None):
    """NodeInfo for every node, in topological order (dict preserves it).

    Incremental: given the previous result `prev` and the names `changed` since (nodes added, reconfigured,
    renamed, or whose inputs changed), only those and the nodes downstream whose inputs' NodeInfo changed are
    analysed again (an edit that keeps a layer's output shape stops there); every other node, and every node
    analysed to an equal result, keeps its NodeInfo object from prev (so callers must not modify NodeInfo
    objects in place). An encoder–decoder's graph (and the first graph after one) is analysed whole: whether an
    Input repeats a feed depends on every other Input.

    auto: the dataset's sample shape, given to each Input whose shape is "auto" (None: no dataset yet; such an
    Input and what lies below it are pending, not errors)."""
    order = graph.topo_order()
    ins = graph.inputs_index()
    stale = None
    if prev is not None and changed is not None:
        stale = set()
        for n in changed:
            if n in graph.nodes and n not in stale:
                stale |= graph._downstream(n)
    out = Infos()
    feeds = [v.config.get("feed", "source") for v in graph.nodes.values() if v.type == "Input"]
    out.two = two = "target" in feeds
    if two or getattr(prev, "two", True):       # an Input's stream check reads every other Input: all analysed
        stale = None
    if stale is not None and not two:           # a stream check may change below an unchanged node: not pruned
        stale, redone = {n for n in changed if n in graph.nodes}, []
    stream, used = {}, {}                     # an encoder–decoder's two streams (engine/seq2seq.py)
    for name in order:
        if two:
            stream[name] = stream_of(graph, name, ins[name], stream, used)
        if stale is not None and name not in stale and name in prev and (two or all(
                out[x] is prev.get(x) or out[x] == prev.get(x) for x in ins[name])):
            out[name] = prev[name]
            continue
        if stale is not None and not two:
            redone.append(name)
        node = graph.nodes[name]
        info = out[name] = NodeInfo(name, node.type)
        srcs = ins[name]
        bad = next((s for s in srcs if not out[s].ok), None)
        if node.type == "Input" and node.config.get("shape") == "auto":
            if auto is None:
                info.pending = AUTO
                continue
            node = replace(node, config=dict(node.config, shape=[int(d) for d in auto]))
        try:
            key, layer = _layer(node, name)
            missing = graph.missing_inputs(name, len(srcs))
            if missing:
                raise ShapeError(missing)
        except LayerboardError as e:
            info.error, info.fix = str(e), getattr(e, "fix", None)
            continue
        if bad:
            info.blocked = out[bad].blocked or bad
            info.pending = out[bad].pending
            continue
        r = _analyse(key, layer, [out[s].shape for s in srcs])
        if isinstance(r, ShapeError):
            info.error, info.fix = str(r), r.fix
            continue
        info.shape, info.params, info.macs, ks = r
        bad = two and stream_error(graph, name, srcs, stream, used, [out[s].shape for s in srcs])
        if bad:
            info.shape, (info.error, info.fix) = None, bad
            continue
        _field(info, layer, ks, [out[s] for s in srcs])
    if stale is not None and not two:
        for n in redone:                        # analysed again to the same result: the same object as before
            if n in prev and out[n] == prev[n]:
                out[n] = prev[n]
    return out


def errors(infos):
    """(name, message) for every node that has its own error."""
    return [(i.name, i.error) for i in infos.values() if i.error]


def totals(infos):
    """(params, MACs per sample, activation values per sample) summed over the graph."""
    v = infos.values()
    return sum(i.params for i in v), sum(i.macs for i in v), sum(i.memory for i in v)


def table(infos):
    """(header, rows) of the per-layer summary as text: shape, params, MACs and activations per sample,
    receptive field and effective stride when the net has spatial layers, and a totals row."""
    spatial = any(shown(i) for i in infos.values())
    head = table_head(spatial)
    rows = [table_row(i, spatial) for i in infos.values()]
    total = ["total", "", ""] + [f"{t:,}" for t in totals(infos)]
    rows.append(total + [""] * (len(head) - len(total)))
    return head, rows


def table_head(spatial):
    """The summary's column names (receptive field and stride only for nets with spatial layers)."""
    return ["name", "type", "output shape", "params", "MACs", "activations"] + (
        ["receptive field", "eff. stride"] if spatial else [])


def table_row(i, spatial):
    """One node's summary row as text."""
    shape = fmt(i.shape) if i.shape else ("error" if i.error else "auto (dataset)" if i.pending
                                          else f"needs {i.blocked}")
    r = [i.name, i.type, shape, f"{i.params:,}", f"{i.macs:,}", f"{i.memory:,}"]
    if spatial:
        r += [dims(i.field) if i.field else "", dims(i.stride) if i.stride else ""]
    return r
