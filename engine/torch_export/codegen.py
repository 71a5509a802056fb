"""model.py from a Model: attribute names, the nn.Module source, and the state_dict <-> 'node/param' mapping."""
import builtins
import keyword
import re

import numpy as np

from ..errors import DataError, LayerboardError
from ..layers.base import fmt
from .emitters import EMITTERS, HELPERS

# names the generated forward uses itself, and nn.Module attributes a node must not shadow
RESERVED = {"x", "return_logits", "mask", "self", "torch", "nn", "F", "xs", "y", "input_shape", "training",
            "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
            "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
            "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia",
            "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
            "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
            "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
            "register_load_state_dict_pre_hook", "register_module", "register_parameter",
            "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state",
            "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train", "type", "xpu", "zero_grad"}


def unsupported(model):
    """One message naming every layer the exporter cannot express, or None when the whole graph exports."""
    bad = [f"{model.layers[n].type} '{n}'" for n in model.order if model.layers[n].type not in EMITTERS]
    if not bad:
        return None
    return (f"cannot export to PyTorch: no PyTorch equivalent for {', '.join(bad)}; "
            "replace or remove these layers (the other formats: npz, safetensors, onnx)")


def emitted(model):
    """{node: Emitted} for every node, or a LayerboardError naming the layers without an emitter."""
    msg = unsupported(model)
    if msg:
        raise LayerboardError(msg)
    return {n: EMITTERS[model.layers[n].type](model.layers[n]) for n in model.order}


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


def _shape(model, n):
    return "# " + fmt(("B",) + tuple(model.infos[n].shape)).replace("'", "")


def fused_head(model, loss_name):
    """True when the loss takes the head's input as logits (cce after Softmax, bce after Sigmoid), as our trainer does."""
    from ..losses import get
    return model.head.type == get(loss_name).fuses


def carries_mask(model):
    """{node: True where a variable-length mask reaches its output}, as Layer.compute_mask passes it on.

    A (T, F) Input may come with a mask; a layer with (T, F)-shaped inputs and output of the same T passes it on;
    anything that changes or folds the time axis ends it. Where a mask arrives it is the Input's own."""
    out = {}
    for n in model.order:
        layer, srcs = model.layers[n], model.srcs[n]
        shape = tuple(model.infos[n].shape)
        if not srcs:
            out[n] = len(shape) == 2
        else:
            out[n] = any(out[s] for s in srcs) and len(shape) == 2 and all(
                len(s) == 2 and s[0] == shape[0] for s in layer.in_shapes)
    return out


def model_source(model, name="Net", doc="", logits=False, origin=""):
    """The text of model.py: helper modules the graph needs, then one nn.Module class mirroring the graph."""
    em, ids = emitted(model), identifiers(model.order)
    g = model.graph
    cons = {n: g.consumers(n) for n in model.order}
    order, out = model.order, model.output
    inp = model.inputs[0]
    # where each node's output lives: 'x' when only the very next line reads it, else a variable named after it
    var = {}
    for i, n in enumerate(order):
        nxt = order[i + 1] if i + 1 < len(order) else None
        var[n] = "x" if n == out or (len(cons[n]) == 1 and cons[n][0] == nxt) else ids[n]
    arg = "x" if em[inp].module is not None or var[inp] == "x" else var[inp]
    carry = carries_mask(model)
    masked = any(em[n].uses_mask and any(carry[s] for s in model.srcs[n]) for n in order)
    init, body = [], []
    for i, n in enumerate(order):
        e = em[n]
        if e.module is not None:
            init.append(f"        self.{ids[n]} = {e.module}")
        args = [var[s] for s in model.srcs[n]] or [arg]
        if n == out and logits:
            body.append(("if return_logits:", None))
            body.append((f"    return {args[0]}", None))
        if e.module is None and args == [var[n]]:
            continue                                            # a plain Input: the argument itself
        m = "mask" if masked and any(carry[s] for s in model.srcs[n]) else "None"
        expr = e.call.format(self=f"self.{ids[n]}", args=", ".join(args), mask=m,
                             **{f"x{k}": a for k, a in enumerate(args)})
        body.append((f"{var[n]} = {expr}", _shape(model, n)))
    body.append(("return x", None))
    width = max(len(t) for t, c in body if c) if any(c for _, c in body) else 0
    lines = [f"        {t.ljust(width)}  {c}" if c else f"        {t}" for t, c in body]
    helpers = sorted({h for e in em.values() for h in e.helpers})
    head = ['"""' + (f"{doc}." if doc else f"{name} as a PyTorch module.") + (f"\n\nGenerated by Layerboard from {origin}." if origin else "")
            + '\nLoad the weights with\n    model.load_state_dict(safetensors.torch.load_file("weights.safetensors"))\n"""',
            "import torch", "from torch import nn", ""]
    sig = "def forward(self, x" + (", mask=None" if masked else "") + (", return_logits=False" if logits else "") + "):"
    fdoc = ('"""Outputs for a batch x of shape ' + fmt(("B",) + tuple(model.input_shape)).replace("'", "")
            + ("; mask: (B, T) bool of valid steps, or None" if masked else "")
            + (" (return_logits=True: the head's input, which the loss takes as logits)" if logits else "") + '."""')
    cls = [f"class {name}(nn.Module):",
           f'    """{g.nodes[inp].type} {fmt(model.input_shape)} → {model.head.type} {fmt(model.output_shape)}: '
           f'{len(order)} nodes as on the Layerboard canvas."""', "",
           f"    input_shape = {tuple(model.input_shape)!r}", "",
           "    def __init__(self):", "        super().__init__()"] + (init or ["        pass"]) + [
           "", f"    {sig}", f"        {fdoc}"] + lines
    src = "\n".join(head) + "\n" + "".join(f"\n{HELPERS[h]}\n" for h in helpers) + "\n" + "\n".join(cls) + "\n"
    return src


