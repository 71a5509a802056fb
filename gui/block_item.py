"""Blocks on the canvas: a folded block drawn as one node (name, layers, parameters, MACs, output shape, one port
per edge crossing its boundary and one per inner input nothing feeds yet) and a frame around an unfolded one
(gui/block_folds.py keeps them in step with the Document)."""
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem

from engine.errors import LayerboardError
from engine.layers import fmt

from .items import HEAD, LOD_TEXT, PORT_R, PortItem, human
from .layout import NODE_H as H, NODE_W as W
from .style import theme

BLOCK_COLOR = "#4a5878"     # a block's header: no layer category's colour
PAD = 14.0                  # frame margin around an unfolded block's layers
TITLE = 22.0                # height of an unfolded block's title bar


class Member:
    """What a BlockPort connects on the scene's side: the inner layer (`name`) behind the port, selected with its
    block."""

    category = "block"

    def __init__(self, name, block):
        self.name, self.block = name, block

    def isSelected(self):
        return self.block.isSelected()

    def scenePos(self):
        return self.block.scenePos()


class BlockPort(PortItem):
    """A folded block's port, a connection end like a layer's: the output of inner layer `member` (index -1), the
    input of the inner layer fed by outside node `src` (the next free input of it: `extra`), or, with src None, a
    free input of an inner layer: its input `index` (or its next one: `extra`), drawn hollow."""

    def __init__(self, block, index, member, src=None, extra=None):
        self.free = index >= 0 and src is None
        super().__init__(block, index, extra=index >= 0 if extra is None else extra)
        self.node, self.src = Member(member, block), src            # the scene connects the inner layer, not the block

    def tip(self):
        if self.is_output:
            return f"output of '{self.node.name}': drag to an input to connect it"
        if self.free:
            what = "an input" if self.extra else f"input {self.index + 1}"
            return f"{what} of '{self.node.name}', not connected: drop an output here to feed it"
        return f"input of '{self.node.name}' (fed by '{self.src}'): drop an output here to feed it too"

    def end(self):
        """(inner layer, input index or None) a connection into this input port makes."""
        return self.node.name, None if self.extra else self.index

    def restyle(self):
        c = QColor(BLOCK_COLOR)
        rim = c.lighter(170) if QColor(theme["node"]).lightness() < 128 else c    # seen on a dark node too
        self.setPen(QPen(QColor(theme["accent"]) if self.hot else rim, 2.4 if self.hot else 1.6))
        self.setBrush(c.lighter(130) if self.hot else QColor(theme["node"]) if self.free else c)

    def paint(self, p, option, widget=None):
        QGraphicsEllipseItem.paint(self, p, option, widget)


