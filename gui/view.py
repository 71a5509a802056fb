"""The canvas view: drop layers from the palette, zoom (wheel), pan (middle button or Space+drag), fit (never
below a readable size), a minimap and find-a-layer for big graphs."""
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QGraphicsView, QLabel

from . import my_blocks
from .blocks import BLOCKS, insert_block
from .items import LOD_TEXT, PORT_R, H, W
from .navigate import Minimap, NodeFinder
from .style import theme

MIME = "application/x-layerboard-layer"
GRID = 24
READABLE = 0.75         # smallest zoom "Zoom to fit" and find-a-layer use: node text stays readable (≥ 9 px)


LOCKED_TEXT = ("Training: the graph is locked. Stop the run to add, delete, connect or change layers "
               "(moving blocks still works).")


class GraphView(QGraphicsView):
    """Shows a GraphScene; a dropped palette item becomes a node at the drop point."""

    zoomed = Signal(float)

    def __init__(self, scene, parent=None):
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        self.setRubberBandSelectionMode(Qt.ItemSelectionMode.IntersectsItemShape)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setAcceptDrops(True)
        self._pan = None
        self._space = False
        self.lock_banner = QLabel(LOCKED_TEXT, self)          # over the viewport, fixed while the canvas scrolls
        self.lock_banner.setObjectName("lock_banner")
        self.lock_banner.setWordWrap(True)
        self.lock_banner.setContentsMargins(10, 5, 10, 5)
        self.lock_banner.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)   # blocks still move
        self.lock_banner.hide()
        self.minimap = self.finder = None
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        scene.sceneRectChanged.connect(self._cover)           # the view's own scene rect (see _cover)
        doc = getattr(scene, "doc", None)
        if doc is not None:
            doc.locked_changed.connect(self.show_locked)
            self.show_locked(doc.locked)
            self.minimap = Minimap(self)
            self.finder = NodeFinder(self)

    def show_locked(self, on):
        """A banner across the top of the canvas while training locks the graph."""
        self.lock_banner.setStyleSheet(f"background: {theme['accent']}; color: {theme['accent_text']};"
                                       "font-weight: bold;")
        self.lock_banner.setVisible(bool(on))
        self._place_banner()

    def _place_banner(self):
        vp = self.viewport().geometry()
        self.lock_banner.setFixedWidth(vp.width())
        self.lock_banner.adjustSize()
        self.lock_banner.move(vp.left(), vp.top())
        self.lock_banner.raise_()

    def _cover(self, *_):
        """The view's scene rect holds the scene's items and what the viewport shows from its top-left corner now
        (as wide as without scroll bars, a pixel short: no scroll bar by rounding), so the view never centres a
        scene smaller than itself (which moved the whole graph when an edit grew the scene)."""
        s, size, tl = self.transform().m11(), self.maximumViewportSize(), self.mapToScene(QPoint(0, 0))
        vis = QRectF(tl.x(), tl.y(), (size.width() - 1) / s, (size.height() - 1) / s)
        r = self.scene().sceneRect().united(vis)
        if r != self.sceneRect():
            self.setSceneRect(r)

    def resizeEvent(self, e):
        super().resizeEvent(e)
        self._cover()
        self._place_banner()
        if self.minimap is not None:
            self.minimap.place()
            self.minimap.follow()

    def find(self):
        """Ctrl+F: a field over the canvas that lists the layers matching what one types."""
        self.finder.open()

    def focus_node(self, name):
        """Select layer `name` (opening the folded block it hides in) and centre it, zooming in to a readable size
        if the canvas is smaller."""
        sc = self.scene()
        from .grouping import reveal
        sc.attempt(reveal, sc.doc, name)                 # a layer hidden in a folded block: the block opens
        sc.select([name])
        if self.transform().m11() < READABLE:
            self.zoom(READABLE / self.transform().m11())
        self.centerOn(sc.nodes[name])

    # ---- drag and drop from the palette ----
    def dragEnterEvent(self, e):
        if e.mimeData().hasFormat(MIME):
            e.acceptProposedAction()
        else:
            e.ignore()

    dragMoveEvent = dragEnterEvent

    def dropEvent(self, e):
        if not e.mimeData().hasFormat(MIME):
            return e.ignore()
        type = bytes(e.mimeData().data(MIME)).decode()
        p = self.mapToScene(e.position().toPoint())
        e.acceptProposedAction()
        self.add_layer(type, p - QPointF(W / 2, H / 2))

    def free_spot(self, near=None):
        """Top-left corner of a node-sized place near `near` (default: the view centre) that overlaps no node."""
        if near is None:
            near = self.mapToScene(self.viewport().rect().center()) - QPointF(W / 2, H / 2)
        taken = [it.sceneBoundingRect().adjusted(-GRID / 2, -GRID / 2, GRID / 2, GRID / 2)
                 for it in self.scene().nodes.values()]
        dx, dy = W + GRID, H + GRID
        for ring in range(0, 40):                  # rings of candidate places around `near`, nearest first
            cells = sorted({(i, j) for i in range(-ring, ring + 1) for j in range(-ring, ring + 1)
                            if max(abs(i), abs(j)) == ring}, key=lambda c: (abs(c[1]), abs(c[0]), -c[0], c[1]))
            for i, j in cells:
                r = QRectF(near.x() + i * dx, near.y() + j * dy, W, H)
                if not any(r.intersects(t) for t in taken):
                    return r.topLeft()
        return near

    def add_layer(self, type, pos=None):
        """Add a node of `type` at pos (scene) or a free place near the view centre; select it; returns its name."""
        if pos is None:
            pos = self.free_spot()
        sc = self.scene()
        if type in BLOCKS or type.startswith(my_blocks.PREFIX):   # one undo step, fed by the one selected node
            sel = sc.selected_names()
            at, after = (round(pos.x()), round(pos.y())), sel[0] if len(sel) == 1 else None
            two = list(sel) if type in BLOCKS and len(sel) == 2 and BLOCKS[type].memory else None   # decoder: input, encoder
            names = sc.attempt(insert_block, sc.doc, type, at, after or two) if type in BLOCKS else \
                sc.attempt(my_blocks.insert, sc.doc, type[len(my_blocks.PREFIX):], at, after)
            if names:
                sc.select(names)
            return names[-1] if names else None
        name = sc.attempt(sc.doc.add_node, type, None, (round(pos.x()), round(pos.y())))
        if name:
            sc.select([name])
        return name

    # ---- zoom and pan ----
    def wheelEvent(self, e):
        if e.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            return super().wheelEvent(e)
        self.zoom(1.0015 ** e.angleDelta().y())

    def zoom(self, factor):
        s = self.transform().m11() * factor
        if 0.1 <= s <= 4:
            self.scale(factor, factor)
            self._cover()
            self.zoomed.emit(s)

    def zoom_to_fit(self):
        """The whole graph, at most 125 %; a graph that would be shown smaller than READABLE is shown at that
        zoom instead, from its input on (the minimap shows the rest)."""
        r = self.graph_rect()
        if r.isEmpty():
            return
        self.setSceneRect(r.adjusted(-1e5, -1e5, 1e5, 1e5))   # room to centre the graph; _cover trims it after
        self.resetTransform()
        self.fitInView(r.adjusted(-30, -30, 30, 30), Qt.AspectRatioMode.KeepAspectRatio)
        s = self.transform().m11()
        if s > 1.25 or s < READABLE:
            s = min(max(s, READABLE), 1.25)
            self.resetTransform()
            self.scale(s, s)
            self.centerOn(self._start_point(r, s))
        self._cover()
        self.zoomed.emit(self.transform().m11())

    def graph_rect(self):
        """The scene rectangle of every node and folded block, from their positions (a node is W × H, its ports
        reach PORT_R beyond): not itemsBoundingRect, which measures all 23,000 items of a 5,000-node graph."""
        sc = self.scene()
        its = list(sc.nodes.values()) + list(getattr(getattr(sc, "folds", None), "items", {}).values()) \
            if hasattr(sc, "nodes") else None
        if its is None:
            return sc.itemsBoundingRect()
        if not its:
            return QRectF()
        xs, ys = [it.x() for it in its], [it.y() for it in its]
        return QRectF(min(xs), min(ys), max(xs) - min(xs) + W, max(ys) - min(ys) + H).adjusted(
            -PORT_R, -PORT_R, PORT_R, PORT_R)

    def _start_point(self, r, s):
        """Where to centre the view at zoom s so that it shows the graph's input (top-left) corner first."""
        sc = self.scene()
        doc = getattr(sc, "doc", None)
        first = next((n for n, v in doc.graph.nodes.items() if v.type == "Input" and n in sc.nodes), None) \
            if doc is not None else None
        at = sc.nodes[first].sceneBoundingRect() if first else QRectF(r.topLeft(), r.topLeft())
        vw, vh = self.viewport().width() / s, self.viewport().height() / s

        def axis(lo, hi, start, span):
            if hi - lo + 60 <= span:
                return (lo + hi) / 2
            return min(max(start - 30 + span / 2, lo - 30 + span / 2), hi + 30 - span / 2)
        return QPointF(axis(r.left(), r.right(), at.left(), vw), axis(r.top(), r.bottom(), at.top(), vh))

    def keyPressEvent(self, e):
        if e.key() == Qt.Key.Key_Space and not e.isAutoRepeat():
            self._space = True
            self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        super().keyPressEvent(e)

    def keyReleaseEvent(self, e):
        if e.key() == Qt.Key.Key_Space and not e.isAutoRepeat():
            self._space = False
            self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        super().keyReleaseEvent(e)

    def mousePressEvent(self, e):
        if e.button() == Qt.MouseButton.MiddleButton:
            self._pan = e.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return e.accept()
        super().mousePressEvent(e)

    def mouseMoveEvent(self, e):
        if self._pan is not None:
            d = e.position() - self._pan
            self._pan = e.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            return e.accept()
        super().mouseMoveEvent(e)

    def mouseReleaseEvent(self, e):
        if self._pan is not None and e.button() == Qt.MouseButton.MiddleButton:
            self._pan = None
            self.unsetCursor()
            return e.accept()
        super().mouseReleaseEvent(e)

    def paintEvent(self, e):
        """Below the text zoom: no ports and no smoothing (a 5,000-node graph in sight stays under 50 ms)."""
        sc, detail = self.scene(), self.transform().m11() >= LOD_TEXT
        if hasattr(sc, "show_ports"):
            sc.show_ports(detail)
        if detail != bool(self.renderHints() & QPainter.RenderHint.Antialiasing):
            self.setRenderHint(QPainter.RenderHint.Antialiasing, detail)    # zoomed out: 6,000 curves, no smoothing
        super().paintEvent(e)

    def drawBackground(self, p, rect):
        """Canvas colour and a 24-px grid, painted from one cached tile (fast at any size)."""
        key = (theme["canvas"], theme["grid"])
        if getattr(self, "_tile_key", None) != key:
            tile = QPixmap(GRID, GRID)
            tile.fill(QColor(theme["canvas"]))
            tp = QPainter(tile)
            tp.setPen(QPen(QColor(theme["grid"]), 1))
            tp.drawLine(0, 0, GRID, 0)
            tp.drawLine(0, 0, 0, GRID)
            tp.end()
            self._tile, self._tile_key = tile, key
        if self.transform().m11() < 0.45:
            p.fillRect(rect, QColor(theme["canvas"]))
        else:
            p.fillRect(rect, QBrush(self._tile))
