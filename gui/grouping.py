"""Blocks on the canvas: group, ungroup, rename, fold and unfold, each one undoable step that only touches the
Document (a node's meta["block"] and graph.blocks); the graph itself stays flat."""
from engine.blocks import Quotient, check_block_name, check_group, fresh_name
from engine.graph import GraphError

from . import commands as C
from .layout import GAP_MAIN, NODE_H, NODE_W, choose, layered


def _put(doc, members, entries):
    """Set the block of each node ({node: block or None}) and the blocks' state ({block: dict or None})."""
    g = doc.graph
    for n, b in members.items():
        node = g.nodes.get(n)
        if node is None:
            continue
        if b is None:
            node.meta.pop("block", None)
        else:
            node.meta["block"] = b
    for b, e in entries.items():
        if e is None:
            g.blocks.pop(b, None)
        else:
            g.blocks[b] = dict(e)
    doc.blocks_changed.emit()


class BlockEdit(C.Command):
    """Membership and fold state before and after; not structural: the model does not change."""

    structural = False

    def __init__(self, doc, text, before, after):
        super().__init__(doc, text)
        self.before, self.after = before, after

    def apply(self):
        _put(self.doc, *self.after)

    def revert(self):
        _put(self.doc, *self.before)


def _state(doc, names, blocks):
    """(membership of names, state of blocks) as they are now, for a BlockEdit's other side."""
    g = doc.graph
    return ({n: g.nodes[n].meta.get("block") for n in names},
            {b: (dict(g.blocks[b]) if b in g.blocks else None) for b in blocks})


def block_of(doc, name):
    node = doc.graph.nodes.get(name)
    return node.meta.get("block") if node is not None else None


def folded(doc, block):
    return bool(doc.graph.blocks.get(block, {}).get("folded"))


def _need(doc, block):
    members = doc.graph.members(block) if isinstance(block, str) else []
    if not members:
        raise GraphError(f"no block named {block!r}")
    return members


def group(doc, names, name=None, fold=True):
    """Group `names` as one block (folded by default); returns its name. GraphError says why not."""
    name, members = check_group(doc.graph, names, name if name is not None else fresh_name(doc.graph))
    before = _state(doc, members, [name])
    doc._push(BlockEdit(doc, f"Group {len(members)} layers as {name}", before,
                        ({n: name for n in members}, {name: {"folded": bool(fold)}})), structural=False)
    return name


def ungroup(doc, block):
    """Dissolve a block: its layers stay where they are, shown one by one."""
    members = _need(doc, block)
    doc._push(BlockEdit(doc, f"Ungroup {block}", _state(doc, members, [block]),
                        ({n: None for n in members}, {block: None})), structural=False)


def rename_block(doc, old, new):
    members = _need(doc, old)
    new = check_block_name(doc.graph, new, keep=old)
    if new == old:
        return old
    state = dict(doc.graph.blocks.get(old, {"folded": False}))
    doc._push(BlockEdit(doc, f"Rename block {old} → {new}", _state(doc, members, [old, new]),
                        ({n: new for n in members}, {old: None, new: state})), structural=False)
    return new


def set_folded(doc, block, fold):
    """Fold (one node) or unfold (its layers) a block in place; unfolding moves the layers it would cover
    aside, in the same undo step."""
    members = _need(doc, block)
    if folded(doc, block) == bool(fold):
        return
    state = dict(doc.graph.blocks.get(block, {}), folded=bool(fold))
    text = f"{'Fold' if fold else 'Unfold'} {block}"
    doc.undo_stack.beginMacro(text)
    try:
        doc._push(BlockEdit(doc, text, _state(doc, [], [block]), ({}, {block: state})), structural=False)
        if not fold:
            doc.move_nodes(make_room(doc, members))
    finally:
        doc.undo_stack.endMacro()


def reveal(doc, name):
    """Unfold the folded block layer `name` hides in (one undo step), so the canvas can show and select it;
    returns that block, or None when the layer is already shown."""
    b = block_of(doc, name)
    if b is None or not folded(doc, b):
        return None
    set_folded(doc, b, False)
    return b


def toggle(doc, block):
    set_folded(doc, block, not folded(doc, block))


