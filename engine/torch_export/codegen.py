"""model.py from a Model: attribute names, the nn.Module source, and the state_dict <-> 'node/param' mapping."""
import builtins
import keyword
import re

import numpy as np

from ..errors import DataError, LayerboardError
from ..layers.base import fmt
from ..model import DATA
from .emitters import HELPERS

# data statistics of model.data (kept with the weights as __data__/k) -> their names in the module
DATA_NAMES = {"x_mean": "input_stats.mean", "x_std": "input_stats.std", "y_mean": "y_mean", "y_std": "y_std"}

# names the generated forward uses itself, and nn.Module attributes a node must not shadow
RESERVED = {"x", "return_logits", "mask", "input_stats", "y_mean", "y_std", "original_units", "self", "torch", "nn",
            "F", "xs", "y", "input_shape", "training",
            "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
            "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
            "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia",
            "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
            "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
            "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
            "register_load_state_dict_pre_hook", "register_module", "register_parameter",
            "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state",
            "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train", "type", "xpu", "zero_grad"}


def emitter(layer):
    """fn(layer) -> Emitted: the to_torch(self) declared beside the layer; None without one."""
    return type(layer).to_torch


def unsupported(model):
    """One message naming every layer the exporter cannot express, or None when the whole graph exports."""
    bad = [f"{model.layers[n].type} '{n}'" for n in model.order if emitter(model.layers[n]) is None]
    if len(getattr(model, "outputs", ())) > 1:                 # an imported model with several outputs
        return (f"cannot export to PyTorch: the model has {len(model.outputs)} outputs ({', '.join(model.outputs)}) "
                "and the PyTorch export writes one; the ONNX export writes them all")
    if not bad:
        return None
    return (f"cannot export to PyTorch: no PyTorch equivalent for {', '.join(bad)}; "
            "replace or remove these layers (the other formats: npz, safetensors, onnx)")


def emitted(model):
    """{node: Emitted} for every node, or a LayerboardError naming the layers without an emitter."""
    msg = unsupported(model)
    if msg:
        raise LayerboardError(msg)
    return {n: emitter(model.layers[n])(model.layers[n]) for n in model.order}


def identifiers(names):
    """{node name: Python identifier} as on the canvas where possible ('conv 1' -> conv_1), all distinct."""
    out, taken = {}, set()
    for n in names:
        s = re.sub(r"\W", "_", n, flags=re.ASCII).strip("_") or "node"
        if s[0].isdigit():
            s = "n" + s
        if keyword.iskeyword(s) or s in RESERVED or hasattr(builtins, s):
            s += "_"
        base, i = s, 2
        while s in taken:
            s, i = f"{base}_{i}", i + 1
        taken.add(s)
        out[n] = s
    return out


def class_name(title):
    """'Digits MLP' -> 'DigitsMLP' (a valid class name; 'Net' when nothing is left)."""
    words = re.findall(r"[A-Za-z0-9]+", title or "")
    s = "".join(w[:1].upper() + w[1:] for w in words)
    return s if s and not s[0].isdigit() else "Net" + s


def _args(shape):
    return ", ".join(str(v) for v in shape)


def _shape(model, n):
    return "# " + fmt(("B",) + tuple(model.infos[n].shape)).replace("'", "")


def fused_head(model, loss_name):
    """True when the loss takes the head's input as logits (cce after Softmax or LogSoftmax, bce after Sigmoid), as
    the trainer."""
    from ..losses import get
    return get(loss_name).takes_logits(model.head.type)


def carries_mask(model):
    """{node: True where a variable-length mask reaches its output}, by the layers' own compute_mask.

    A (T, F) sequence or (T,) token Input may come with a mask; where a mask arrives it is the Input's own."""
    masks = {}
    for n in model.order:
        srcs, shape = model.srcs[n], tuple(model.infos[n].shape)
        if not srcs:
            masks[n] = np.ones((1, shape[0]), bool) if len(shape) in (1, 2) else None
        else:
            masks[n] = model.layers[n].compute_mask([masks[s] for s in srcs])
    return {n: m is not None for n, m in masks.items()}


def reads_mask(model):
    """True when a layer that reads the mask gets one: model.py's forward then takes mask=None."""
    em, carry = emitted(model), carries_mask(model)
    return any(em[n].uses_mask and any(carry[s] for s in model.srcs[n]) for n in model.order)


