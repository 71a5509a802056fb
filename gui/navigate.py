"""Finding one's way in a big graph: a minimap in the canvas corner and find-a-layer (Ctrl+F)."""
from PySide6.QtCore import QLineF, QModelIndex, QPointF, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QCompleter, QLineEdit, QWidget

from .layout import NODE_H, NODE_W
from .style import category_color, theme

MAP_SIZE = QSize(220, 150)
MAP_MARGIN = 12
REDRAW_MS = 120         # the overview is redrawn this long after the last edit of a burst


class Minimap(QWidget):
    """The whole graph in small, the visible part framed; click or drag on it to look there."""

    def __init__(self, view):
        super().__init__(view)
        self.view = view
        self.enabled = True               # View ▸ Minimap; shown only while part of the graph is out of sight
        self.bounds = QRectF()            # the scene rectangle the picture shows
        self._pix = None
        self.setFixedSize(MAP_SIZE)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Overview: click or drag to look at another part of the graph")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._drawn = {}                  # node -> (its rectangle in the picture, colour key) as last painted
        self._folded = ()                 # the folded blocks the picture shows
        doc = view.scene().doc
        for sig in (doc.reset, doc.node_added, doc.node_removed, doc.node_moved, doc.node_renamed,
                    doc.edge_added, doc.edge_removed):
            sig.connect(self.stale)       # the picture's layout changed: redrawn whole, once after a burst
        doc.validated.connect(self.recolour)    # after the scene restyled its items: repaint only those
        doc.changed.connect(self._check_folds)  # once per edit: a fold or unfold redraws the picture
        for bar in (view.horizontalScrollBar(), view.verticalScrollBar()):
            bar.valueChanged.connect(self.follow)
        view.zoomed.connect(self.follow)
        self.hide()

    def stale(self, *_):
        """Redraw REDRAW_MS after the last edit of a burst (never inside the edit itself)."""
        self._timer.start()

    def _check_folds(self):
        folds = getattr(self.view.scene(), "folds", None)
        if folds is not None and tuple(folds.items) != self._folded:
            self.stale()

    def recolour(self, *_):
        """Repaint in the picture the nodes whose colour (category, error) the last validation changed: a few
        rectangles instead of the whole graph (an edit on 5,000 nodes)."""
        sc = self.view.scene()
        if self._pix is None or self._timer.isActive() or sc is None:
            return                                          # a whole redraw is due anyway
        p = None
        for n in getattr(sc, "restyled", ()):
            drawn, it = self._drawn.get(n), sc.nodes.get(n)
            if drawn is None or it is None:
                continue
            key = "error" if it.has_error else it.category
            if key == drawn[1]:
                continue
            if p is None:
                p = QPainter(self._pix)
            p.fillRect(drawn[0], QColor(theme["error"]) if key == "error" else category_color(key))
            self._drawn[n] = (drawn[0], key)
        if p is not None:
            p.end()
            self.update()

    def redraw(self):
        """Paint the nodes (in their category colours) and edges once into a picture the frame is drawn over."""
        sc = self.view.scene()
        folds = getattr(sc, "folds", None)
        unit = folds.unit if folds is not None else {}    # a layer inside a folded block: drawn as the block
        items = {n: it for n, it in sc.nodes.items() if n not in unit} if sc is not None and self.enabled else {}
        if items and folds is not None:
            items.update(folds.items)
        self._timer.stop()
        self._folded = tuple(folds.items) if folds is not None else ()
        if not items:
            self.bounds, self._pix, self._drawn = QRectF(), None, {}
            return self.follow()
        xy = {n: (it.x(), it.y()) for n, it in items.items()}
        xs, ys = [x for x, _ in xy.values()], [y for _, y in xy.values()]
        self.bounds = QRectF(min(xs), min(ys), max(xs) - min(xs) + NODE_W, max(ys) - min(ys) + NODE_H) \
            .adjusted(-40, -40, 40, 40)
        self.place()
        dpr = self.devicePixelRatioF()
        pix = QPixmap(self.size() * dpr)
        pix.setDevicePixelRatio(dpr)
        pix.fill(Qt.GlobalColor.transparent)
        k, ox, oy = self._scale()
        ox, oy = ox - self.bounds.x() * k, oy - self.bounds.y() * k          # map = scene * k + (ox, oy)
        cx, cy = ox + NODE_W / 2 * k, oy + NODE_H / 2 * k
        at = {n: (x * k, y * k) for n, (x, y) in xy.items()}
        p = QPainter(pix)
        p.setPen(QPen(QColor(theme["edge"]), 1))
        ends = {(unit.get(e.src, e.src), unit.get(e.dst, e.dst)) for e in sc.edges}
        p.drawLines([QLineF(at[a][0] + cx, at[a][1] + cy, at[b][0] + cx, at[b][1] + cy)
                     for a, b in ends if a != b and a in at and b in at])
        p.setPen(Qt.PenStyle.NoPen)
        w, h = max(NODE_W * k, 2.0), max(NODE_H * k, 2.0)
        groups, self._drawn = {}, {}
        for n, it in items.items():
            key, r = "error" if it.has_error else it.category, QRectF(at[n][0] + ox, at[n][1] + oy, w, h)
            groups.setdefault(key, []).append(r)
            self._drawn[n] = (r, key)
        for cat, rects in groups.items():
            p.setBrush(QColor(theme["error"]) if cat == "error" else category_color(cat))
            p.drawRects(rects)
        p.end()
        self._pix = pix
        self.follow()

    def _scale(self):
        """(scene → map factor, x offset, y offset): the bounds fitted into the widget, centred."""
        b = self.bounds
        k = min((self.width() - 8) / max(b.width(), 1.0), (self.height() - 8) / max(b.height(), 1.0))
        return k, (self.width() - b.width() * k) / 2, (self.height() - b.height() * k) / 2

    def visible_rect(self):
        """The part of the scene the canvas shows now."""
        return self.view.mapToScene(self.view.viewport().rect()).boundingRect()

    def follow(self, *_):
        """Show the map while part of the graph is out of sight (and it is switched on); reframe it."""
        want = self.enabled and not self.bounds.isEmpty() and not self.visible_rect().contains(
            self.bounds.adjusted(30, 30, -30, -30))
        if want != self.isVisible():
            self.setVisible(want)
            self.place()
        self.update()

    def place(self):
        """Bottom-right corner of the canvas, shaped like the graph, at most MAP_SIZE and a quarter of the canvas."""
        vp = self.view.viewport().geometry()
        bw, bh = min(MAP_SIZE.width(), vp.width() * 0.28), min(MAP_SIZE.height(), vp.height() * 0.4)
        b = self.bounds
        if not b.isEmpty():
            k = min((bw - 8) / b.width(), (bh - 8) / b.height())
            bw, bh = max(b.width() * k + 8, 48), max(b.height() * k + 8, 36)
        if (int(bw), int(bh)) != (self.width(), self.height()):
            self.setFixedSize(int(bw), int(bh))
            if self._pix is not None:
                self.stale()
        self.move(vp.right() - self.width() - MAP_MARGIN, vp.bottom() - self.height() - MAP_MARGIN)
        self.raise_()

    def set_enabled(self, on):
        self.enabled = bool(on)
        self.redraw() if on else self.follow()

    def to_scene(self, pos):
        k, ox, oy = self._scale()
        return QPointF(self.bounds.x() + (pos.x() - ox) / k, self.bounds.y() + (pos.y() - oy) / k)

    def paintEvent(self, e):
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        bg = QColor(theme["node"])
        bg.setAlpha(235)
        p.setPen(QPen(QColor(theme["grid"]).darker(130), 1))
        p.setBrush(bg)
        p.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
        if self._pix is None or self.bounds.isEmpty():
            return
        p.drawPixmap(0, 0, self._pix)
        k, ox, oy = self._scale()
        v = self.visible_rect()
        frame = QRectF(ox + (v.x() - self.bounds.x()) * k, oy + (v.y() - self.bounds.y()) * k, v.width() * k,
                       v.height() * k).intersected(QRectF(self.rect()).adjusted(1, 1, -1, -1))
        fill = QColor(theme["accent"])
        fill.setAlpha(40)
        p.setBrush(fill)
        p.setPen(QPen(QColor(theme["accent"]), 1.6))
        p.drawRect(frame)

    def mousePressEvent(self, e):
        if e.button() == Qt.MouseButton.LeftButton:
            self.view.centerOn(self.to_scene(e.position()))
        e.accept()

    def mouseMoveEvent(self, e):
        if e.buttons() & Qt.MouseButton.LeftButton:
            self.view.centerOn(self.to_scene(e.position()))
        e.accept()

    def mouseReleaseEvent(self, e):
        e.accept()

    def wheelEvent(self, e):
        e.accept()                          # not the canvas's zoom under a map that stays put


