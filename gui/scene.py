"""The canvas scene: mirrors the Document (listens to its signals) and turns gestures into Document edits."""
import gc
from contextlib import contextmanager

from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene, QToolTip

from engine.errors import LayerboardError

from .block_folds import Folds
from .block_item import BlockFrame, BlockItem
from .items import EdgeItem, NodeItem, NoteItem, PortItem
from .scene_menu import SceneMenus

NOTE_MS = 6000          # a refusal note stays on the canvas this long (or until the next press)
SPARE = 50000           # at most this many removed items are kept for reuse
from .style import theme


@contextmanager
def no_gc():
    """The garbage collector paused while thousands of items are made (its passes scan them all again and again:
    a quarter of opening a 5,000-node graph); reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class GraphScene(SceneMenus, QGraphicsScene):
    """Items for the Document's nodes and edges; user gestures call Document methods only."""

    message = Signal(str)                 # status-bar text: refusals and hints
    node_activated = Signal(str)          # double-click on a node

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.nodes, self.edges = {}, {}
        self.touching = {}                # node name -> the edges (items' keys) at either end
        self._dirty = None                # during a bulk edit: nodes whose ports/edges to redo at its end
        self._spare = {}                  # items of removed nodes/edges, reused when an undo brings them back
        self.vertical = False
        self._drag = None                 # (port, temp path item) while connecting
        self._hot = None
        self._ports_shown = True          # False while every view shows the graph too small for ports
        self.restyled = []                # nodes whose state the last validation changed (gui.navigate.Minimap)
        self.note = None                  # the NoteItem explaining the last refusal, where it happened
        self._note_timer = QTimer(self)
        self._note_timer.setSingleShot(True)
        self._note_timer.timeout.connect(self.clear_note)
        self.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.BspTreeIndex)   # a frame asks only for what it shows:
        # 5,000-node pans at 100 % 38 → 19 ms CPU a frame, open unchanged (benchmarks/README.md)
        doc.reset.connect(self.rebuild)
        doc.node_added.connect(self._on_node_added)
        doc.node_removed.connect(self._on_node_removed)
        doc.node_moved.connect(self._on_node_moved)
        doc.node_renamed.connect(self._on_node_renamed)
        doc.edge_added.connect(self._on_edge_added)
        doc.edge_removed.connect(self._on_edge_removed)
        doc.validated.connect(self._on_validated)
        doc.bulk.connect(self._on_bulk)
        self.folds = Folds(self)          # blocks: folded ones drawn as one node (gui.block_item)
        self.rebuild()

    # ---- mirroring ----
    def rebuild(self):
        with no_gc():                           # thousands of items at once: no collection passes midway
            self._rebuild()

    def _rebuild(self):
        self._cancel_drag()
        self.clear_note()
        self._on_bulk(True)
        for it in list(self.nodes.values()) + list(self.edges.values()):
            self.removeItem(it)
        self.nodes, self.edges, self.touching, self._spare = {}, {}, {}, {}
        for name in self.doc.graph.nodes:
            self._on_node_added(name)
        for e in self.doc.graph.edges:
            self._on_edge_added(e)
        self._on_bulk(False)
        self._on_validated(self.doc.infos)
        self.folds.refresh()

    def _on_bulk(self, on):
        """Many adds/removes in a row: lay out ports and route edges once per node at the end, and send
        one selectionChanged instead of one per removed item."""
        if on:
            if self._dirty is None:
                self._dirty = set()
                self._was_blocked = self.blockSignals(True)
                self._gc, _ = gc.isenabled(), gc.disable()      # as no_gc(), across the bulk edit
            return
        if self._dirty is None:
            return
        dirty, self._dirty = [n for n in self._dirty if n in self.nodes], None
        self.blockSignals(self._was_blocked)
        if self._gc:
            gc.enable()
        for name in dirty:
            self._ports_changed(name, route=False)
        for e in {e for name in dirty for e in self.touching.get(name, ())}:     # each edge once
            self._route(self.edges[e])
        self.selectionChanged.emit()

    def _on_node_added(self, name):
        node = self.doc.graph.nodes[name]
        it = self._spare.pop(("node", name), None)
        if it is None or it.layer_type != node.type:
            it = NodeItem(name, node.type, self.vertical)
        else:
            it.vertical = self.vertical
            it.set_inputs(0)                        # its edges come back after it
        it.setSelected(False)
        it.setPos(*self.doc.pos(name))
        it.set_state(node.config, self.doc.infos.get(name))
        it._state = None
        self.nodes[name] = it
        self.touching.setdefault(name, set())
        self.addItem(it)

    def _on_node_removed(self, name):
        it = self.nodes.pop(name)
        self.touching.pop(name, None)
        self.removeItem(it)
        self._keep(("node", name), it)

    def _keep(self, key, it):
        if len(self._spare) > SPARE:
            self._spare.clear()
        self._spare[key] = it

    def _on_node_moved(self, name):
        it = self.nodes[name]
        x, y = self.doc.pos(name)
        if (it.pos().x(), it.pos().y()) != (x, y):
            it.setPos(x, y)
        self.folds.node_moved(name)

    def _on_node_renamed(self, old, new):
        it = self.nodes.pop(old)
        it.name, it._state, it._texts = new, None, None
        self.nodes[new] = it
        self.touching[new] = self.touching.pop(old, set())

    def _on_edge_added(self, e):
        it = self._spare.pop(("edge", e), None) or EdgeItem(e)
        it.setSelected(False)
        if it.hot:                                  # removed while hovered
            it.hot = False
            it.restyle()
        self.edges[e] = it
        for n in (e.src, e.dst):
            self.touching.setdefault(n, set()).add(e)
        self.addItem(it)
        if self._dirty is not None:
            self._dirty.update((e.src, e.dst))
            return
        self._ports_changed(e.dst)
        self._route(it)

    def _on_edge_removed(self, e):
        it = self.edges.pop(e)
        self.removeItem(it)
        self._keep(("edge", e), it)
        for n in (e.src, e.dst):
            self.touching.get(n, set()).discard(e)
        if self._dirty is not None:
            self._dirty.add(e.dst)
        elif e.dst in self.nodes:
            self._ports_changed(e.dst)

    def _ports_changed(self, name, route=True):
        used = [e.port for e in self.touching.get(name, ()) if e.dst == name]
        self.nodes[name].set_inputs(max(used) + 1 if used else 0)
        if route:
            self.node_geometry_changed(name)

    def _on_validated(self, infos):
        self.restyled = []                              # the nodes redrawn: the minimap repaints only these
        for name, it in self.nodes.items():             # an unchanged node keeps its NodeInfo (or an equal one)
            node, info = self.doc.graph.nodes.get(name), infos.get(name)
            if node is None or (it._state is not None and (it.info is info or it.info == info)
                                and it.config == node.config):
                continue
            it._state = True
            it.set_state(node.config, info)
            self.restyled.append(name)

    def _route(self, it):
        e = it.edge
        a = self.folds.anchor(e.src) or self.nodes[e.src].out_port.scenePos()
        b = self.folds.anchor(e.dst, e.src) or self.nodes[e.dst].port_at(e.port).scenePos()
        it.route(a, b, self.vertical)

    def node_geometry_changed(self, name):
        if self._dirty is not None:
            self._dirty.add(name)
            return
        for e in self.touching.get(name, ()):
            self._route(self.edges[e])

    def show_ports(self, on):
        """Ports only where node text is drawn: zoomed out they are specks, and 12,000 fewer items per frame."""
        if on == self._ports_shown:
            return
        self._ports_shown = on
        for it in self.nodes.values():
            for port in it.in_ports + [it.out_port]:
                port.setVisible(on)

    def set_vertical(self, on):
        self.vertical = on
        for it in self.nodes.values():
            it.set_vertical(on)
        for it in self.edges.values():
            self._route(it)

    # ---- selection helpers ----
    def selected_names(self):
        """Selected layers, with every layer of a selected folded block."""
        return [it.name for it in self.selectedItems() if isinstance(it, NodeItem)] + self.folds.selected()

    def selected_edges(self):
        return [it.edge for it in self.selectedItems() if isinstance(it, EdgeItem)]

    def select(self, names):
        """Select these layers with one selectionChanged (Qt sends one per item: a panel rebuilt 5,000 times)."""
        was = self.blockSignals(True)
        self.clearSelection()
        for n in names:
            b = self.folds.unit.get(n)                  # a layer inside a folded block: the block
            if b is not None and b in self.folds.items:
                self.folds.items[b].setSelected(True)
            elif n in self.nodes:
                self.nodes[n].setSelected(True)
        self.blockSignals(was)
        if not was:
            self.selectionChanged.emit()

    def delete_selected(self):
        self.attempt(self.doc.remove_nodes, self.selected_names(), self.selected_edges())

    def attempt(self, fn, *args):
        """Run a Document edit; a refusal goes to the status bar instead of raising."""
        try:
            return fn(*args)
        except LayerboardError as e:
            self.message.emit(str(e))
            return None

    # ---- gestures ----
    def _port_at(self, pos):
        for it in self.items(pos):
            if isinstance(it, PortItem) and it.isVisible():
                return it
        return None

    def _node_at(self, pos):
        for it in self.items(pos):
            if not it.isVisible():                  # a layer hidden in a folded block
                continue
            if isinstance(it, NodeItem):
                return it
            if isinstance(it, PortItem):
                return it.node
        return None

    def mousePressEvent(self, e):
        self.clear_note()
        port = self._port_at(e.scenePos()) if e.button() == Qt.MouseButton.LeftButton else None
        if port is None:
            return super().mousePressEvent(e)
        temp = QGraphicsPathItem()
        temp.setPen(QPen(QColor(theme["accent"]), 2, Qt.PenStyle.DashLine))
        temp.setZValue(3)
        self.addItem(temp)
        self._drag = (port, temp)
        e.accept()

    def mouseMoveEvent(self, e):
        if self._drag is None:
            return super().mouseMoveEvent(e)
        port, temp = self._drag
        a, b = port.scenePos(), e.scenePos()
        if not port.is_output:
            a, b = b, a
        path = QPainterPath(a)
        d = max(40.0, abs(b.x() - a.x()) * 0.5)
        path.cubicTo(QPointF(a.x() + d, a.y()), QPointF(b.x() - d, b.y()), b)
        temp.setPath(path)
        target = self._port_at(e.scenePos())
        if self._hot is not None and self._hot is not target:
            self._hot.set_hot(False)
        self._hot = target
        if target is not None and target.node is not port.node:
            target.set_hot(True)
            ends = self._ends(port, target)
            if ends:
                try:
                    self.doc.graph.check_connect(*ends)
                    self.message.emit(f"release to connect {ends[0]} → {ends[1]}")
                except LayerboardError as err:
                    self.message.emit(f"cannot connect: {err}")

    def _ends(self, a, b):
        """(src, dst, port) for a drag between two ports, None if both are inputs or both outputs."""
        if a.is_output == b.is_output:
            return None
        out, inp = (a, b) if a.is_output else (b, a)
        return out.node.name, inp.node.name, (None if inp.extra else inp.index)

    def mouseReleaseEvent(self, e):
        if self._drag is None:
            super().mouseReleaseEvent(e)
            self.commit_moves()
            return
        port = self._drag[0]
        target = self._port_at(e.scenePos())
        node = self._node_at(e.scenePos())
        self._cancel_drag()
        block = None
        if target is None and node is None:           # on a folded block's body: its one input (output), else why not
            block = self.folds.at(e.scenePos())
            if block is None or block is port.parentItem():
                return
            ends = block.drop_ends(self.doc.graph, port)
            if isinstance(ends, str):
                return self._refuse(ends, e, block.scenePos())
        elif target is not None:
            ends = self._ends(port, target)
            if ends is None:
                self._refuse("connect an output (right) to an input (left)", e, target.scenePos())
                return
        elif port.is_output:
            ends = (port.node.name, node.name, None)
        else:
            ends = (node.name, port.node.name, None if port.extra else port.index)
        try:
            self.doc.connect(*ends)
            self.message.emit(f"connected {ends[0]} → {ends[1]}")
        except LayerboardError as err:
            self._refuse(f"cannot connect: {err}", e, (target or node or block).scenePos())

    def _refuse(self, text, e, at=None):
        """Say why in the status bar, in a tooltip and in a note on the canvas beside the target."""
        self.message.emit(text)
        self.show_note(text, at if at is not None else e.scenePos())
        if e.widget() is not None:
            QToolTip.showText(e.screenPos(), text, e.widget())

    def show_note(self, text, at):
        """Put a wrapped note at scene point `at` for NOTE_MS (replacing the previous one)."""
        self.clear_note()
        self.note = NoteItem(text, QPointF(at))
        self.addItem(self.note)
        self._note_timer.start(NOTE_MS)

    def clear_note(self):
        if self.note is not None:
            if self.note.scene() is self:
                self.removeItem(self.note)
            self.note = None

    def _cancel_drag(self):
        if self._drag is not None:
            self.removeItem(self._drag[1])
            self._drag = None
        if self._hot is not None:
            self._hot.set_hot(False)
            self._hot = None

    def commit_moves(self):
        """After a drag: one undoable move for every node the user displaced."""
        moved = {n: (it.pos().x(), it.pos().y()) for n, it in self.nodes.items()
                 if (it.pos().x(), it.pos().y()) != self.doc.pos(n)}
        moved.update(self.folds.moves())
        if moved:
            try:
                self.doc.move_nodes(moved)
            except LayerboardError as err:          # locked while training: snap back
                self.message.emit(str(err))
                for n in moved:
                    self._on_node_moved(n)
                self.folds.refresh()

    def mouseDoubleClickEvent(self, e):
        block = next((i for i in self.items(e.scenePos()) if isinstance(i, (BlockItem, BlockFrame))), None)
        if block is not None and self._node_at(e.scenePos()) is None:
            from .grouping import toggle
            return self.attempt(toggle, self.doc, block.name)
        node = self._node_at(e.scenePos())
        if node is not None:
            self.node_activated.emit(node.name)
        super().mouseDoubleClickEvent(e)