# ---- weights ----
def _names(model):
    """[(torch name, 'node/param', to_torch, from_torch)] for every tensor, and {torch name: value} torch-only state."""
    em, ids = emitted(model), identifiers(model.order)
    pairs, extra = [], {}
    for n in model.order:
        for p, t in em[n].params.items():
            if p not in model.layers[n].p:
                continue                                         # e.g. a Dense without bias
            t, to_t, from_t = (t, None, None) if isinstance(t, str) else t
            pairs.append((f"{ids[n]}.{t}", f"{n}/{p}", to_t, from_t))
        extra.update({f"{ids[n]}.{k}": v for k, v in em[n].extra.items()})
    ours = set(model.weights())
    mapped = {k for _, k, _, _ in pairs}
    if ours - mapped:
        raise LayerboardError(f"cannot export to PyTorch: the emitters do not map {', '.join(sorted(ours - mapped))}")
    return pairs, extra


def state_dict(model):
    """{torch name: array} for model.py's module, from the model's weights (float32; torch-only state included)."""
    pairs, extra = _names(model)
    w = model.weights()
    sd = {t: np.ascontiguousarray(to(w[k]) if to else w[k], dtype=np.float32) for t, k, to, _ in pairs}
    sd.update({k: np.array(v) for k, v in extra.items()})
    return sd


def from_state_dict(model, tensors, where="the checkpoint"):
    """{'node/param': float32 array} from a state_dict of model.py's module (a 'module.' prefix is dropped).

    One-line DataError for missing, unexpected or mis-shaped tensors."""
    pairs, extra = _names(model)
    tensors = {(k[7:] if k.startswith("module.") else k): v for k, v in tensors.items()}
    want = {t: (k, frm) for t, k, _, frm in pairs}
    missing = [f"{t} ({k})" for t, (k, _) in want.items() if t not in tensors]
    unexpected = sorted(set(tensors) - set(want) - set(extra))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise DataError(f"{where} does not fit this project's model.py: " + "; ".join(parts))
    mine, out = model.weights(), {}
    for t, (k, frm) in want.items():
        v = np.asarray(tensors[t])
        v = frm(v) if frm else v
        if tuple(v.shape) != mine[k].shape:
            n, p = k.split("/")
            raise DataError(f"{where}: '{t}' has shape {fmt(tuple(v.shape))} but {model.layers[n].type} '{n}' "
                            f"needs {p} of shape {fmt(mine[k].shape)}")
        if v.dtype.kind != "f":
            raise DataError(f"{where}: '{t}' holds {v.dtype} values, not floating point")
        v = v.astype(np.float32)
        if not np.all(np.isfinite(v)):
            raise DataError(f"{where}: '{t}' contains NaN or infinity")
        out[k] = v
    return out


def is_state_dict(tensors):
    """True when tensor names look like a torch state_dict ('fc1.weight') rather than ours ('fc1/W')."""
    return bool(tensors) and not any("/" in k for k in tensors) and all("." in k for k in tensors)