class BlockItem(QGraphicsItem):
    """A folded block: moves, selects and opens (double-click) as one node; its ports only show where edges go."""

    def __init__(self, name):
        super().__init__()
        self.name, self.members, self.summary = name, [], None
        self.inputs, self.outputs, self.free = (), (), ()
        self._key = None                  # (inputs, outputs, feeds, free) the port items were made for
        self.setFlags(QGraphicsItem.GraphicsItemFlag.ItemIsMovable | QGraphicsItem.GraphicsItemFlag.ItemIsSelectable
                      | QGraphicsItem.GraphicsItemFlag.ItemSendsGeometryChanges)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        self.origin = QPointF()           # its first layer's place: where the block stands in the Document
        self.category = "block"           # the minimap's colour

    @property
    def has_error(self):
        return bool(self.summary is not None and self.summary.errors)

    def boundingRect(self):
        return QRectF(-PORT_R - 2, -PORT_R - 2, W + 2 * PORT_R + 10, H + 2 * PORT_R + 10)

    def shape(self):
        p = QPainterPath()
        p.addRoundedRect(QRectF(0, 0, W, H), 8, 8)
        return p

    def set_state(self, members, ports_, summ, feeds=None, free=()):
        """feeds: {outside src: the first inner layer it feeds} (the layer an input port connects); free: the inner
        inputs nothing feeds ((layer, index or None), engine.blocks.free_inputs), one hollow port each."""
        self.members, self.summary = list(members), summ
        key = (ports_.inputs, ports_.outputs, feeds or {}, tuple(free))
        if key != self._key:                                   # the port items only change with the ports
            self.inputs, self.outputs, self.free, self._key = ports_.inputs, ports_.outputs, tuple(free), key
            self._ports(feeds or {})
        self.setToolTip(self.tooltip_text())
        self.update()

    def _ports(self, feeds):
        """One BlockPort per port, where paint draws it (a drag from or to it connects the inner layer)."""
        for it in self.childItems():
            if isinstance(it, BlockPort):
                it.setParentItem(None)
                if it.scene() is not None:
                    it.scene().removeItem(it)
        for i, src in enumerate(self.inputs):
            BlockPort(self, i, feeds.get(src, self.members[0] if self.members else ""), src).setPos(self._in_at(i))
        for i, (m, p) in enumerate(self.free):
            BlockPort(self, 0 if p is None else p, m, extra=p is None).setPos(self._in_at(len(self.inputs) + i))
        for i, o in enumerate(self.outputs):
            BlockPort(self, -1, o).setPos(QPointF(W, HEAD + (H - HEAD) * (i + 1) / (len(self.outputs) + 1)))

    def tooltip_text(self):
        s = self.summary
        lines = [f"Block '{self.name}': {s.layers} layers (double-click to open it)",
                 f"Parameters: {s.params:,}  ·  MACs per sample: {s.macs:,}",
                 "Inputs: " + (", ".join(self.inputs) or "none"),
                 *(["Not connected: " + ", ".join(m if p is None else f"{m} input {p + 1}" for m, p in self.free)]
                   if self.free else []),
                 "Outputs: " + ", ".join(f"{o} {fmt(sh) if sh else '?'}" for o, sh in zip(self.outputs, s.shapes))]
        if s.errors:
            lines.append(f"{s.errors} layer(s) inside have an error")
        return "\n".join(lines)

    def _in_at(self, i):
        """Where input port i stands: the crossing inputs first, then the free ones."""
        return QPointF(0, HEAD + (H - HEAD) * (i + 1) / (len(self.inputs) + len(self.free) + 1))

    def in_anchor(self, src):
        """Scene point of the input port fed by outside node `src`."""
        return self.mapToScene(self._in_at(self.inputs.index(src) if src in self.inputs else 0))

    def port_items(self):
        return [it for it in self.childItems() if isinstance(it, BlockPort)]

    def restyle(self):
        """After a theme switch: the ports' colours (the body reads the theme when it paints)."""
        for it in self.port_items():
            it.restyle()
        self.update()

    def drop_ends(self, graph, port):
        """(src, dst, input) a connection drag from `port` dropped on the block's body makes: into its one input
        that takes it (or from its one output, for a drag from an input); else a one-line refusal (a str)."""
        mine = self.port_items()
        if port.is_output:
            ends = list(dict.fromkeys((port.node.name, *p.end()) for p in mine if not p.is_output))
        else:
            ends = [(p.node.name, port.node.name, None if port.extra else port.index) for p in mine if p.is_output]
        ok = []
        for e in ends:
            try:
                graph.check_connect(*e)
                ok.append(e)
            except LayerboardError as err:
                why = str(err)
        if len(ok) == 1 or len(ends) == 1:
            return (ok or ends)[0]                              # one way in: connect says why if it cannot
        if not ok:
            side = "input" if port.is_output else "output"
            return (f"cannot connect: block '{self.name}' has no {side} that takes it"
                    + (f" ({why})" if ends else "") + "; open the block (double-click) to connect a layer inside")
        names = ", ".join((d if i is None else f"{d} input {i + 1}") if port.is_output else s for s, d, i in ok)
        return (f"block '{self.name}' has {len(ok)} {'inputs' if port.is_output else 'outputs'} that could take it "
                f"({names}): drop on one of its ports")

    def out_anchor(self, member):
        i = self.outputs.index(member) if member in self.outputs else 0
        return self.mapToScene(QPointF(W, HEAD + (H - HEAD) * (i + 1) / (len(self.outputs) + 1)))

    def paint(self, p, option, widget=None):
        c = QColor(BLOCK_COLOR)
        s = self.summary
        sel = self.isSelected()
        err = s is not None and s.errors
        pen = QPen(QColor(theme["accent"]) if sel else QColor(theme["error"]) if err else c.darker(115),
                   2.2 if sel else 1.2)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for k in (2, 1):                                      # the layers stacked behind: a block of several
            p.setPen(QPen(c.lighter(150), 1))
            p.setBrush(QColor(theme["node"]))
            p.drawRoundedRect(QRectF(4 * k, 4 * k, W, H), 8, 8)
        p.setPen(pen)
        p.setBrush(QColor(theme["node"]))
        p.drawRoundedRect(QRectF(0, 0, W, H), 8, 8)
        head = QPainterPath()
        head.setFillRule(Qt.FillRule.WindingFill)
        head.addRoundedRect(QRectF(0, 0, W, HEAD), 8, 8)
        head.addRect(QRectF(0, HEAD / 2, W, HEAD / 2))
        p.fillPath(head.simplified(), c)
        if s is None or option.levelOfDetailFromTransform(p.worldTransform()) < LOD_TEXT:
            return
        f = QFont(p.font())
        f.setPointSizeF(9)
        f.setBold(True)
        p.setFont(f)
        p.setPen(QColor("white"))
        p.drawText(QRectF(8, 0, W - 60, HEAD), Qt.AlignmentFlag.AlignVCenter, f"▸ {s.layers} layers")
        f.setBold(False)
        p.setFont(f)
        if s.params:
            p.drawText(QRectF(0, 0, W - 8, HEAD), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                       human(s.params))
        f.setBold(True)
        f.setPointSizeF(9.5)
        p.setFont(f)
        p.setPen(QColor(theme["node_text"]))
        p.drawText(QRectF(10, HEAD + 3, W - 20, 18), Qt.AlignmentFlag.AlignVCenter,
                   p.fontMetrics().elidedText(self.name, Qt.TextElideMode.ElideRight, int(W - 20)))
        f.setBold(False)
        f.setPointSizeF(8.5)
        p.setFont(f)
        p.setPen(QColor(theme["muted"]))
        p.drawText(QRectF(10, HEAD + 21, W - 20, 16), Qt.AlignmentFlag.AlignVCenter,
                   p.fontMetrics().elidedText(f"{human(s.macs)} MACs · {len(self.inputs) + len(self.free)} in · "
                                              f"{len(self.outputs)} out",
                                              Qt.TextElideMode.ElideRight, int(W - 20)))
        if err:
            p.setPen(QColor(theme["error"]))
            text = f"⚠ {s.errors} layer(s) with an error"
        else:
            p.setPen(QColor(theme["node_text"]))
            text = "→ " + " · ".join(fmt(sh) if sh else "?" for sh in s.shapes)
        p.drawText(QRectF(10, HEAD + 40, W - 20, 18), Qt.AlignmentFlag.AlignVCenter,
                   p.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, int(W - 20)))

    def itemChange(self, change, value):
        if change == QGraphicsItem.GraphicsItemChange.ItemPositionHasChanged and self.scene() is not None:
            folds = getattr(self.scene(), "folds", None)
            if folds is not None:
                folds.route_block(self.name)
        return super().itemChange(change, value)