class NodeFinder(QLineEdit):
    """Find a layer by part of its name or type; the one chosen is selected and centred."""

    def __init__(self, view):
        super().__init__(view)
        self.view = view
        self.setPlaceholderText("Find a layer by name or type…  (Esc closes)")
        self.setClearButtonEnabled(True)
        self.setFixedWidth(340)
        self.model = QStandardItemModel(self)
        self.completer = QCompleter(self.model, self)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setMaxVisibleItems(14)
        self.setCompleter(self.completer)
        self.completer.activated[QModelIndex].connect(self._activated)
        self.returnPressed.connect(self._enter)
        self.hide()

    def open(self):
        """Show the field at the top of the canvas with every layer listed, text selected for typing."""
        sc = self.view.scene()
        self.model.clear()
        for name, it in sc.nodes.items():
            row = QStandardItem(f"{name}  ·  {it.layer_type}")
            row.setData(name, Qt.ItemDataRole.UserRole)
            self.model.appendRow(row)
        vp = self.view.viewport().geometry()
        self.move(vp.left() + MAP_MARGIN, vp.top() + MAP_MARGIN)
        self.show()
        self.raise_()
        self.setFocus()
        self.selectAll()

    def matches(self, text):
        """Names of the layers whose name or type contains `text` (any case), in canvas order."""
        t = text.strip().lower()
        sc = self.view.scene()
        return [n for n, it in sc.nodes.items() if t in f"{n}  ·  {it.layer_type}".lower()]

    def _activated(self, index):
        self.go(index.data(Qt.ItemDataRole.UserRole))

    def _enter(self):
        text = self.text().split("  ·  ")[0]
        found = self.matches(text)
        exact = [n for n in found if n == text.strip()]
        if exact or found:
            self.go((exact or found)[0])
        else:
            self.view.scene().message.emit(f"no layer's name or type contains '{text.strip()}'")

    def go(self, name):
        """Select layer `name`, centre it (zoomed in to a readable size if needed) and close the field."""
        if name not in self.view.scene().nodes:
            return
        self.hide()
        self.view.focus_node(name)
        self.view.setFocus()

    def keyPressEvent(self, e):
        if e.key() == Qt.Key.Key_Escape:
            self.hide()
            self.view.setFocus()
            return e.accept()
        super().keyPressEvent(e)

