"""Canvas items: a node (header, name, key hyperparameters, shape, params, error badge), its ports, edges."""
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem, QGraphicsPathItem

from engine.layers import REGISTRY, fmt

from .layout import NODE_H as H, NODE_W as W
from .note_item import NoteItem  # noqa: F401  (in gui.note_item; the scene and tests import it from here)
from .style import category_color, paint_category, theme

HEAD = 24.0
PORT_R = 6.0
LOD_TEXT = 0.5          # below this scale a node is a plain block and has no ports (its 9-pt text would be < 6 px)
SKIP = {"init", "bias_init", "use_bias", "eps", "momentum", "standardize"}
MOVED = QGraphicsItem.GraphicsItemChange.ItemPositionHasChanged      # looked up once: thousands of items
SELECTED = QGraphicsItem.GraphicsItemChange.ItemSelectedHasChanged
NODE_FLAGS = (QGraphicsItem.GraphicsItemFlag.ItemIsMovable | QGraphicsItem.GraphicsItemFlag.ItemIsSelectable
              | QGraphicsItem.GraphicsItemFlag.ItemSendsGeometryChanges)
_STYLES = {}            # (what, colours…) -> QPen / QBrush, shared by every port and edge (until the theme changes)


def _style(key, make):
    """A pen or brush made once per key (ports and edges of a 5,000-node graph share a few)."""
    v = _STYLES.get(key)
    if v is None:
        v = _STYLES[key] = make()
    return v


def key_hparams(type, config, limit=2):
    """A short line of the most telling hyperparameters, e.g. "units 256" or "k 3 · s 2 · same"."""
    parts = []
    for h in REGISTRY[type].hparams:
        if h.name in SKIP or h.kind in ("bool", "str"):
            continue
        v = config.get(h.name, h.default)
        if h.kind == "ints":
            v = v if isinstance(v, str) else "×".join(map(str, v))          # "auto": the dataset's shape
        elif h.kind == "float":
            v = f"{v:g}"
        short = {"kernel_size": "k", "stride": "s", "padding": "", "filters": "filters"}.get(h.name, h.name)
        both = h.name == "direction" and config.get("bidirectional")       # a bidirectional layer reads both ways
        parts.append("bidirectional" if both else f"{short} {v}".strip())
        if len(parts) == limit + (1 if type == "Conv2D" else 0):
            break
    return " · ".join(parts)


def head_title(fm, title, count):
    """The node header's type name elided to what is left of W after the icon (26 px), the parameter count
    `count` drawn right-aligned to W − 8 and a 6 px gap."""
    room = W - 34 - (fm.horizontalAdvance(count) + 6 if count else 22)
    return fm.elidedText(title, Qt.TextElideMode.ElideRight, int(room))


OPAQUE = "#59606b"      # header of an OnnxNode: ONNX node(s) kept as imported, run in onnxruntime, not trainable


def opaque_text(config):
    """'ONNX TopK, runs in onnxruntime, not trainable': what an OnnxNode is, for its tooltip."""
    return f"ONNX {config.get('op') or 'node'}, runs in onnxruntime, not trainable"


def human(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,}"


class PortItem(QGraphicsEllipseItem):
    """An input (index ≥ 0) or the output (index -1) of a node; `extra` marks a variadic 'one more' port."""

    def __init__(self, node, index, extra=False):
        super().__init__(-PORT_R, -PORT_R, 2 * PORT_R, 2 * PORT_R, node)
        self.node, self.index, self.extra, self.hot = node, index, extra, False
        self.setAcceptHoverEvents(True)
        self.setZValue(2)
        self.restyle()

    @property
    def is_output(self):
        return self.index < 0

    def tip(self):
        return ("output: drag to an input to connect" if self.index < 0 else
                ("drop here to add one more input" if self.extra else f"input {self.index + 1}"))

    def restyle(self):
        cat, hot, extra = self.node.category, self.hot, self.extra
        key = ("port", cat, hot, extra, theme["accent"], theme["node"])
        pen, brush = _style(key, lambda: (
            QPen(QColor(theme["accent"]) if hot else category_color(cat), 2.4 if hot else 1.6),
            QBrush(QColor(theme["node"]) if extra else (category_color(cat).lighter(130) if hot
                                                       else category_color(cat)))))
        self.setPen(pen)
        self.setBrush(brush)

    def set_hot(self, on):
        if on != self.hot:
            self.hot = on
            self.restyle()

    def hoverEnterEvent(self, e):
        self.setToolTip(self.tip())                         # set when the pointer arrives (cheaper than per port)
        self.set_hot(True)

    def hoverLeaveEvent(self, e):
        self.set_hot(False)

    def paint(self, p, option, widget=None):
        if option.levelOfDetailFromTransform(p.worldTransform()) < LOD_TEXT:     # zoomed out: the node's block
            return
        super().paint(p, option, widget)
        if self.extra:
            p.setPen(QPen(category_color(self.node.category), 1.4))
            p.drawLine(QPointF(-3, 0), QPointF(3, 0))
            p.drawLine(QPointF(0, -3), QPointF(0, 3))


