"""The Document's primitives: the only code that changes the graph, called only by commands (gui.commands); each
emits the signal the scene mirrors. A mixin of Document."""
from engine.graph import GraphError

from . import commands as C


class Primitives:
    """_add, _remove, _remove_many, _restore, _connect, _disconnect, _move, _set_config, _rename, _edited."""

    def _add(self, type, name, config, meta, index=None):
        """Add a node (at position `index` of the node order when undoing a removal)."""
        self.graph.add_node(type, name, dict(config), dict(meta))
        if index is not None and index < len(self.graph.nodes) - 1:
            items = list(self.graph.nodes.items())
            items.insert(index, items.pop())
            self.graph.nodes = dict(items)
        self._touch(name)
        self.node_added.emit(name)

    def _remove(self, name):
        """Remove a node; returns (node, its index, [(edge index, edge)]) for the undo."""
        index = list(self.graph.nodes).index(name)
        gone = [(i, e) for i, e in enumerate(self.graph.edges) if name in (e.src, e.dst)]
        node, _ = self.graph.remove_node(name)
        self._touch(*(e.dst for _, e in gone))
        for _, e in gone:
            self.edge_removed.emit(e)
        self.node_removed.emit(name)
        return node, index, gone

    def _remove_many(self, names, edges):
        """Remove nodes and edges at once (Graph.remove_many); returns what _restore takes back."""
        nodes, gone = self.graph.remove_many(names, edges)
        self._touch(*(e.dst for _, e in gone))
        self.bulk.emit(True)
        try:
            for _, e in gone:
                self.edge_removed.emit(e)
            for _, node in nodes:
                self.node_removed.emit(node.name)
        finally:
            self.bulk.emit(False)
        return nodes, gone

    def _restore(self, nodes, edges):
        self.graph.restore(nodes, edges)
        self._touch(*(n.name for _, n in nodes), *(e.dst for _, e in edges))
        self.bulk.emit(True)
        try:
            for _, node in nodes:
                self.node_added.emit(node.name)
            for _, e in edges:
                self.edge_added.emit(e)
        finally:
            self.bulk.emit(False)

    def _connect(self, edge, index=None):
        self.graph.connect(edge.src, edge.dst, edge.port, index)
        self._touch(edge.dst)
        self.edge_added.emit(edge)

    def _disconnect(self, edge):
        if not self.graph.has_edge(edge):
            raise GraphError(f"no edge {edge.src} → {edge.dst}")
        index = self.graph.edges.index(edge)
        self.graph.disconnect(edge)
        self._touch(edge.dst)
        self.edge_removed.emit(edge)
        return index

    def _move(self, name, xy):
        m = self.graph.nodes[name].meta
        m["x"], m["y"] = xy
        self.node_moved.emit(name)

    def _set_config(self, name, key, value):
        cfg = self.graph.nodes[name].config
        if value is C.MISSING:
            cfg.pop(key, None)
        else:
            cfg[key] = value
        self._touch(name)
        self.node_changed.emit(name)

    def _rename(self, old, new):
        olds = [e for e in self.graph.edges if old in (e.src, e.dst)]
        for e in olds:
            self.edge_removed.emit(e)
        self.graph.rename(old, new)
        from .search_marks import renamed
        renamed(self.project.search, old, new)                  # search ranges follow their node
        self._touch(new)
        self.node_renamed.emit(old, new)
        for e in self.graph.edges:
            if new in (e.src, e.dst):
                self.edge_added.emit(e)

    def _edited(self, structural=True):
        """After every command's redo/undo: re-validate and tell everyone."""
        if structural:
            self.revalidate(full=False)
        self.changed.emit()
