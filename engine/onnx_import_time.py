"""Time-major ONNX recurrent graphs as Layerboard models: the layout is swapped at the model's boundary.

ONNX's RNN/LSTM/GRU (layout = 0) read X (T, B, F) and give Y (T, dirs, B, H) and Y_h (dirs, B, H). A graph input
read as X by such a node is time-major: it becomes an Input of shape (T, F) that takes the same data batch-first,
x.transpose(1, 0, 2). A graph output that is a node's raw Y or Y_h is the recurrent layer's (B, T, dirs·H) or
(B, dirs·H). Each such Input and output layer keeps meta["onnx_layout"] = {"layout": "tb" (T, B, F) | "Y" | "Y_h" |
"Y_bt" | "Y_h_b" (layout = 1's), "onnx": ONNX name, "dirs": …, "output": True on outputs}; to_ours / to_onnx swap an
array between the two layouts and report() words it for the user.
A sequence_lens that is a (B,) graph input of valid steps becomes that Input's lengths (its mask)."""
import numpy as np

from .onnx_import import ImportFailed, Unsupported, Value, _attrs

RECURRENT = ("RNN", "GRU", "LSTM")
# a recurrent node's output view (onnx_import_seq) -> its layout: Y (T, dirs, B, H), Y_h (dirs, B, H); layout = 1
# nodes and transposed ones: Y_bt (B, T, dirs, H), Y_h_b (B, dirs, H)
LAYOUTS = {"Y": "Y", "Yh": "Y_h", "Y_btdh": "Y_bt", "Yh_bdh": "Y_h_b"}


def time_major(c, name):
    """True if graph input `name` (T, B, F) is read as X by a layout-0 recurrent node."""
    return len(c.shapes.get(name, ())) == 3 and any(
        n.op_type in RECURRENT and n.input[0] == name and not _attrs(n).get("layout", 0)
        for n in c.consumers.get(name, []))


def input_shape(name, full):
    """Our Input's (T, F) of a time-major graph input (T, B, F); ImportFailed unless T and F are fixed."""
    t, _, f = full
    if not all(isinstance(d, int) and d > 0 for d in (t, f)):
        raise ImportFailed(f"input {name!r} is time-major (steps, batch, features) = {tuple(full)}, read as X by a "
                           "recurrent node: it needs a fixed number of steps and features")
    return (t, f)


def lengths(c, node, t, v):
    """Accept sequence_lens `t` of recurrent `node` (input value v) when it is the (B,) valid steps of the
    sequence input v comes from (as is, or through Cast/Identity); its mask input is then lengths. Else Unsupported."""
    from .onnx_import_multi import upstream
    src = c.maskish.get(t)
    if src is None:
        raise Unsupported(f"sequence_lens ({t!r}) is computed from the data; Layerboard's masks come from the "
                          "data's lengths (a (batch,) integer graph input)")
    prod = {o: n for n in c.model.graph.node for o in n.output}
    u = t
    while u != src:
        n = prod.get(u)
        if n is None or n.op_type not in ("Cast", "Identity"):
            raise Unsupported(f"sequence_lens ({t!r}) is computed from the input {src!r} by {n.op_type if n else '?'}"
                              "; Layerboard reads the valid steps as they are")
        u = n.input[0]
    mi = c.mask_inputs[src]
    if "lengths" not in mi["kinds"] or mi["steps"] != v.shape[0] or mi["input"] not in upstream(c.graph, v.node):
        raise Unsupported(f"sequence_lens ({t!r}) is not the valid steps of the {v.shape[0]}-step sequence input "
                          "this node reads")
    mi["kind"] = "lengths"


def last_of_steps(c, p, seq):
    """A recurrent node's Y_h (dirs·H,) from the layer `seq` giving its every step (T, dirs·H): the forward
    direction's state at each sequence's last valid step, the backward one's at step 0 (what it read last)."""
    layer = c.graph.nodes[seq]
    if not layer.config["return_sequences"]:           # made its last state by a Gather x[:, -1] (forward only)
        return seq
    h, base = p.cfg["units"], p.node.name or p.node.op_type.lower()
    if p.dirs == 1 and p.cfg["direction"] == "forward":
        return add_layer(c, f"{base}_Y_h", "TimePool", {"mode": "last"}, [seq])
    first = add_layer(c, f"{base}_step0", "Slice", {"axes": [0, 1], "starts": [0, (p.dirs - 1) * h],
                                                    "ends": [1, p.dirs * h], "steps": [1, 1]}, [seq])   # (1, H)
    back = add_layer(c, f"{base}_Y_h_back", "Flatten", {}, [first])                                    # (H,)
    if p.dirs == 1:
        return back
    last = add_layer(c, f"{base}_last", "TimePool", {"mode": "last"}, [seq])                          # (2H,)
    fwd = add_layer(c, f"{base}_Y_h_fwd", "Slice", {"axes": [0], "starts": [0], "ends": [h], "steps": [1]}, [last])
    return add_layer(c, f"{base}_Y_h", "Concatenate", {"axis": -1}, [fwd, back])                     # (2H,)