def module_blocks(model):
    """{block: members in order} of the canvas blocks that become nn.Module classes: every member in the model,
    no Input, not the model's output, no layer that reads a mask it gets (those stay inline)."""
    from ..blocks import convex
    g, em, carry = model.graph, emitted(model), carries_mask(model)
    pos = {n: i for i, n in enumerate(model.order)}
    out = {}
    for b, ms in g.block_names().items():
        if any(n not in pos or not model.srcs[n] or n == model.output
               or (em[n].uses_mask and any(carry[s] for s in model.srcs[n])) for n in ms):
            continue
        if convex(g, ms):
            out[b] = sorted(ms, key=pos.__getitem__)
    return out


def paths(model):
    """{node: attribute path in model.py's module}: 'conv1', or 'block1.conv1' for a member of a block class."""
    blocks = module_blocks(model)
    inside = {n for ms in blocks.values() for n in ms}
    top = identifiers([n for n in model.order if n not in inside] + list(blocks))
    out = {n: top[n] for n in model.order if n not in inside}
    from .block_classes import block_classes
    mids, _ = block_classes(model, emitted(model), blocks)
    for b, ms in blocks.items():
        out.update({n: f"{top[b]}.{mids[b][n]}" for n in ms})
    return out


def model_source(model, name="Net", doc="", logits=False, origin=""):
    """The text of model.py: helper modules the graph needs, then one nn.Module class mirroring the graph."""
    from ..blocks import unit_order
    em, g = emitted(model), model.graph
    blocks = module_blocks(model)
    inside = {n for ms in blocks.values() for n in ms}
    ids = identifiers([n for n in model.order if n not in inside] + list(blocks) +   # as paths(), then the
                      [n for n in model.order if n in inside])                    # names of block outputs
    cons = {n: g.consumers(n) for n in model.order}
    order, out = model.order, model.output
    inp = model.inputs[0]
    units = unit_order(g, blocks, order) if blocks else list(order)
    unit_of = {n: b for b, ms in blocks.items() for n in ms}
    seq = [u if isinstance(u, str) else u[0] for u in units]
    nxt_unit = {u: (seq[i + 1] if i + 1 < len(seq) else None) for i, u in enumerate(seq)}
    classes, taken = {}, {name} | set(HELPERS)
    from .block_classes import block_class, block_classes
    mids, first = block_classes(model, em, blocks)
    for b, ms in blocks.items():
        if first[b] != b:                                       # an identical block: one more instance of its class
            c = classes[first[b]][0]
            classes[b] = (c, None, block_class(model, em, c, "", ms, mids[b])[1])
            continue
        c, k = class_name(b), 2
        c = c if c not in taken else f"{c}Block"
        while c in taken:
            c, k = f"{class_name(b)}{k}", k + 1
        taken.add(c)
        same = [x for x in blocks if first[x] == b]
        label = f"Block '{b}'" if len(same) == 1 else "Blocks " + ", ".join(f"'{x}'" for x in same)
        classes[b] = (c,) + block_class(model, em, c, label, ms, mids[b])
    # where each node's output lives: 'x' when only the very next line reads it, else a variable named after it
    var = {}
    for n in order:
        me = unit_of.get(n, n)
        if me in blocks and n not in classes[me][2].outputs:
            continue
        readers = {unit_of.get(c, c) for c in cons[n]}
        single = me not in blocks or len(classes[me][2].outputs) == 1
        var[n] = "x" if n == out or (single and readers == {nxt_unit[me]} and
                                     (nxt_unit[me] in blocks or len(cons[n]) == 1)) else ids[n]
    arg = "x" if em[inp].module is not None or var[inp] == "x" else var[inp]
    carry = carries_mask(model)
    masked = reads_mask(model)
    others = model.inputs[1:]                                    # an encoder–decoder's target Input, …
    mvar = {}                                                    # node -> the mask variable of its stream
    for n in order:
        if not model.srcs[n]:
            mvar[n] = "mask" if n == inp else f"{ids[n]}_mask"
            if n != inp:
                var[n] = ids[n]
        else:
            mvar[n] = next((mvar[s] for s in model.srcs[n] if carry[s]), "mask")
    init, body = [], []
    stats = "x_mean" in model.data                               # per-feature statistics of sequences
    if stats:
        init.append(f"        self.input_stats = Standardize({_args(model.data['x_mean'].shape)})")
        body.append(("x = self.input_stats(x)", _shape(model, inp)))
        arg = "x"
    if "y_mean" in model.data:
        k = _args(model.data["y_mean"].shape)
        init += [f'        self.register_buffer("y_mean", torch.zeros({k}))   # target statistics: outputs are',
                 f'        self.register_buffer("y_std", torch.ones({k}))     # standardised, see original_units']
    for u in units:
        if not isinstance(u, str):                              # a block: one call of its own nn.Module
            b = u[0]
            c, _, p = classes[b]
            init.append(f"        self.{ids[b]} = {c}()")
            outs = ", ".join(var[o] for o in p.outputs)
            body.append((f"{outs} = self.{ids[b]}({', '.join(var[s] for s in p.inputs)})", _shape(model, p.outputs[0])))
            continue
        n = u
        e = em[n]
        if e.module is not None:
            init.append(f"        self.{ids[n]} = {e.module}")
        args = [var[s] for s in model.srcs[n]] or [arg if n == inp else var[n]]
        if stats and not model.srcs[n] and var[n] != "x":
            body.append((f"{var[n]} = x", None))                 # a named Input after the statistics
            continue
        if n == out and logits:
            body.append(("if return_logits:", None))
            body.append((f"    return {args[0]}", None))
        if e.module is None and args == [var[n]]:
            continue                                            # a plain Input: the argument itself
        m = mvar[n] if masked and any(carry[s] for s in model.srcs[n]) else "None"
        ms = {f"mask{k}": mvar[s] if masked and carry[s] else "None" for k, s in enumerate(model.srcs[n]) if k}
        expr = e.call.format(self=f"self.{ids[n]}", args=", ".join(args), mask=m, **ms,
                             **{f"x{k}": a for k, a in enumerate(args)})
        body.append((f"{var[n]} = {expr}", _shape(model, n)))
    body.append(("return x", None))
    width = max(len(t) for t, c in body if c) if any(c for _, c in body) else 0
    lines = [f"        {t.ljust(width)}  {c}" if c else f"        {t}" for t, c in body]
    if "y_mean" in model.data:
        lines += ["", "    def original_units(self, y):",
                  '        """Outputs in the targets\' units (Layerboard trains on standardised targets)."""',
                  "        return y * self.y_std + self.y_mean"]
    helpers = sorted({h for e in em.values() for h in e.helpers} | ({"Standardize"} if stats else set()))
    sources = {**HELPERS, **{k: v for e in em.values() for k, v in e.sources.items()}}
    head = ['"""' + (f"{doc}." if doc else f"{name} as a PyTorch module.")
            + (f"\n\nGenerated by Layerboard from {origin}." if origin else "") + '\nLoad the weights with\n    model.load_state_dict(safetensors.torch.load_file("weights.safetensors"))\n"""',
            "import torch", "from torch import nn", ""]
    sig = (f"def forward(self, {arg}" + "".join(f", {var[n]}" for n in others) +
           "".join(f", {mvar[n]}=None" for n in [inp] + others if masked) +
           (", return_logits=False" if logits else "") + "):")
    fdoc = (f'"""Outputs for a batch {arg} of shape ' + fmt(("B",) + tuple(model.input_shape)).replace("'", "")
            + "".join(f", {var[n]} of shape " + fmt(("B",) + tuple(model.infos[n].shape)).replace("'", "")
                      for n in others)
            + ("; mask: (B, T) bool of valid steps, or None" if masked else "")
            + (f" ({', '.join(mvar[n] for n in others)}: the same for {', '.join(var[n] for n in others)})"
               if masked and others else "")
            + ('.\n\n        return_logits=True: the head\'s input (the logits the loss takes).\n        """' if logits
               else '."""'))
    cls = [f"class {name}(nn.Module):",
           f'    """{g.nodes[inp].type} {fmt(model.input_shape)} → {model.head.type} {fmt(model.output_shape)}: '
           f'{len(order)} nodes as on the Layerboard canvas."""', "",
           f"    input_shape = {tuple(model.input_shape)!r}", "",
           "    def __init__(self):", "        super().__init__()"] + (init or ["        pass"]) + [
           "", f"    {sig}", f"        {fdoc}"] + lines
    src = "\n".join(head) + "\n" + "".join(f"\n{sources[h]}\n" for h in helpers) + \
        "".join(f"\n{c[1]}\n\n" for c in classes.values() if c[1] is not None) + "\n" + "\n".join(cls) + "\n"
    return src