class NodeItem(QGraphicsItem):
    """One layer on the canvas; it mirrors the Document and never edits the graph itself."""

    def __init__(self, name, type, vertical=False):
        super().__init__()
        self.name, self.layer_type, self.vertical = name, type, vertical
        self.category = REGISTRY[type].category
        self.config, self.info = {}, None
        self._texts = None                # the elided lines painted, made once per state (set_state clears it)
        self.in_ports, self.out_port = [], None
        self.setFlags(NODE_FLAGS)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        self.setCacheMode(QGraphicsItem.CacheMode.NoCache)   # a pixmap cache per node was re-rendered at every
        # zoom step and on first show: without it 5,000 nodes open and zoom faster (benchmarks/README.md)
        self.out_port = PortItem(self, -1)
        self.set_inputs(0)

    BOUNDS = QRectF(-PORT_R - 2, -PORT_R - 2, W + 2 * PORT_R + 4, H + 2 * PORT_R + 4)

    def boundingRect(self):
        return self.BOUNDS                      # asked for every node on every frame: made once

    def shape(self):
        p = QPainterPath()
        p.addRoundedRect(QRectF(0, 0, W, H), 8, 8)
        return p

    # ---- mirrored state ----
    def set_inputs(self, connected):
        """Lay out input ports: fixed count, or connected + 1 for variadic merge layers."""
        need = REGISTRY[self.layer_type].n_inputs
        count = connected + 1 if need is None else need
        while len(self.in_ports) > count:
            port = self.in_ports.pop()
            sc = port.scene()
            port.setParentItem(None)
            if sc is not None:
                sc.removeItem(port)
        while len(self.in_ports) < count:
            self.in_ports.append(PortItem(self, len(self.in_ports)))
        for i, port in enumerate(self.in_ports):
            extra = need is None and i == count - 1
            if extra != port.extra:
                port.extra = extra
                port.setToolTip(port.tip())
                port.restyle()
            frac = (i + 1) / (count + 1)
            port.setPos(QPointF(W * frac, 0) if self.vertical else QPointF(0, HEAD + (H - HEAD) * frac))
        self.out_port.setPos(QPointF(W / 2, H) if self.vertical else QPointF(W, HEAD + (H - HEAD) / 2))

    def set_vertical(self, on):
        self.vertical = on
        self.set_inputs(sum(1 for p in self.in_ports if not p.extra))

    def set_state(self, config, info):
        self.config, self.info, self._texts = dict(config), info, None
        self.update()

    def tooltip_text(self):
        """Type, doc, and the error with its fix (set when the pointer arrives: cheaper than on every edit)."""
        info = self.info
        tip = [f"{self.layer_type} '{self.name}' — {REGISTRY[self.layer_type].doc}"]
        if self.layer_type == "OnnxNode":
            tip[0] = f"{opaque_text(self.config)} ('{self.name}')"
        if info is not None and info.error:
            tip.append(f"Error: {info.error}" + (f"\nFix: {info.fix.text}" if info.fix else ""))
        elif info is not None and info.pending:
            tip.append(f"Shape {info.pending}: choose a dataset to see it")
        elif info is not None and info.blocked:
            tip.append(f"Waiting for '{info.blocked}', which has an error")
        elif self.scene() is not None and hasattr(self.scene(), "doc"):     # every number with its formula
            from .summary import formula_lines
            tip += formula_lines(self.scene().doc.graph, self.scene().doc.infos, self.name)
        return "\n".join(tip)

    def hoverEnterEvent(self, e):
        self.setToolTip(self.tooltip_text())
        super().hoverEnterEvent(e)

    @property
    def has_error(self):
        return bool(self.info is not None and self.info.error)

    def port_at(self, index):
        return self.out_port if index < 0 else self.in_ports[min(index, len(self.in_ports) - 1)]

    # ---- painting ----
    def paint(self, p, option, widget=None):
        opaque = self.layer_type == "OnnxNode"
        sel, err = self.isSelected(), self.has_error
        key = ("node", OPAQUE if opaque else self.category, sel, err, theme["accent"], theme["error"], theme["node"])
        c, pen, fill, red = _style(key, lambda: self._colours(opaque, sel, err))
        body = QRectF(0, 0, W, H)
        if option.levelOfDetailFromTransform(p.worldTransform()) < LOD_TEXT:   # text would be < 3 px: a block
            p.setPen(pen)
            p.setBrush(fill)
            p.drawRect(body)
            p.fillRect(QRectF(0, 0, W, HEAD), c)
            if err:
                p.fillRect(QRectF(0, HEAD, W, H - HEAD), red)
            return
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(pen)
        p.setBrush(QColor(theme["node"]))
        p.drawRoundedRect(body, 8, 8)
        if opaque:                                          # hatched: not a layer Layerboard computes or trains
            hatch = QColor(c)
            hatch.setAlpha(70)
            p.setBrush(QBrush(hatch, Qt.BrushStyle.BDiagPattern))
            p.drawRoundedRect(body, 8, 8)
        head = QPainterPath()
        head.setFillRule(Qt.FillRule.WindingFill)
        head.addRoundedRect(QRectF(0, 0, W, HEAD), 8, 8)
        head.addRect(QRectF(0, HEAD / 2, W, HEAD / 2))
        p.fillPath(head.simplified(), c)
        paint_category(p, self.category, QRectF(5, 4, 16, 16))
        f = QFont(p.font())
        f.setPointSizeF(9)
        f.setBold(True)
        p.setFont(f)
        p.setPen(QColor("white"))
        texts = self._texts
        if texts is None:                                   # made once per state, not on every frame
            texts = self._texts = {}
        info = self.info
        count = human(info.params) if info is not None and info.params else ""
        title = texts.get(("title", count))
        if title is None:                                   # elided before the parameter count, never under it
            title = f"ONNX {self.config.get('op', '')}" if opaque else self.layer_type
            title = texts[("title", count)] = head_title(p.fontMetrics(), title, count)
        p.drawText(QRectF(26, 0, W - 34, HEAD), Qt.AlignmentFlag.AlignVCenter, title)
        f.setBold(False)
        p.setFont(f)
        if count:
            p.drawText(QRectF(0, 0, W - 8, HEAD), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, count)
        text = QColor(theme["node_text"])
        muted = QColor(theme["muted"])
        f.setBold(True)
        f.setPointSizeF(9.5)
        p.setFont(f)
        p.setPen(text)
        if "name" not in texts:
            texts["name"] = p.fontMetrics().elidedText(self.name, Qt.TextElideMode.ElideRight, int(W - 20))
        p.drawText(QRectF(10, HEAD + 3, W - 20, 18), Qt.AlignmentFlag.AlignVCenter, texts["name"])
        f.setBold(False)
        f.setPointSizeF(8.5)
        p.setFont(f)
        p.setPen(muted)
        if "line" not in texts:
            line = "onnxruntime · not trainable" if opaque else (key_hparams(self.layer_type, self.config)
                                                                 or REGISTRY[self.layer_type].doc.split(";")[0])
            texts["line"] = p.fontMetrics().elidedText(line, Qt.TextElideMode.ElideRight, int(W - 20))
        p.drawText(QRectF(10, HEAD + 21, W - 20, 16), Qt.AlignmentFlag.AlignVCenter, texts["line"])
        if info is None:
            return
        if info.error:
            p.setPen(QColor(theme["error"]))
            msg = info.error
            for lead in (f"{self.layer_type} '{self.name}'", f"'{self.name}'"):
                if msg.startswith(lead):
                    msg = msg[len(lead):].lstrip(": ")
                    break
            shape = "⚠ " + msg
        elif info.pending:
            shape = info.pending if info.blocked is None else "waits for the dataset's shape"
        elif info.blocked:
            shape = f"needs {info.blocked}"
        else:
            p.setPen(text)
            shape = "→ " + fmt(info.shape)
        if "shape" not in texts:
            texts["shape"] = p.fontMetrics().elidedText(shape, Qt.TextElideMode.ElideRight, int(W - 20))
        p.drawText(QRectF(10, HEAD + 40, W - 20, 18), Qt.AlignmentFlag.AlignVCenter, texts["shape"])
        if info.error:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(theme["error"]))
            p.drawEllipse(QPointF(W - 2, 2), 9, 9)
            f.setBold(True)
            p.setFont(f)
            p.setPen(QColor("white"))
            p.drawText(QRectF(W - 11, -7, 18, 18), Qt.AlignmentFlag.AlignCenter, "!")

    def _colours(self, opaque, sel, err):
        """(header colour, border pen, body brush, error colour) of a node in this state."""
        c = QColor(OPAQUE) if opaque else category_color(self.category)
        pen = QPen(QColor(theme["accent"]) if sel else (QColor(theme["error"]) if err else c.darker(115)),
                   2.2 if sel else 1.2)
        return c, pen, QBrush(QColor(theme["node"])), QColor(theme["error"])

    def itemChange(self, change, value):
        if change == MOVED and self.scene() is not None:
            self.scene().node_geometry_changed(self.name)
        return value                            # what QGraphicsItem.itemChange returns (no round trip to Qt)


