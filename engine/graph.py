"""The model graph: named nodes (layer type, hyperparameters, opaque metadata) and edges into ports."""
from collections import deque
from dataclasses import dataclass, field

from .errors import LayerboardError
from .layers import REGISTRY


class GraphError(LayerboardError):
    """An edit or a loaded graph is structurally invalid (cycle, unknown node, occupied port)."""


@dataclass
class Node:
    name: str
    type: str
    config: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)     # canvas position, "block" (the group it belongs to) etc.

    def to_dict(self):
        return {"name": self.name, "type": self.type, "config": dict(self.config), "meta": dict(self.meta)}


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    port: int = 0

    def to_dict(self):
        return {"src": self.src, "dst": self.dst, "port": self.port}


def check_name(name):
    """GraphError unless name can name a node: non-empty text without '/' (weights are keyed 'node/param')."""
    if not isinstance(name, str) or not name:
        raise GraphError(f"a node needs a non-empty text name, got {name!r}")
    if "/" in name:
        raise GraphError(f"the node name {name!r} contains '/', which separates node and parameter in weight "
                         f"files ('{name.split('/')[0]}/W'); use another character, e.g. {name.replace('/', '_')!r}")


def n_inputs(type):
    """Fixed input count of a layer type, or None for two-or-more."""
    return REGISTRY[type].n_inputs