# ---- weights ----
def _names(model):
    """[(torch names, 'node/param', to_torch, from_torch)] for every tensor, and {torch name: value} torch-only state.

    Usually one torch tensor per tensor of ours; a bias torch splits in two (RNN's b_ih, b_hh) maps to a tuple."""
    em, ids = emitted(model), paths(model)
    pairs, extra = [], {}
    for n in model.order:
        for p, t in em[n].params.items():
            if p not in model.layers[n].p:
                continue                                         # e.g. a Dense without bias
            t, to_t, from_t = (t, None, None) if isinstance(t, str) else t
            names = (t,) if isinstance(t, str) else tuple(t)
            pairs.append((tuple(f"{ids[n]}.{x}" for x in names), f"{n}/{p}", to_t, from_t))
        extra.update({f"{ids[n]}.{k}": v for k, v in em[n].extra.items()})
    ours = {k for k in model.weights() if not k.startswith(DATA + "/")}
    mapped = {k for _, k, _, _ in pairs}
    if ours - mapped:
        raise LayerboardError(f"cannot export to PyTorch: the emitters do not map {', '.join(sorted(ours - mapped))}")
    for k in model.data:                                         # data statistics kept with the weights
        pairs.append(((DATA_NAMES[k],), f"{DATA}/{k}", None, None))
    return pairs, extra