def around(a, b, vertical, out=24.0, r=10.0, lane=None):
    """Orthogonal path with rounded corners: out of a, across the gap midway between a and b (or along `lane`),
    into b."""
    if vertical:
        mx = lane if lane is not None else (a.x() + b.x()) / 2 if abs(a.x() - b.x()) > 2 * r else a.x() + W / 2 + 20
        pts = [a, QPointF(a.x(), a.y() + out), QPointF(mx, a.y() + out), QPointF(mx, b.y() - out),
               QPointF(b.x(), b.y() - out), b]
    else:
        my = lane if lane is not None else (a.y() + b.y()) / 2 if abs(a.y() - b.y()) > 2 * r else a.y() + H / 2 + 20
        pts = [a, QPointF(a.x() + out, a.y()), QPointF(a.x() + out, my), QPointF(b.x() - out, my),
               QPointF(b.x() - out, b.y()), b]
    path = QPainterPath(pts[0])
    for i in range(1, len(pts) - 1):
        p0, p1, p2 = pts[i - 1], pts[i], pts[i + 1]
        d0, d1 = p1 - p0, p2 - p1
        l0, l1 = max(abs(d0.x()) + abs(d0.y()), 1e-6), max(abs(d1.x()) + abs(d1.y()), 1e-6)
        k0, k1 = min(r, l0 / 2) / l0, min(r, l1 / 2) / l1
        path.lineTo(p1 - d0 * k0)
        path.quadTo(p1, p1 + d1 * k1)
    path.lineTo(pts[-1])
    return path


