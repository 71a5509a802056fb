"""ONNX import of recurrent nodes (LSTM, GRU, RNN) and of the layout-only nodes PyTorch writes around them.

ONNX's recurrent operators are time-major: X (T, B, F) in, Y (T, dirs, B, H) and Y_h (dirs, B, H) out. Ours take
(T, F) and give (T, dirs·H) (return_sequences) or the last state (dirs·H,). A recurrent node's outputs stay pending
until a Squeeze/Transpose/Reshape/Gather chain shows which of the two the model reads; then the layer is made."""
from dataclasses import dataclass, field

import numpy as np

from .layers import REGISTRY
from . import onnx_import_time
from .onnx_import import Unsupported, Value, _attrs, handles, reshape_to

ACT = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}


@dataclass
class Pending:
    """A recurrent ONNX node not yet made a layer: its type, config and weights in our layout, its input."""

    node: object
    type: str
    cfg: dict
    weights: dict
    x: str                                   # the tensor holding its (T, F) input
    shape: tuple                             # (T, F)
    made: dict = field(default_factory=dict)   # "seq" or "last" -> layer name

    @property
    def dirs(self):
        return 2 if self.cfg["bidirectional"] else 1

    def out_shape(self, seqs):
        h = self.cfg["units"] * self.dirs
        return (self.shape[0], h) if seqs else (h,)


def _make(c, p, seqs):
    """The layer for pending node p giving every step (seqs) or the last state; made once."""
    kind = "seq" if seqs else "last"
    if kind in p.made:
        return p.made[kind]
    if kind == "last" and "seq" in p.made:                                 # Y_h read besides Y: from its steps
        p.made[kind] = onnx_import_time.last_of_steps(c, p, p.made["seq"])
        return p.made[kind]
    if p.made:
        raise Unsupported("reads both every step and the last state of one recurrent node; a Layerboard recurrent "
                          "layer gives one of the two (return_sequences)")
    name = c.name(p.node.name, p.node.op_type)
    c.graph.add_node(p.type, name, {**p.cfg, "return_sequences": seqs}, {"onnx": p.node.op_type})
    c.graph.connect(c.values[p.x].node, name, 0)
    for k, v in p.weights.items():
        c.weights[f"{name}/{k}"] = np.asarray(v, np.float32)
    p.made[kind] = name
    return name


def _ours(W, order, h):
    """Rows of an ONNX weight (n·H, …) in gate order `order` (indices of ours) put back in our gate order."""
    idx = np.concatenate([np.arange(h) + j * h for j in order])
    out = np.empty_like(W)
    out[idx] = W
    return out


@handles("LSTM", "GRU", "RNN")
def _recurrent(c, node):
    a, op = _attrs(node), node.op_type
    for k in ("clip", "input_forget"):
        if a.get(k):
            raise Unsupported(f"{k} has no Layerboard option")
    x, batch_major = node.input[0], a.get("layout", 0) == 1                 # layout 1: X (B, T, F), Y (B, T, dirs, H)
    if x not in c.values or c.values[x].stale:
        raise Unsupported(f"its input X {x!r} " + (c.values[x].stale if x in c.values else "is not imported"))
    v = c.values[x]
    if batch_major and (v.view is not None or len(v.shape) != 2):
        raise Unsupported(f"layout = 1 and its input X {x!r} is not a (batch, steps, features) layer output")
    if not batch_major and v.view != "tb":
        raise Unsupported("its input X is not time-major (steps, batch, features): a graph input, or a (batch, steps,"
                          " features) tensor made time-major by a Transpose")
    acts = [s.decode() if isinstance(s, bytes) else str(s) for s in a.get("activations", [])]
    dirs = 2 if a.get("direction", "forward") == "bidirectional" else 1
    relu = op == "RNN" and acts and all(s == "Relu" for s in acts)
    if acts and not relu and acts != list(ACT[op]) * dirs:
        raise Unsupported(f"activations {acts}")
    opt = list(node.input) + [""] * 8
    if opt[4] and opt[4] not in c.sym:
        onnx_import_time.lengths(c, node, opt[4], v)                       # the Input's lengths, else Unsupported
    for t, what in ((opt[5], "initial_h"), (opt[6] if op == "LSTM" else "", "initial_c")):
        if t and not (c.sym.get(t) or (t in c.consts and not np.any(c.consts[t]))):
            raise Unsupported(f"{what} is not zero (Layerboard starts from 0 or a learned state, not a given one)")
    if op == "LSTM" and opt[7]:
        raise Unsupported("peephole weights P have no Layerboard option")
    W, R = (c.const(node, i, k) for i, k in ((1, "W"), (2, "R")))
    h = int(a["hidden_size"])
    B = c.const(node, 3, "B") if opt[3] else np.zeros((dirs, 2 * R.shape[1]), np.float32)   # B left out: 0
    cfg = {"units": h, "bidirectional": dirs == 2, "learn_h0": False,
           "direction": "reverse" if a.get("direction") == "reverse" else "forward"}
    w = {}
    for d, sfx in enumerate(("", "_rev")[:dirs]):
        wb, rb = np.split(B[d], 2)
        if op == "RNN":
            w.update({"U" + sfx: W[d], "W" + sfx: R[d], "b" + sfx: wb + rb})
            continue
        order = REGISTRY[op].onnx_order
        w.update({"W_ih" + sfx: _ours(W[d], order, h), "W_hh" + sfx: _ours(R[d], order, h),
                  "b_ih" + sfx: _ours(wb, order, h), "b_hh" + sfx: _ours(rb, order, h)})
    if op == "RNN":
        cfg["activation"] = "relu" if relu else "tanh"
    if op == "GRU":
        cfg["linear_before_reset"] = bool(a.get("linear_before_reset", 0))
    p = Pending(node, op, cfg, w, x, v.shape)
    for i, kind in enumerate(("Y_btdh", "Yh_bdh", "Yc") if batch_major else ("Y", "Yh", "Yc")):
        if len(node.output) > i and node.output[i]:
            c.values[node.output[i]] = Value(v.node, v.shape, view=(kind, p))


