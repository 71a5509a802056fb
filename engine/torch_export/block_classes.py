"""Canvas blocks as nn.Module classes of model.py: one class per distinct block (same layers, settings, wiring and
shapes), instantiated once per block, each instance keeping its own weights ('block1.conv1.weight')."""
import re

from ..blocks import ports
from .codegen import _shape, identifiers


def _local(members):
    """{member: attribute name} inside the class of a block of its own: the members' names as identifiers."""
    return {n: v if v != "x_in" else v + "_" for n, v in identifiers(members).items()}


def _shared(graph, groups):
    """Attribute names one class gives the members of several identical blocks (members in order, one list per
    block): at each place the parts of the names all blocks share ('4_c1_Conv', '5_c1_Conv' -> 'c1_Conv'), else
    the layer's type ('conv2d')."""
    names = []
    for at in zip(*groups):
        parts = [re.split(r"[\W_]+", n) for n in at]
        common = [t for t in zip(*parts) if len(set(t)) == 1] if len({len(q) for q in parts}) == 1 else []
        names.append("_".join(t[0] for t in common if t[0]) or graph.nodes[at[0]].type.lower())
    return _dedupe(names)


def _dedupe(names):
    """Distinct identifiers for `names`, in order (a repeated name gets _2, _3, …)."""
    taken, out = set(), []
    for n in names:
        s, k = n, 2
        while s in taken:
            s, k = f"{n}_{k}", k + 1
        taken.add(s)
        out.append(s)
    ids = identifiers(out)
    return [v if v != "x_in" else v + "_" for v in (ids[k] for k in out)]


def block_classes(model, em, blocks):
    """({block: {member: attribute name}}, {block: the first block of its class}) for `blocks` ({block: members in
    order}): blocks whose class source is the same but for names share one class and its attribute names."""
    by_source = {}
    for b, ms in blocks.items():
        src, _ = block_class(model, em, "C", "", ms, {n: f"m{i}" for i, n in enumerate(ms)})
        by_source.setdefault(src, []).append(b)
    mids, first = {}, {}
    for group in by_source.values():
        names = _shared(model.graph, [blocks[b] for b in group]) if len(group) > 1 else None
        for b in group:
            mids[b] = dict(zip(blocks[b], names)) if names else _local(blocks[b])
            first[b] = group[0]
    return mids, first


def block_class(model, em, cls, label, members, mids):
    """The source of one block class (`label`: what its docstring calls the block(s)), and the block's ports;
    mids: {member: attribute name}."""
    g = model.graph
    p = ports(g, members)
    inside = set(members)
    cons = {n: [c for c in g.consumers(n) if c in inside] for n in members}
    first_only = len(p.inputs) == 1 and [c for c in g.consumers(p.inputs[0]) if c in inside] == [members[0]]
    arg = {s: ("x" if first_only else "x_in" if len(p.inputs) == 1 else f"x_in{k}") for k, s in enumerate(p.inputs)}
    var = {}
    for i, n in enumerate(members):
        nxt = members[i + 1] if i + 1 < len(members) else None
        single = p.outputs == (n,) and n == members[-1]
        var[n] = "x" if single or (n not in p.outputs and cons[n] == [nxt]) else mids[n]
    init, body = [], []
    for n in members:
        e = em[n]
        if e.module is not None:
            init.append(f"        self.{mids[n]} = {e.module}")
        args = [var[s] if s in inside else arg[s] for s in model.srcs[n]]
        expr = e.call.format(self=f"self.{mids[n]}", args=", ".join(args), mask="None",
                             **{f"x{k}": a for k, a in enumerate(args)})
        body.append((f"{var[n]} = {expr}", _shape(model, n)))
    body.append((f"return {', '.join(var[o] for o in p.outputs)}", None))
    width = max(len(t) for t, c in body if c)
    lines = [f"        {t.ljust(width)}  {c}" if c else f"        {t}" for t, c in body]
    types = " → ".join(g.nodes[n].type for n in members[:6]) + (" → …" if len(members) > 6 else "")
    src = [f"class {cls}(nn.Module):", f'    """{label} of the Layerboard canvas: {types}."""', "",
           "    def __init__(self):", "        super().__init__()"] + (init or ["        pass"]) + [
           "", f"    def forward(self, {', '.join(arg[s] for s in p.inputs)}):"] + lines
    return "\n".join(src), p
