"""Folds: keeps the scene's blocks in step with the Document (members of a folded block hidden, their crossing
edges drawn to the block's ports)."""
from PySide6.QtCore import QPointF

from engine.blocks import free_inputs, ports, summary

from .block_item import BlockFrame, BlockItem


def feeds(graph, members):
    """{outside node: the inner layer a folded block's input port fed by it stands for}: the first of `members` it
    feeds that takes any number of inputs (a merge: one more can join), else the first it feeds."""
    from engine.graph import n_inputs
    inside, out = set(members), {}
    for n in members:
        for s in graph.inputs_of(n):
            if s not in inside and (s not in out or n_inputs(graph.nodes[n].type) is None
                                    and n_inputs(graph.nodes[out[s]].type) is not None):
                out[s] = n
    return out


class Folds:
    """Keeps the scene's blocks in step with the Document: one BlockItem per folded block, one BlockFrame per
    unfolded one; member items of a folded block hidden."""

    def __init__(self, scene):
        self.scene = scene
        self.items, self.frames = {}, {}
        self.unit = {}                    # node -> folded block it is hidden in
        doc = scene.doc
        doc.blocks_changed.connect(self.refresh)
        doc.changed.connect(self.refresh)

    def refresh(self):
        sc, g = self.scene, self.scene.doc.graph
        blocks = g.block_names()
        if not blocks and not self.items and not self.frames and not self.unit:
            return
        fold = {b: ms for b, ms in blocks.items() if g.blocks.get(b, {}).get("folded")}
        was, self.unit = self.unit, {n: b for b, ms in fold.items() for n in ms}
        for b in [b for b in self.items if b not in fold]:
            sc.removeItem(self.items.pop(b))
        for b in [b for b in self.frames if b not in blocks or b in fold]:
            sc.removeItem(self.frames.pop(b))
        infos = sc.doc.infos
        for b, ms in fold.items():
            it = self.items.get(b)
            if it is None:
                it = self.items[b] = BlockItem(b)
                sc.addItem(it)
            it.set_state(ms, ports(g, ms), summary(g, infos, ms), feeds(g, ms), free_inputs(g, ms))
            it.origin = QPointF(*sc.doc.pos(ms[0]))         # where its first layer stands (free while folded)
            if it.pos() != it.origin:
                it.setPos(it.origin)
        for n, it in sc.nodes.items():
            hide = n in self.unit
            if it.isVisible() == hide:
                it.setVisible(not hide)
                if hide:
                    it.setSelected(False)
        for b, ms in blocks.items():
            if b in fold:
                continue
            fr = self.frames.get(b)
            if fr is None:
                fr = self.frames[b] = BlockFrame(b)
                sc.addItem(fr)
            fr.fit([sc.nodes[n].sceneBoundingRect() for n in ms if n in sc.nodes])
        near = set(was) | set(self.unit)
        for n in near:                                        # only edges at a folded (or just unfolded) layer
            for e in sc.touching.get(n, ()):
                a, c = self.unit.get(e.src), self.unit.get(e.dst)
                it = sc.edges[e]
                it.setVisible(a is None or a != c)
                sc._route(it)

    def anchor(self, name, src=None):
        """Scene point an edge end at node `name` goes to when it is hidden in a folded block, else None;
        src: None for the edge's source end, else the source node of an edge into `name`."""
        b = self.unit.get(name)
        if b is None or b not in self.items:
            return None
        it = self.items[b]
        return it.out_anchor(name) if src is None else it.in_anchor(src)

    def route_block(self, block):
        """Re-route the edges that cross a folded block (while it is dragged)."""
        sc = self.scene
        for n in sc.doc.graph.members(block):
            for e in sc.touching.get(n, ()):
                sc._route(sc.edges[e])

    def node_moved(self, name):
        """A layer of an unfolded block moved: its frame follows."""
        b = self.scene.doc.graph.nodes[name].meta.get("block") if name in self.scene.doc.graph.nodes else None
        fr = self.frames.get(b)
        if fr is not None:
            sc = self.scene
            fr.fit([sc.nodes[n].sceneBoundingRect() for n in sc.doc.graph.members(b) if n in sc.nodes])

    def moves(self):
        """{member: new (x, y)} for every folded block dragged away from where its members stand."""
        out = {}
        for b, it in self.items.items():
            d = it.pos() - it.origin
            if d.x() or d.y():
                for n in it.members:
                    x, y = self.scene.doc.pos(n)
                    out[n] = (x + d.x(), y + d.y())
        return out

    def at(self, pos):
        """The folded block under scene point `pos`, or None."""
        return next((it for it in self.scene.items(pos) if isinstance(it, BlockItem)), None)

    def restyle(self):
        """After a theme switch: every folded block's ports."""
        for it in self.items.values():
            it.restyle()

    def selected(self):
        """Members of the selected folded blocks."""
        return [n for it in self.items.values() if it.isSelected() for n in it.members]
