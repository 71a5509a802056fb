"""Blocks: named groups of nodes the canvas can fold into one. The graph stays flat (the engine, shape inference
and the ONNX export never see them); a block's ports are the edges that cross its boundary."""
from dataclasses import dataclass

from .graph import GraphError, check_name, n_inputs


@dataclass(frozen=True)
class Ports:
    """inputs: outside nodes feeding the block, in order; outputs: members read outside (or by nobody)."""

    inputs: tuple
    outputs: tuple


def ports(graph, members):
    """Ports of the group `members` (a set or list of node names)."""
    inside = set(members)
    ins, outs = [], []
    for n in graph.nodes:
        if n not in inside:
            continue
        for s in graph.inputs_of(n):
            if s not in inside and s not in ins:
                ins.append(s)
        cons = graph.consumers(n)
        if not cons or any(c not in inside for c in cons):
            outs.append(n)
    return Ports(tuple(ins), tuple(outs))


def free_inputs(graph, members):
    """((member, input index), …) of the group's inputs nothing feeds yet, which only an outside node can feed: each
    unconnected input of a fixed-arity member; (member, None) for a merge member short of its two inputs."""
    out = []
    for n in members:
        need = n_inputs(graph.nodes[n].type)
        taken = {e.port for e in graph._ins.get(n, ())}
        if need is None:
            if len(taken) < 2:
                out.append((n, None))
        else:
            out.extend((n, p) for p in range(need) if p not in taken)
    return tuple(out)


def convex(graph, members):
    """True when no path leaves the group and comes back into it (folded, it then feeds nothing it reads)."""
    inside = set(members)
    stack = [c for n in inside for c in graph.consumers(n) if c not in inside]
    seen = set()
    while stack:
        n = stack.pop()
        if n in inside:
            return False
        if n not in seen:
            seen.add(n)
            stack.extend(graph.consumers(n))
    return True


def check_block_name(graph, name, keep=None):
    """The stripped name, or GraphError: empty, with '/', or used by another block (than `keep`)."""
    if not isinstance(name, str) or not name.strip():
        raise GraphError(f"a block needs a non-empty text name, got {name!r}")
    name = name.strip()
    check_name(name)
    if name != keep and graph.members(name):
        raise GraphError(f"a block named '{name}' already exists")
    if name in graph.nodes:
        raise GraphError(f"a layer is named '{name}': give the block another name")
    return name


def check_group(graph, names, name):
    """(name, members in node order) for grouping `names` as block `name`, or GraphError saying why not."""
    names = list(dict.fromkeys(names))
    missing = [n for n in names if n not in graph.nodes]
    if missing:
        raise GraphError(f"no node named '{missing[0]}'")
    if len(names) < 2:
        raise GraphError("select at least two layers to group them as a block")
    nested = [n for n in names if graph.nodes[n].meta.get("block") is not None]
    if nested:
        n = nested[0]
        raise GraphError(f"'{n}' is already in block '{graph.nodes[n].meta['block']}': ungroup it first "
                         "(blocks do not nest)")
    name = check_block_name(graph, name)
    if not convex(graph, names):
        raise GraphError("these layers cannot be one block: a path leaves them and comes back in; "
                         "add the layers in between to the selection")
    inside = set(names)
    return name, [n for n in graph.nodes if n in inside]


def fresh_name(graph, base="block"):
    """A block name not yet used: block1, block2, …"""
    used = set(graph.block_names()) | set(graph.blocks) | set(graph.nodes)
    i = 1
    while f"{base}{i}" in used:
        i += 1
    return f"{base}{i}"


@dataclass(frozen=True)
class Summary:
    """What a folded block shows: its layers, parameters, MACs per sample and output shapes."""

    layers: int
    params: int
    macs: int
    shapes: tuple           # one per output (None where an error hides it)
    errors: int


def summary(graph, infos, members):
    """The Summary of a group from the shape inference `infos` ({node: NodeInfo})."""
    got = [infos.get(n) for n in members]
    p = ports(graph, members)
    return Summary(len(members), sum(i.params for i in got if i is not None), sum(i.macs for i in got if i is not None),
                   tuple(getattr(infos.get(o), "shape", None) for o in p.outputs),
                   sum(1 for i in got if i is not None and i.error))


