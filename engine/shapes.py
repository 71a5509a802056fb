"""Shape inference and per-node analysis: output shape, params, MACs, receptive field, or an error."""
from dataclasses import dataclass, replace
from math import prod

from .errors import LayerboardError, ShapeError
from .layers import REGISTRY, create
from .layers.base import fmt


@dataclass
class NodeInfo:
    """What the canvas shows for one node. shape is None when the node or an input has an error."""

    name: str
    type: str
    shape: tuple | None = None
    params: int = 0
    macs: int = 0                    # per sample
    field: tuple | None = None       # receptive field (h, w) in input pixels, spec §3
    stride: tuple | None = None      # effective stride (h, w)
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
            d["receptive_field"], d["effective_stride"] = list(self.field), list(self.stride)
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


def infer(graph, prev=None, changed=None, auto=None):
    """NodeInfo for every node, in topological order (dict preserves it).

    Incremental: given the previous result `prev` and the names `changed` since (nodes added, reconfigured,
    renamed, or whose inputs changed), only those and what lies downstream of them are analysed again; every
    other node keeps its NodeInfo object from prev (so callers must not modify NodeInfo objects in place).

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
    out = {}
    for name in order:
        if stale is not None and name not in stale and name in prev:
            out[name] = prev[name]
            continue
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
        _field(info, ks, [out[s] for s in srcs])
    return out


def _field(info, ks, ins):
    """Spec §3 recurrence: stride_l = stride_{l-1}·S_l, field_l = field_{l-1} + (K_l − 1)·stride_{l-1}."""
    if len(info.shape) != 3:
        return
    if not ins:                                              # an image Input starts the recurrence
        info.field, info.stride = (1, 1), (1, 1)
        return
    prev = [i for i in ins if i.field is not None]
    if not prev:
        return
    f0 = tuple(max(i.field[d] for i in prev) for d in range(2))
    s0 = tuple(max(i.stride[d] for i in prev) for d in range(2))
    if ks is None:
        info.field, info.stride = f0, s0
    else:
        (kh, kw), (sh, sw) = ks
        info.stride = (s0[0] * sh, s0[1] * sw)
        info.field = (f0[0] + (kh - 1) * s0[0], f0[1] + (kw - 1) * s0[1])


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
    spatial = any(i.field for i in infos.values())
    head = ["name", "type", "output shape", "params", "MACs", "activations"]
    head += ["receptive field", "eff. stride"] if spatial else []
    rows = []
    for i in infos.values():
        shape = fmt(i.shape) if i.shape else ("error" if i.error else "auto (dataset)" if i.pending
                                              else f"needs {i.blocked}")
        r = [i.name, i.type, shape, f"{i.params:,}", f"{i.macs:,}", f"{i.memory:,}"]
        if spatial:
            r += [f"{i.field[0]}×{i.field[1]}" if i.field else "", f"{i.stride[0]}×{i.stride[1]}" if i.stride else ""]
        rows.append(r)
    total = ["total", "", ""] + [f"{t:,}" for t in totals(infos)]
    rows.append(total + [""] * (len(head) - len(total)))
    return head, rows