_recurrent.reads_masks = True       # onnx_import lets it read sequence_lens, a (batch,) valid-steps graph input


def _view(v):
    return (v.view[0], v.view[1]) if isinstance(v.view, tuple) else (v.view, None)


def _axes(c, node):
    a = _attrs(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = c.const(node, 1, "axes").tolist()
    return [int(i) for i in np.atleast_1d(axes)] if axes is not None else None


def _refuse_view(kind):
    raise Unsupported(f"rearranges a recurrent node's {'output Y' if kind[0] == 'Y' else kind} in a way that is not "
                      "layout-only for Layerboard's (steps, features) / last-state outputs")


@handles("Transpose")
def _transpose(c, node):
    (x,) = c.data(node, views=True)
    v, perm = c.values[x], [int(i) for i in _attrs(node).get("perm", [])]
    kind, p = _view(v)
    out = node.output[0]
    if kind is None and len(v.shape) == 2 and perm == [1, 0, 2]:
        c.values[out] = Value(v.node, v.shape, view="tb")
    elif kind == "tb" and perm == [1, 0, 2]:
        c.values[out] = Value(v.node, v.shape)
    elif kind == "Y" and perm in ([0, 2, 1, 3], [2, 0, 1, 3]):
        c.values[out] = Value(v.node, v.shape, view=("Y_tbdh" if perm[0] == 0 else "Y_btdh", p))
    elif kind == "Yh" and perm == [1, 0, 2]:
        c.values[out] = Value(v.node, v.shape, view=("Yh_bdh", p))
    elif kind is not None:
        _refuse_view(kind)
    elif perm and perm[0] == 0 and sorted(perm) == list(range(len(c.values[c.full(x)].shape) + 1)):
        c.add(node, "Permute", {"axes": [i - 1 for i in perm[1:]]}, [c.full(x)])  # not layout-only: a Permute
    else:
        raise Unsupported(f"Transpose perm {perm} of {v.shape} moves the batch axis (a Permute keeps it first)")


@handles("Squeeze", "Unsqueeze")
def _squeeze(c, node):
    (x,) = c.data(node, views=True)[:1]
    v, axes = c.values[x], _axes(c, node)
    kind, p = _view(v)
    out = node.output[0]
    if node.op_type == "Squeeze" and kind == "Y" and axes == [1] and p.dirs == 1:
        c.values[out] = Value(_make(c, p, True), p.out_shape(True), view="tb")
    elif node.op_type == "Squeeze" and kind == "Yh" and axes == [0] and p.dirs == 1:
        c.values[out] = Value(_make(c, p, False), p.out_shape(False))
    elif node.op_type == "Squeeze" and kind == "Y_btdh" and axes == [2] and p.dirs == 1:        # (B, T, H)
        c.values[out] = Value(_make(c, p, True), p.out_shape(True))
    elif node.op_type == "Squeeze" and kind == "Yh_bdh" and axes == [1] and p.dirs == 1:        # (B, H)
        c.values[out] = Value(_make(c, p, False), p.out_shape(False))
    elif kind is not None:
        _refuse_view(kind)
    elif axes is not None and 0 in axes:
        raise Unsupported(f"{node.op_type} of the batch axis")
    else:
        reshape_to(c, node, x, c.out_shape(node))


@handles("Reshape")
def _reshape(c, node):
    (x,) = c.data(node, views=True)
    v = c.values[x]
    kind, p = _view(v)
    rank = len(c.shapes.get(node.output[0], ()))
    out = node.output[0]
    if kind in ("Y_tbdh", "Y_btdh") and rank == 3 or kind == "Y" and p.dirs == 1 and rank == 3:
        c.values[out] = Value(_make(c, p, True), p.out_shape(True), view=None if kind == "Y_btdh" else "tb")
    elif kind == "Yh_bdh" and rank == 2 or kind == "Yh" and p.dirs == 1 and rank == 2:
        c.values[out] = Value(_make(c, p, False), p.out_shape(False))
    elif kind is not None:
        _refuse_view(kind)
    else:
        n_in, n_out = (c.shapes.get(x) or (None,))[0], (c.shapes.get(out) or (None,))[0]
        if n_in is not None and isinstance(n_out, int) and n_out != n_in:      # (3, 4, 5) → (1, 60): not a layer
            raise Unsupported(f"it folds the batch axis ({n_in}) into the rows of {n_out}")
        reshape_to(c, node, x, c.out_shape(node))


@handles("Gather")
def _gather(c, node):
    """x[:, -1] of a recurrent layer's steps (a forward layer's last state) or h_n[-1] of a one-direction node."""
    (x,) = c.data(node, views=True)
    v, axis = c.values[x], int(_attrs(node).get("axis", 0))
    idx = c.const(node, 1, "indices")
    kind, p = _view(v)
    if kind in ("Yh", "Yh_stack") and axis == 0 and idx.ndim == 0:             # h_n[i]: one direction's state
        rows = [(p, d) for d in range(p.dirs)] if kind == "Yh" else p
        q, d = rows[int(idx)]
        c.values[node.output[0]] = (Value(_make(c, q, False), q.out_shape(False)) if q.dirs == 1 else
                                    Value(v.node, v.shape, view=("Yh_dir", (q, d))))
        return
    last = idx.ndim == 0 and len(v.shape) == 2 and int(idx) in (-1, v.shape[0] - 1)
    if (kind, axis) not in ((None, 1), ("tb", 0)) or not last:
        raise Unsupported("a Gather that is not the last step of a sequence's outputs (x[:, -1])")
    layer = c.graph.nodes.get(v.node)
    if (layer is not None and layer.type in ("LSTM", "GRU", "RNN") and layer.config.get("return_sequences")
            and not layer.config.get("bidirectional") and layer.config.get("direction") != "reverse"
            and not c.graph.consumers(v.node)
            and c.readers.get(x, 0) == 1):
        layer.config["return_sequences"] = False                   # a one-direction layer's last step: its state
        for u in c.values.values():
            if u.node == v.node:
                u.stale = "was every step of a recurrent layer that now gives its last state only"
        c.values[node.output[0]] = Value(v.node, (v.shape[1],))
        return
    c.add(node, "TimePool", {"mode": "last"}, [x if kind is None else _plain(c, x)], out_shape=(v.shape[1],))


def _plain(c, x):
    """A time-major view as the batch-major tensor it shows (the same layer output)."""
    c.values[x + "#bt"] = Value(c.values[x].node, c.values[x].shape)
    return x + "#bt"


@handles("Concat")
def _concat(c, node):
    """h_n of stacked layers (their Y_h along axis 0) and the two directions' final states side by side."""
    ins = c.data(node, views=True)
    views = [_view(c.values[t]) for t in ins]
    axis = int(_attrs(node)["axis"])
    if all(k is None for k, _ in views):
        from .onnx_import_pointwise import _concat as concat              # the ordinary Concatenate
        return concat(c, node)
    if axis == 0 and all(k == "Yh" for k, _ in views):
        c.values[node.output[0]] = Value(c.values[ins[0]].node, (), view=("Yh_stack", [(p, d) for _, p in views
                                                                                       for d in range(p.dirs)]))
        return
    rows = [p for k, p in views if k == "Yh_dir"]
    if len(rows) == len(views) and axis in (-1, 1) and len({id(q) for q, _ in rows}) == 1 \
            and [d for _, d in rows] == list(range(rows[0][0].dirs)):
        q = rows[0][0]
        c.values[node.output[0]] = Value(_make(c, q, False), q.out_shape(False))
        return
    _refuse_view(next(k for k, _ in views if k is not None))