class Quotient:
    """The graph with each group of `unit` ({node: block}) as one node named by its block: topo_order and
    inputs_index, as the layered layout reads them. `order`: the nodes to take, in that order (default: all)."""

    def __init__(self, graph, unit, order=None):
        order = list(graph.nodes) if order is None else order
        have = set(order)
        u = lambda n: unit.get(n, n)                                # noqa: E731
        self.nodes = list(dict.fromkeys(u(n) for n in order))
        self.ins = {n: [] for n in self.nodes}
        for n in order:
            for s in graph.inputs_of(n):
                if s in have and u(s) != u(n) and u(s) not in self.ins[u(n)]:
                    self.ins[u(n)].append(u(s))

    @classmethod
    def folded(cls, graph):
        """The graph as the canvas shows it: every folded block one node."""
        return cls(graph, {n: b for b, ms in graph.block_names().items()
                           if graph.blocks.get(b, {}).get("folded") for n in ms})

    def inputs_index(self):
        return {n: list(v) for n, v in self.ins.items()}

    def topo_order(self):
        outs = {n: [] for n in self.nodes}
        deg = {n: len(v) for n, v in self.ins.items()}
        for n, v in self.ins.items():
            for s in v:
                outs[s].append(n)
        ready, order, i = [n for n in self.nodes if deg[n] == 0], [], 0
        while i < len(ready):
            n = ready[i]
            i += 1
            order.append(n)
            for c in outs[n]:
                deg[c] -= 1
                if deg[c] == 0:
                    ready.append(c)
        if len(order) != len(self.nodes):
            raise GraphError("the blocks cannot be ordered: a path leaves a block and comes back in")
        return order


def unit_order(graph, blocks, order=None):
    """The nodes in `order` (default: topological) with each block of `blocks` ({name: members}) contiguous:
    [node name | (block name, [members in order])]."""
    order = order or graph.topo_order()
    pos = {n: i for i, n in enumerate(order)}
    q = Quotient(graph, {n: b for b, ms in blocks.items() for n in ms}, order)
    return [(x, sorted(blocks[x], key=pos.__getitem__)) if x in blocks else x for x in q.topo_order()]


# ---- repeated structures (offered folded on import) ----
def _signature(graph, members):
    """Types and internal wiring of a group, independent of node names and settings."""
    local = {n: i for i, n in enumerate(members)}
    return tuple((graph.nodes[n].type, tuple(local.get(s, -1) for s in graph.inputs_of(n))) for n in members)


def residual_units(graph, infos):
    """Groups [members in order] of the graph's residual units: the nodes between two points every path passes
    through (cuts), where they branch and merge again, with the shape-keeping layers that follow (a ReLU or a
    LayerNorm after the Add)."""
    try:
        order = graph.topo_order()
    except GraphError:
        return []
    pos = {n: i for i, n in enumerate(order)}
    cover = [0] * (len(order) + 1)
    for e in graph.edges:                       # an edge u → w hides every node strictly between them
        a, b = pos[e.src], pos[e.dst]
        if b - a > 1:
            cover[a + 1] += 1
            cover[b] -= 1
    cuts, run = [], 0
    for i in range(len(order)):
        run += cover[i]
        if run == 0:
            cuts.append(i)
    units, cur = [], None
    for a, b in zip(cuts, cuts[1:]):
        seg = order[a + 1:b + 1]
        if len(seg) > 1:
            cur = list(seg)
            units.append(cur)
            continue
        n = seg[0]
        last = cur[-1] if cur else None
        keeps = last is not None and graph.inputs_of(n) == [last] and infos.get(n) is not None \
            and infos.get(last) is not None and infos[n].shape is not None and infos[n].shape == infos[last].shape
        if keeps:
            cur.append(n)
        else:
            cur = None
    return units


def repeated(graph, infos):
    """[(block name, members)] for the repeated structures of a graph: its residual units when a unit's
    structure occurs twice or more, each run of units joined into layers where the run repeats a pattern of
    several units (a transformer encoder layer: attention unit + feed-forward unit)."""
    units = residual_units(graph, infos)
    if not units:
        return []
    sigs = [_signature(graph, u) for u in units]
    runs, cur = [], [0]
    order = {n: i for i, n in enumerate(graph.topo_order())}
    for k in range(1, len(units)):
        if order[units[k][0]] == order[units[k - 1][-1]] + 1:
            cur.append(k)
        else:
            runs.append(cur)
            cur = [k]
    runs.append(cur)
    groups = []
    for run in runs:
        s = [sigs[k] for k in run]
        period = next(p for p in range(1, len(s) + 1) if len(s) % p == 0 and all(s[i] == s[i % p] for i in range(len(s))))
        step = period if 1 < period < len(s) else 1
        for i in range(0, len(run), step):
            groups.append(([n for k in run[i:i + step] for n in units[k]], step > 1, tuple(s[i:i + step])))
    counts = {}
    for _, _, sig in groups:
        counts[sig] = counts.get(sig, 0) + 1
    out, k_block, k_layer = [], 0, 0
    for members, layer, sig in groups:
        if counts[sig] < 2 or len(members) < 2:
            continue
        if layer:
            k_layer += 1
            out.append((f"layer{k_layer}", members))
        else:
            k_block += 1
            out.append((f"block{k_block}", members))
    return out


def fold_repeated(graph, infos):
    """Group the repeated structures of an ungrouped graph as folded blocks (meta "block"); returns their names."""
    if graph.block_names():
        return []
    names = []
    for name, members in repeated(graph, infos):
        if any(graph.nodes[n].meta.get("block") for n in members) or not convex(graph, members):
            continue
        for n in members:
            graph.nodes[n].meta["block"] = name
        graph.blocks[name] = {"folded": True}
        names.append(name)
    return names