def add_layer(c, base, type, config, ins):
    """A layer named after base reading the layers `ins` in order; returns its name."""
    name = c.name(base, type.lower())
    c.graph.add_node(type, name, config, {"onnx": "Y_h"})
    for port, s in enumerate(ins):
        c.graph.connect(s, name, port)
    return name


def raw_outputs(c, m):
    """Graph outputs that are a recurrent node's raw Y / Y_h (or a time-major view) made layer outputs;
    {output name: meta["onnx_layout"] of its layer}. ImportFailed for what has no such layer (Y_c, other views)."""
    from .onnx_import_seq import _make, _view
    out = {}
    names = [o.name for o in m.graph.output if o.name in c.values and c.values[o.name].view is not None]
    for o in sorted(names, key=lambda o: _view(c.values[o])[0] not in ("Y", "Y_btdh")):   # steps first: Y_h from them
        kind, p = _view(c.values[o])
        if kind == "tb":
            c.values[o] = Value(c.values[o].node, c.values[o].shape)
            out[o] = {"layout": "tb", "onnx": o, "output": True}                    # e.g. Y squeezed to (T, B, H)
            continue
        n = getattr(p, "node", None)
        what = f"{n.op_type} node {n.name or next(o for o in n.output if o)!r}" if n else "a recurrent node"
        try:
            if kind not in LAYOUTS:
                why = ("its last cell state c (Layerboard's LSTM gives its hidden states h)" if kind == "Yc" else
                       "a rearrangement of its output that is not (batch, steps, features) or the last state")
                raise Unsupported(why)
            seqs = not LAYOUTS[kind].startswith("Y_h")
            c.values[o] = Value(_make(c, p, seqs), p.out_shape(seqs))
        except Unsupported as e:
            raise ImportFailed(f"the output {o!r} of {what} cannot be imported: {e}") from None
        out[o] = {"layout": LAYOUTS[kind], "onnx": o, "dirs": p.dirs}
    return out


def to_ours(layout, a):
    """The ONNX-layout array a as our model's batch-first one."""
    a = np.asarray(a)
    kind = layout["layout"]
    if kind == "tb":                                                   # (T, B, F) → (B, T, F)
        return a.transpose(1, 0, *range(2, a.ndim))
    if kind == "Y":                                                    # (T, dirs, B, H) → (B, T, dirs·H)
        t, d, b, h = a.shape
        return a.transpose(2, 0, 1, 3).reshape(b, t, d * h)
    if kind == "Y_h":                                                  # (dirs, B, H) → (B, dirs·H)
        d, b, h = a.shape
        return a.transpose(1, 0, 2).reshape(b, d * h)
    return a.reshape(len(a), -1) if kind == "Y_h_b" else a.reshape(a.shape[0], a.shape[1], -1)   # batch first


def to_onnx(layout, a):
    """Our model's batch-first array a in the ONNX graph's layout."""
    a = np.asarray(a)
    kind, d = layout["layout"], layout.get("dirs", 1)
    if kind == "tb":
        return a.transpose(1, 0, *range(2, a.ndim))
    if kind in ("Y", "Y_bt"):                                          # (B, T, dirs·H) → (T, dirs, B, H)
        b, t, n = a.shape
        y = a.reshape(b, t, d, n // d)                                 # (B, T, dirs, H)
        return y.transpose(1, 2, 0, 3) if kind == "Y" else y
    b, n = a.shape                                                     # (B, dirs·H) → (dirs, B, H)
    y = a.reshape(b, d, n // d)                                        # (B, dirs, H)
    return y.transpose(1, 0, 2) if kind == "Y_h" else y


def report(graph):
    """Lines for `layerboard import`: each Input and output whose ONNX layout differs from ours."""
    out = []
    for n, v in graph.nodes.items():
        lay = v.meta.get("onnx_layout")
        if not lay:
            continue
        k, o = lay["layout"], lay["onnx"]
        if k == "tb" and lay.get("output"):
            out.append(f"  ONNX output '{o}' is time-major (steps, batch, features): '{n}' gives it batch-first, "
                       f"{o} = y.transpose(1, 0, 2)")
        elif k == "tb":
            out.append(f"  ONNX input '{o}' is time-major (steps, batch, features): Input '{n}' takes the same data "
                       "batch-first, (batch, steps, features) = x.transpose(1, 0, 2)")
        else:
            onnx, idx, ours = {"Y": ("steps, directions, batch, H", "t, d, b, h", "batch, steps, directions·H"),
                               "Y_bt": ("batch, steps, directions, H", "b, t, d, h", "batch, steps, directions·H"),
                               "Y_h": ("directions, batch, H", "d, b, h", "batch, directions·H"),
                               "Y_h_b": ("batch, directions, H", "b, d, h", "batch, directions·H")}[k]
            y = "y[b, t, d·H + h]" if "steps" in ours else "y[b, d·H + h]"
            out.append(f"  ONNX output '{o}' ({onnx}) is '{n}' ({ours}): {o}[{idx}] = {y}")
    return out