def _units(doc, skip):
    """[(members, x, y)] of what the canvas shows as one box: a layer, or a folded block (other than `skip`) at its
    first layer's place, its hidden layers moving with it."""
    g = doc.graph
    out, hidden = [], set()
    for b, ms in g.block_names().items():
        if b != skip and folded(doc, b):
            hidden.update(ms)
            out.append((ms, *doc.pos(ms[0])))
    inside = set(g.members(skip))
    return out + [([n], *doc.pos(n)) for n in g.nodes if n not in hidden and n not in inside]


def make_room(doc, members):
    """{node: new (x, y)} that makes room for the unfolded `members` (and their frame): what overlaps them moves
    along the flow (down when the block is taller than wide, else right), with everything beyond it in the same
    band of the layout (a wrapped column or row), so nothing overlaps and nothing new is covered; {} when
    nothing overlaps."""
    from .block_item import PAD, TITLE
    xy = [doc.pos(n) for n in members]
    x0, y0 = min(x for x, _ in xy) - PAD, min(y for _, y in xy) - PAD - TITLE
    x1, y1 = max(x for x, _ in xy) + NODE_W + PAD, max(y for _, y in xy) + NODE_H + PAD
    units = _units(doc, doc.graph.nodes[members[0]].meta.get("block"))
    hit = [u for u in units if u[1] < x1 and u[1] + NODE_W > x0 and u[2] < y1 and u[2] + NODE_H > y0]
    if not hit:
        return {}
    down = y1 - y0 > x1 - x0                       # a top-to-bottom layout: push down, else right
    a, lo, hi, end = (2, x0, x1, y1) if down else (1, y0, y1, x1)   # a: the coordinate along the push
    b, size, across = 3 - a, (NODE_H if down else NODE_W), (NODE_W if down else NODE_H)
    start = y0 if down else x0
    cand = [u for u in units if u[a] + size > start]
    spans = sorted([(u[b], u[b] + across) for u in cand] + [(lo, hi)])
    merged = []                                    # the band: spans across the flow chained by overlaps
    for s0, s1 in spans:
        if merged and s0 < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], s1)
        else:
            merged.append([s0, s1])
    lo, hi = next((m0, m1) for m0, m1 in merged if m0 <= lo and hi <= m1)
    band = [u for u in cand if lo <= u[b] and u[b] + across <= hi]
    near = [u[a] for u in band if u[b] < (x1 if down else y1) and u[b] + across > (x0 if down else y0)]
    d = end + GAP_MAIN - min(near) if near else 0.0
    if d <= 0:
        return {}
    out = {}
    for ms, x, y in band:
        for n in ms:
            px, py = doc.pos(n)
            out[n] = (px, py + d) if down else (px + d, py)
    return out


def positions(graph, vertical=False, wrap=None, planned=None):
    """{node: (x, y)} of a layered layout in which each folded block is one node; a folded block's layers are
    laid out in its place (so that unfolding it shows them there)."""
    q = Quotient.folded(graph)
    if len(q.nodes) == len(graph.nodes):
        return layered(graph, vertical, wrap=wrap, planned=planned)
    at = layered(q, vertical, wrap=wrap, planned=planned)
    out = {n: p for n, p in at.items() if n in graph.nodes and graph.nodes[n].meta.get("block") not in at}
    for b, ms in graph.block_names().items():
        if b not in at:
            continue
        inner = layered(Quotient(graph, {}, ms), vertical, origin=at[b])
        out.update(inner)
    return out


def place(graph, width, height, readable):
    """As gui.importer.place, for a graph with folded blocks: lay it out for a width × height canvas shown at
    zoom ≥ readable; True if the layout runs top to bottom."""
    vertical, wrap, planned = choose(Quotient.folded(graph), width, height, readable)
    for n, (x, y) in positions(graph, vertical, wrap, planned).items():
        m = graph.nodes[n].meta
        m.pop("pos", None)
        m["x"], m["y"] = round(x), round(y)
    return vertical


def fold_and_place(graph, width, height, readable):
    """After an import: fold the graph's repeated structures (engine.blocks.fold_repeated), then lay it out as
    `place` does; True if the layout runs top to bottom. Qt-free work (it runs in the import thread)."""
    from engine.blocks import fold_repeated
    from engine.shapes import infer
    fold_repeated(graph, infer(graph))
    return place(graph, width, height, readable)