class Graph:
    """A DAG of layers. Every mutation keeps it acyclic with at most one edge per input port.

    `edges` keeps the file's order; `_ins` / `_outs` ({node: [Edge]}, in that order) are the adjacency every
    query and check walks, so a cycle check visits only what lies downstream, never every edge."""

    def __init__(self):
        self.nodes = {}
        self.edges = []
        self._ins, self._outs = {}, {}
        self.blocks = {}            # {block name: {"folded": bool}}; a node's meta["block"] says which one it is in

    # ---- queries ----
    def inputs_of(self, name):
        """Source node names feeding `name`, ordered by port."""
        return [e.src for e in sorted(self._ins.get(name, ()), key=lambda e: e.port)]

    def inputs_index(self):
        """{node: source names ordered by port} for every node at once, in O(V + E)."""
        return {n: [e.src for e in sorted(self._ins[n], key=lambda e: e.port)] for n in self.nodes}

    def consumers(self, name):
        return [e.dst for e in self._outs.get(name, ())]

    def outputs(self):
        """Nodes whose output nobody consumes."""
        return [n for n in self.nodes if not self._outs[n]]

    def unique_name(self, base):
        base = base.lower()
        if base not in self.nodes:
            return base
        i = 1
        while f"{base}{i}" in self.nodes:
            i += 1
        return f"{base}{i}"

    def topo_order(self):
        """Node names so that every node comes after its inputs; GraphError on a cycle."""
        indeg = {n: len(self._ins[n]) for n in self.nodes}
        ready = deque(n for n in self.nodes if indeg[n] == 0)
        order = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for e in self._outs[n]:
                indeg[e.dst] -= 1
                if indeg[e.dst] == 0:
                    ready.append(e.dst)
        if len(order) != len(self.nodes):
            done = set(order)
            stuck = sorted(n for n in self.nodes if n not in done)
            raise GraphError(f"the graph has a cycle through {', '.join(stuck)}")
        return order

    def missing_inputs(self, name, have=None):
        """Message if `name` has fewer inputs than its layer needs, else None; `have`: its input count if known."""
        node = self.nodes[name]
        need, have = n_inputs(node.type), len(self.inputs_of(name)) if have is None else have
        if need is None and have < 2:
            return f"{node.type} '{name}' needs at least two inputs but has {have}: connect another layer"
        if need is not None and have < need:
            return f"{node.type} '{name}' has no input: connect a layer to it"
        return None

    # ---- edits ----
    def add_node(self, type, name=None, config=None, meta=None):
        if type not in REGISTRY:
            raise GraphError(f"unknown layer type {type!r}; known: {', '.join(sorted(REGISTRY))}")
        name = name or self.unique_name(type)
        check_name(name)
        if name in self.nodes:
            raise GraphError(f"a node named '{name}' already exists")
        node = Node(name, type, dict(config or {}), dict(meta or {}))
        self.nodes[name] = node
        self._ins[name], self._outs[name] = [], []
        return node

    def remove_node(self, name):
        """Remove a node and its edges; return (node, removed edges) so an undo can restore them."""
        self._need(name)
        gone = [e for e in self.edges if name in (e.src, e.dst)]
        for e in gone:
            self._unlink(e)
        self.edges = [e for e in self.edges if name not in (e.src, e.dst)]
        del self._ins[name], self._outs[name]
        return self.nodes.pop(name), gone

    def remove_many(self, names, edges=()):
        """Remove the edges, then the nodes and their edges, in one O(V + E) pass.

        Returns (nodes, edges) as [(index, Node)] and [(index, Edge)], ascending, for restore()."""
        names, edges = set(names), set(edges)
        for n in names:
            self._need(n)
        for e in edges:
            if not self.has_edge(e):
                raise GraphError(f"no edge {e.src} → {e.dst}")
        gone_e = [(i, e) for i, e in enumerate(self.edges) if e in edges or e.src in names or e.dst in names]
        gone_n = [(i, node) for i, (n, node) in enumerate(self.nodes.items()) if n in names]
        drop = {e for _, e in gone_e}
        self.edges = [e for e in self.edges if e not in drop]
        self.nodes = {n: node for n, node in self.nodes.items() if n not in names}
        self._index()
        return gone_n, gone_e

    def restore(self, nodes, edges):
        """Put back what remove_many returned (same indices), checking names, ports and acyclicity once for
        the whole set (O(V + E)); GraphError leaves the graph unchanged."""
        for _, node in nodes:
            check_name(node.name)
            if node.name in self.nodes:
                raise GraphError(f"a node named '{node.name}' already exists")
            if node.type not in REGISTRY:
                raise GraphError(f"unknown layer type {node.type!r}")
        before = (self.nodes, self.edges)
        order = list(self.nodes.items())
        for i, node in nodes:
            order.insert(i, (node.name, node))
        new_edges = list(self.edges)
        for i, e in edges:
            new_edges.insert(i, e)
        self.nodes, self.edges = dict(order), new_edges
        try:
            self._index()
            for n in {e.dst for _, e in edges}:
                need, ports = n_inputs(self.nodes[n].type), [e.port for e in self._ins[n]]
                if len(set(ports)) != len(ports) or (need is not None and any(not 0 <= p < need for p in ports)):
                    raise GraphError(f"the inputs of '{n}' would clash: ports {sorted(ports)}")
            self.topo_order()
        except (GraphError, KeyError) as err:
            self.nodes, self.edges = before
            self._index()
            raise GraphError(f"cannot restore: {err}") from None

    def has_edge(self, e):
        return e in self._outs.get(e.src, ())

    def check_connect(self, src, dst, port=None, cycle=True):
        """The edge src → dst:port that connect would add, or GraphError saying why it is refused.

        cycle=False skips the cycle walk (a caller that checks the whole graph once afterwards)."""
        self._need(src)
        self._need(dst)
        if src == dst:
            raise GraphError(f"'{src}' cannot feed itself")
        need = n_inputs(self.nodes[dst].type)
        taken = {e.port for e in self._ins[dst]}
        if need == 0:
            raise GraphError(f"'{dst}' is an {self.nodes[dst].type}: nothing can connect into it")
        if port is None:
            port = next(p for p in range(len(taken) + 1) if p not in taken)
            if need is not None and port >= need:
                have = ", ".join(f"'{s}'" for s in self.inputs_of(dst))
                raise GraphError(f"'{dst}' takes {need} input(s) and is already connected (from {have}); "
                                 "disconnect it first")
        if port in taken:
            raise GraphError(f"input {port + 1} of '{dst}' is already connected; disconnect it first")
        if need is not None and not 0 <= port < need:
            raise GraphError(f"'{dst}' takes {need} input(s); it has no input {port + 1}")
        if any(e.dst == dst for e in self._outs[src]):
            raise GraphError(f"'{src}' already feeds '{dst}'")
        if cycle and self._reaches(dst, src):
            raise GraphError(f"connecting '{src}' → '{dst}' would make a cycle ('{dst}' already feeds '{src}')")
        return Edge(src, dst, port)

    def connect(self, src, dst, port=None, index=None, cycle=True):
        """Add the edge (at position `index` of `edges` when an undo puts it back)."""
        e = self.check_connect(src, dst, port, cycle)
        if index is None or index >= len(self.edges):
            self.edges.append(e)
            self._link(e)
        else:
            self.edges.insert(index, e)
            self._link(e)
            pos = {x: i for i, x in enumerate(self.edges) if x.src == src or x.dst == dst}
            self._outs[src].sort(key=pos.get)
            self._ins[dst].sort(key=pos.get)
        return e

    def chain(self, *specs, after=None):
        """Add (name, type, config) nodes in a row, the first fed by node `after`; returns the last name."""
        prev = after
        for name, t, c in specs:
            self.add_node(t, name, c)
            if prev:
                self.connect(prev, name)
            prev = name
        return prev

    def disconnect(self, edge):
        if not self.has_edge(edge):
            raise GraphError(f"no edge {edge.src} → {edge.dst}")
        self.edges.remove(edge)
        self._unlink(edge)

    def rename(self, old, new):
        self._need(old)
        check_name(new)
        if new in self.nodes:
            raise GraphError(f"a node named '{new}' already exists")
        self.nodes = {(new if k == old else k): v for k, v in self.nodes.items()}
        self.nodes[new].name = new
        self.edges = [Edge(new if e.src == old else e.src, new if e.dst == old else e.dst, e.port)
                      for e in self.edges]
        self._index()

    def _need(self, name):
        if name not in self.nodes:
            raise GraphError(f"no node named '{name}'")

    def _index(self):
        """Rebuild the adjacency from nodes and edges (O(V + E))."""
        self._ins, self._outs = {n: [] for n in self.nodes}, {n: [] for n in self.nodes}
        for e in self.edges:
            self._link(e)

    def _link(self, e):
        self._outs[e.src].append(e)
        self._ins[e.dst].append(e)

    def _unlink(self, e):
        self._outs[e.src].remove(e)
        self._ins[e.dst].remove(e)

    def _downstream(self, name):
        """`name` and every node it feeds, directly or not (a walk along the adjacency)."""
        seen, stack = set(), [name]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(e.dst for e in self._outs[n])
        return seen

    def _reaches(self, a, b):
        """True if b is a or lies downstream of a; stops as soon as it finds b."""
        seen, stack = set(), [a]
        while stack:
            n = stack.pop()
            if n == b:
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(e.dst for e in self._outs[n])
        return False

    def members(self, block):
        """Names of the nodes grouped in `block`, in node order."""
        return [n for n, v in self.nodes.items() if v.meta.get("block") == block]

    def block_names(self):
        """{block: [members]} of every block that has members, in node order."""
        out = {}
        for n, v in self.nodes.items():
            if v.meta.get("block") is not None:
                out.setdefault(v.meta["block"], []).append(n)
        return out

    # ---- serialisation ----
    def to_dict(self):
        """Nodes, edges and (when there are any) blocks: [{"name", "nodes", "folded"}]; membership lives there,
        not in the nodes' meta."""
        nodes = []
        for n in self.nodes.values():
            d = n.to_dict()
            d["meta"].pop("block", None)
            nodes.append(d)
        d = {"nodes": nodes, "edges": [e.to_dict() for e in self.edges]}
        blocks = self.block_names()
        if blocks:
            d["blocks"] = [{"name": b, "nodes": m, "folded": bool(self.blocks.get(b, {}).get("folded", False))}
                           for b, m in blocks.items()]
        return d

    def _read_blocks(self, blocks):
        """Membership and fold state from to_dict()'s "blocks" list; GraphError names the first bad entry."""
        if not isinstance(blocks, list):
            raise GraphError("'blocks' must be a list")
        for i, b in enumerate(blocks):
            if not isinstance(b, dict) or not isinstance(b.get("name"), str) or not b["name"].strip() \
                    or not isinstance(b.get("nodes"), list):
                raise GraphError(f"block #{i + 1} needs a text 'name' and a 'nodes' list")
            name = b["name"]
            if name in self.blocks:
                raise GraphError(f"block #{i + 1}: the name '{name}' is used twice")
            for n in b["nodes"]:
                if not isinstance(n, str) or n not in self.nodes:
                    raise GraphError(f"block '{name}': no node named {n!r}")
                if self.nodes[n].meta.get("block") is not None:
                    raise GraphError(f"block '{name}': node '{n}' is already in block '{self.nodes[n].meta['block']}'")
                self.nodes[n].meta["block"] = name
            self.blocks[name] = {"folded": bool(b.get("folded", False))}

    @classmethod
    def from_dict(cls, d, _cycles=False):
        """Rebuild from to_dict() output; GraphError names the first bad entry.

        Edges are checked one by one except for cycles, checked once for the whole graph (O(V + E)); only a
        graph that has one is read again with the per-edge walk, to name the edge that closes it."""
        g = cls()
        if not isinstance(d, dict) or not isinstance(d.get("nodes"), list) or not isinstance(d.get("edges", []), list):
            raise GraphError("graph must be an object with a 'nodes' list and an 'edges' list")
        for i, n in enumerate(d["nodes"]):
            if not isinstance(n, dict) or not isinstance(n.get("name"), str) or not isinstance(n.get("type"), str):
                raise GraphError(f"node #{i + 1} needs a text 'name' and 'type'")
            if not isinstance(n.get("config", {}), dict) or not isinstance(n.get("meta", {}), dict):
                raise GraphError(f"node '{n['name']}': 'config' and 'meta' must be objects")
            try:
                g.add_node(n["type"], n["name"], n.get("config"), n.get("meta"))
            except GraphError as err:
                raise GraphError(f"node #{i + 1}: {err}") from None
        for i, e in enumerate(d.get("edges", [])):
            if not isinstance(e, dict) or not isinstance(e.get("src"), str) or not isinstance(e.get("dst"), str) \
                    or not isinstance(e.get("port", 0), int):
                raise GraphError(f"edge #{i + 1} needs text 'src', 'dst' and a whole-number 'port'")
            try:
                g.connect(e["src"], e["dst"], e.get("port", 0), cycle=_cycles)
            except GraphError as err:
                raise GraphError(f"edge #{i + 1} ({e['src']} → {e['dst']}): {err}") from None
        if not _cycles:
            try:
                g.topo_order()
            except GraphError:
                return cls.from_dict(d, _cycles=True)
        for n in g.nodes.values():
            n.meta.pop("block", None)                # membership comes from "blocks" only
        g._read_blocks(d.get("blocks", []))
        return g

    def copy(self):
        return Graph.from_dict(self.to_dict())