class EdgeItem(QGraphicsPathItem):
    """A connection src → dst:port drawn as a curve; highlights on hover, selectable for deletion."""

    def __init__(self, edge):
        super().__init__()
        self.edge, self.hot = edge, False
        self.setAcceptHoverEvents(True)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setZValue(0)
        self.restyle()

    def restyle(self):
        on = self.hot or self.isSelected()
        colour = theme["edge_hover"] if on else theme["edge"]
        self.setPen(_style(("edge", colour, on), lambda: QPen(QColor(colour), 3.2 if on else 1.8,
                                                              Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)))

    def route(self, a, b, vertical=False):
        back = (b.y() < a.y() + 20) if vertical else (b.x() < a.x() + 20)
        if back:                                    # a wrapped or backward edge: go around through the gap
            self.setPath(around(a, b, vertical))
            return
        skips = (b.y() - a.y() > H and abs(a.x() - b.x()) < W) if vertical else \
            (b.x() - a.x() > W and abs(a.y() - b.y()) < H)
        if skips:                                   # over the layers between: beside them, not under them
            lane = max(a.x(), b.x()) + W / 2 + 20 if vertical else max(a.y(), b.y()) + H / 2 + 8
            self.setPath(around(a, b, vertical, lane=lane))
            return
        path = QPainterPath(a)
        d = max(40.0, abs((b.y() - a.y()) if vertical else (b.x() - a.x())) * 0.5)
        if vertical:
            path.cubicTo(QPointF(a.x(), a.y() + d), QPointF(b.x(), b.y() - d), b)
        else:
            path.cubicTo(QPointF(a.x() + d, a.y()), QPointF(b.x() - d, b.y()), b)
        self.setPath(path)

    def shape(self):
        from PySide6.QtGui import QPainterPathStroker
        s = QPainterPathStroker()
        s.setWidth(10)
        return s.createStroke(self.path())

    def hoverEnterEvent(self, e):
        e_ = self.edge
        self.setToolTip(f"{e_.src} → {e_.dst} (input {e_.port + 1}); select and press Delete to remove")
        self.hot = True
        self.restyle()

    def hoverLeaveEvent(self, e):
        self.hot = False
        self.restyle()

    def itemChange(self, change, value):
        if change == SELECTED:
            self.restyle()
        return value