class BlockFrame(QGraphicsItem):
    """A frame behind an unfolded block's layers, titled with its name; double-click the title to fold it."""

    def __init__(self, name):
        super().__init__()
        self.name, self.rect = name, QRectF()
        self.setZValue(-1)
        self.setToolTip(f"Block '{name}': double-click the title to fold it")

    def fit(self, rects):
        r = QRectF(rects[0])
        for x in rects[1:]:
            r = r.united(x)
        self.prepareGeometryChange()
        self.rect = r.adjusted(-PAD, -PAD - TITLE, PAD, PAD)

    def title_rect(self):
        return QRectF(self.rect.left(), self.rect.top(), self.rect.width(), TITLE)

    def boundingRect(self):
        return self.rect.adjusted(-2, -2, 2, 2)

    def shape(self):
        p = QPainterPath()
        p.addRect(self.title_rect())                   # only the title takes clicks: layers inside stay reachable
        return p

    def paint(self, p, option, widget=None):
        c = QColor(BLOCK_COLOR)
        fill = QColor(c)
        fill.setAlpha(18)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(c, 1.2, Qt.PenStyle.DashLine))
        p.setBrush(fill)
        p.drawRoundedRect(self.rect, 10, 10)
        f = QFont(p.font())
        f.setPointSizeF(9)
        f.setBold(True)
        p.setFont(f)
        p.setPen(c)
        p.drawText(self.title_rect().adjusted(10, 0, -10, 0), Qt.AlignmentFlag.AlignVCenter, f"▾ {self.name}")
