"""The model graph: named nodes (layer type, hyperparameters, opaque metadata) and edges into ports."""
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
    meta: dict = field(default_factory=dict)     # canvas position etc.; the engine never reads it

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
    """A DAG of layers. Every mutation keeps it acyclic with at most one edge per input port."""

    def __init__(self):
        self.nodes = {}
        self.edges = []

    # ---- queries ----
    def inputs_of(self, name):
        """Source node names feeding `name`, ordered by port."""
        return [e.src for e in sorted((e for e in self.edges if e.dst == name), key=lambda e: e.port)]

    def inputs_index(self):
        """{node: source names ordered by port} for every node at once, in O(E log E)."""
        ins = {n: [] for n in self.nodes}
        for e in sorted(self.edges, key=lambda e: e.port):
            ins[e.dst].append(e.src)
        return ins

    def consumers(self, name):
        return [e.dst for e in self.edges if e.src == name]

    def outputs(self):
        """Nodes whose output nobody consumes."""
        used = {e.src for e in self.edges}
        return [n for n in self.nodes if n not in used]

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
        indeg = {n: 0 for n in self.nodes}
        for e in self.edges:
            indeg[e.dst] += 1
        ready = [n for n in self.nodes if indeg[n] == 0]
        order = []
        out = {n: [] for n in self.nodes}
        for e in self.edges:
            out[e.src].append(e.dst)
        while ready:
            n = ready.pop(0)
            order.append(n)
            for d in out[n]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    ready.append(d)
        if len(order) != len(self.nodes):
            stuck = sorted(n for n in self.nodes if n not in order)
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
        return node

    def remove_node(self, name):
        """Remove a node and its edges; return (node, removed edges) so an undo can restore them."""
        self._need(name)
        gone = [e for e in self.edges if name in (e.src, e.dst)]
        self.edges = [e for e in self.edges if name not in (e.src, e.dst)]
        return self.nodes.pop(name), gone

    def check_connect(self, src, dst, port=None):
        """The edge src → dst:port that connect would add, or GraphError saying why it is refused."""
        self._need(src)
        self._need(dst)
        if src == dst:
            raise GraphError(f"'{src}' cannot feed itself")
        need = n_inputs(self.nodes[dst].type)
        taken = {e.port for e in self.edges if e.dst == dst}
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
        if any(e.src == src and e.dst == dst for e in self.edges):
            raise GraphError(f"'{src}' already feeds '{dst}'")
        if src in self._downstream(dst):
            raise GraphError(f"connecting '{src}' → '{dst}' would make a cycle ('{dst}' already feeds '{src}')")
        return Edge(src, dst, port)

    def connect(self, src, dst, port=None):
        e = self.check_connect(src, dst, port)
        self.edges.append(e)
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
        if edge not in self.edges:
            raise GraphError(f"no edge {edge.src} → {edge.dst}")
        self.edges.remove(edge)

    def rename(self, old, new):
        self._need(old)
        check_name(new)
        if new in self.nodes:
            raise GraphError(f"a node named '{new}' already exists")
        self.nodes = {(new if k == old else k): v for k, v in self.nodes.items()}
        self.nodes[new].name = new
        self.edges = [Edge(new if e.src == old else e.src, new if e.dst == old else e.dst, e.port)
                      for e in self.edges]

    def _need(self, name):
        if name not in self.nodes:
            raise GraphError(f"no node named '{name}'")

    def _downstream(self, name):
        seen, stack = set(), [name]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.consumers(n))
        return seen

    # ---- serialisation ----
    def to_dict(self):
        return {"nodes": [n.to_dict() for n in self.nodes.values()], "edges": [e.to_dict() for e in self.edges]}

    @classmethod
    def from_dict(cls, d):
        """Rebuild from to_dict() output; GraphError names the first bad entry."""
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
                g.connect(e["src"], e["dst"], e.get("port", 0))
            except GraphError as err:
                raise GraphError(f"edge #{i + 1} ({e['src']} → {e['dst']}): {err}") from None
        return g

    def copy(self):
        return Graph.from_dict(self.to_dict())
