"""Incremental shape inference for the live canvas: engine.shapes.infer, re-run only where an edit reaches.

After an edit only the edited node and those whose inputs' shape/field/stride/state changed are re-inferred
(an edit that leaves a node's output alone stops there). Each re-inferred node runs through the engine's own
infer on a two-level graph: the node, with each input stood in by an Input of that input's known shape, so
the messages, fixes and numbers are exactly the engine's. Full inference equals this (tests check it).
"""
from engine.graph import Graph, Node
from engine.layers import create
from engine.shapes import _receptive_field, infer


class IndexedGraph(Graph):
    """Read-only view of a Graph whose inputs_of comes from an index (Graph.inputs_of scans every edge)."""

    def __init__(self, graph):
        self.nodes, self.edges = graph.nodes, graph.edges
        self._ins = {}
        for e in sorted(graph.edges, key=lambda e: e.port):
            self._ins.setdefault(e.dst, []).append(e.src)

    def inputs_of(self, name):
        return list(self._ins.get(name, ()))


class _Local(Graph):
    """One node whose inputs are Input stand-ins of known shape (an input with no shape gets a bad one)."""

    def __init__(self, node, srcs, infos):
        self.name, self.srcs = node.name, list(srcs)
        self.nodes = {s: Node(s, "Input", {"shape": list(infos[s].shape) if infos[s].ok else [0]}) for s in srcs}
        self.nodes[node.name] = node
        self.edges = []

    def topo_order(self):
        return self.srcs + [self.name]

    def inputs_of(self, name):
        return list(self.srcs) if name == self.name else []


def _out(info):
    """What consumers of a node see of it."""
    return info.shape, info.field, info.stride, info.blocked, info.error is None


class Validator:
    """Keeps the last NodeInfos and their inputs' signatures; run(graph) returns fresh infos in topo order."""

    def __init__(self):
        self.infos, self.sigs = {}, {}

    def run(self, graph):
        ig = IndexedGraph(graph)
        if not self.infos:
            return self._full(ig)
        order = ig.topo_order()
        new, sigs, moved = {}, {}, set()
        for name in order:
            node = graph.nodes[name]
            srcs = ig.inputs_of(name)
            sig = (node.type, repr(node.config), tuple(srcs))
            old = self.infos.get(name)
            sigs[name] = sig
            if old is not None and self.sigs.get(name) == sig and not moved.intersection(srcs):
                new[name] = old
                continue
            info = self._one(node, srcs, new)
            if info is None:                                    # a stand-in misbehaved: be exact instead
                return self._full(ig)
            new[name] = info
            if old is None or _out(old) != _out(info):
                moved.add(name)
                if len(moved) > max(8, len(order) // 8):      # the edit reaches far: one full pass is cheaper
                    return self._full(ig)
        self.infos, self.sigs = new, sigs
        return new

    def _full(self, ig):
        self.infos = infer(ig)
        self.sigs = {n: (ig.nodes[n].type, repr(ig.nodes[n].config), tuple(ig.inputs_of(n))) for n in self.infos}
        return self.infos

    @staticmethod
    def _one(node, srcs, infos):
        local = infer(_Local(node, srcs, infos))
        info = local[node.name]
        for s in srcs:
            if infos[s].ok and not local[s].ok:
                return None
        if info.blocked is not None:
            info.blocked = infos[info.blocked].blocked or info.blocked
        if info.ok and info.shape is not None and len(info.shape) == 3 and srcs:
            info.field = info.stride = None                     # the stand-ins started the recurrence anew
            _receptive_field(info, create(node.type, node.name, node.config), [infos[s] for s in srcs])
        return info