def _as_tuple(v, n):
    return tuple(v) if n > 1 else (v,)


def state_dict(model):
    """{torch name: array} for model.py's module, from the model's weights (float32; torch-only state included)."""
    pairs, extra = _names(model)
    w, sd = model.weights(), {}
    for names, k, to, _ in pairs:
        for t, v in zip(names, _as_tuple(to(w[k]) if to else w[k], len(names))):
            sd[t] = np.ascontiguousarray(v, dtype=np.float32)
    sd.update({k: np.array(v) for k, v in extra.items()})
    return sd


def from_state_dict(model, tensors, where="the checkpoint"):
    """{'node/param': float32 array} from a state_dict of model.py's module (a 'module.' prefix is dropped).

    Data statistics (input_stats.*, y_mean, y_std) are taken when present. One-line DataError for missing,
    unexpected or mis-shaped tensors."""
    pairs, extra = _names(model)
    tensors = {(k[7:] if k.startswith("module.") else k): v for k, v in tensors.items()}
    have = {names[0] for names, _, _, _ in pairs}
    for k, t in DATA_NAMES.items():                              # statistics the checkpoint brings along
        if t in tensors and t not in have:
            pairs.append(((t,), f"{DATA}/{k}", None, None))
    want = {t: k for names, k, _, _ in pairs for t in names}
    missing = [f"{t} ({k})" for t, k in want.items() if t not in tensors and not k.startswith(DATA + "/")]
    unexpected = sorted(set(tensors) - set(want) - set(extra))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise DataError(f"{where} does not fit this project's model.py: " + "; ".join(parts))
    shapes = {t: v.shape for t, v in state_dict(model).items()}
    out = {}
    for names, k, _, frm in pairs:
        if any(t not in tensors for t in names):
            continue                                             # data statistics the checkpoint does not hold
        vs = []
        for t in names:
            v = np.asarray(tensors[t])
            if t in shapes and tuple(v.shape) != shapes[t]:
                n, p = k.split("/")
                owner = f"{model.layers[n].type} '{n}'" if n in model.layers else "the model"
                raise DataError(f"{where}: '{t}' has shape {fmt(tuple(v.shape))} but {owner} needs "
                                f"{fmt(shapes[t])} for {p}")
            if v.dtype.kind != "f":
                raise DataError(f"{where}: '{t}' holds {v.dtype} values, not floating point")
            if not np.all(np.isfinite(v)):
                raise DataError(f"{where}: '{t}' contains NaN or infinity")
            vs.append(v.astype(np.float32))
        out[k] = (frm(*vs) if frm else vs[0]).astype(np.float32)
    return out


def is_state_dict(tensors):
    """True when tensor names look like a torch state_dict ('fc1.weight') rather than ours ('fc1/W')."""
    return bool(tensors) and not any("/" in k for k in tensors)
