"""The diff of two runs drawn over the canvas: added, changed and removed layers coloured, removed layers that
are not on the canvas drawn as ghosts where they stood, a legend with Clear. View state only: nothing here
edits the document (the scene mirrors it; this only decorates the scene's items)."""
from PySide6.QtCore import QEvent, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import (QFrame, QGraphicsPathItem, QGraphicsSimpleTextItem, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout)

from .layout import NODE_H as H, NODE_W as W

COLOURS = {"added": "#2e9d4a", "changed": "#e08a00", "removed": "#d23c3c"}
PAD = 7.0


def marks(d, canvas_nodes):
    """{node: (state, note)} for the nodes of a rundiff.diff on the canvas, and the removed ones not on it."""
    out, ghosts = {}, []
    for n in d["nodes"]["added"]:
        if n in canvas_nodes:
            out[n] = ("added", "+ added")
    for n, ch in d["nodes"]["changed"].items():
        if n in canvas_nodes:
            out[n] = ("changed", "~ " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in ch.items()))
    for n in d["nodes"]["removed"]:
        if n in canvas_nodes:
            out[n] = ("removed", "− removed")
        else:
            ghosts.append(n)
    return out, ghosts


def _outline(rect, colour, width, dashed=False, fill=None):
    path = QPainterPath()
    path.addRoundedRect(rect, 10, 10)
    it = QGraphicsPathItem(path)
    pen = QPen(QColor(colour), width)
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    it.setPen(pen)
    it.setBrush(QBrush(fill) if fill is not None else Qt.BrushStyle.NoBrush)
    return it


class DiffLegend(QFrame):
    """Top-right of the canvas: what the colours mean, the layers not on the canvas, and Clear."""

    def __init__(self, view, overlay):
        super().__init__(view)
        self.setObjectName("diff_legend")
        self.setStyleSheet("#diff_legend { background: rgba(255, 255, 255, 235); border: 1px solid #9aa1ad; "
                           "border-radius: 6px; } QLabel { color: #1f2430; background: transparent; }")
        box = QVBoxLayout(self)
        box.setContentsMargins(10, 6, 10, 6)
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold;")
        box.addWidget(self.title)
        row = QHBoxLayout()
        for state, c in COLOURS.items():
            lab = QLabel(f"<span style='color:{c}'>■</span> {state}")
            row.addWidget(lab)
        box.addLayout(row)
        self.extra = QLabel()
        self.extra.setWordWrap(True)
        box.addWidget(self.extra)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(overlay.clear)
        box.addWidget(self.clear_button)
        self.setFixedWidth(280)
        self.hide()
        view.viewport().installEventFilter(self)        # follow the canvas's size

    def eventFilter(self, obj, ev):
        if ev.type() == QEvent.Type.Resize and self.isVisible():
            self.place()
        return False

    def place(self):
        vp = self.parentWidget().viewport().geometry()
        self.adjustSize()
        self.move(vp.right() - self.width() - 12, vp.top() + 12)


class DiffOverlay:
    """Colours a GraphScene's node items after a run diff; clear() takes every decoration away."""

    def __init__(self, scene, view):
        self.scene, self.view = scene, view
        self.items, self.state = [], {}
        self.legend = DiffLegend(view, self)
        scene.doc.reset.connect(self.clear)             # another project: the diff no longer applies

    @property
    def shown(self):
        return bool(self.state) or not self.legend.isHidden()

    def show(self, d, graph_a, title=""):
        """Decorate the canvas with diff d (rundiff.diff of runs a → b); graph_a places the ghosts."""
        self.clear()
        self.state, ghosts = marks(d, set(self.scene.nodes))
        for n, (state, note) in self.state.items():
            node = self.scene.nodes[n]
            ring = _outline(QRectF(-PAD, -PAD, W + 2 * PAD, H + 2 * PAD), COLOURS[state], 4.0,
                            dashed=state == "removed")
            ring.setParentItem(node)                    # moves with the node; under its body
            ring.setFlag(ring.GraphicsItemFlag.ItemStacksBehindParent)
            tag = QGraphicsSimpleTextItem(note[:60], node)
            tag.setBrush(QColor(COLOURS[state]))
            tag.setPos(0, -PAD - 18)
            self.items += [ring, tag]
        where = {n["name"]: n.get("meta", {}) for n in graph_a.get("nodes", [])}
        types = {n["name"]: n.get("type", "") for n in graph_a.get("nodes", [])}
        placed = []
        for n in ghosts:
            m = where.get(n, {})
            x, y = float(m.get("x", 0)), float(m.get("y", 0))
            g = _outline(QRectF(0, 0, W, H), COLOURS["removed"], 2.0, dashed=True, fill=QColor(210, 60, 60, 40))
            g.setPos(x, y)
            g.setZValue(0.5)
            label = QGraphicsSimpleTextItem(f"− {n}\n{types.get(n, '')} (removed)", g)
            label.setBrush(QColor(COLOURS["removed"]))
            label.setPos(10, 10)
            g.setToolTip(f"{types.get(n, '')} '{n}' was in the first run, not in the second")
            self.scene.addItem(g)
            self.items.append(g)
            placed.append(n)
        counts = {s: sum(v[0] == s for v in self.state.values()) for s in COLOURS}
        counts["removed"] += len(placed)
        self.legend.title.setText(title or "Run diff")
        missing = [n for n in d["nodes"]["added"] + list(d["nodes"]["changed"]) if n not in self.scene.nodes]
        lines = [f"{counts['added']} added, {counts['changed']} changed, {counts['removed']} removed"]
        if placed:
            lines.append("Removed layers are drawn as dashed ghosts: " + ", ".join(placed))
        if missing:
            lines.append("Not on this canvas: " + ", ".join(missing))
        if d.get("training"):
            lines.append("Settings: " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in list(d["training"].items())[:4])
                         + (", …" if len(d["training"]) > 4 else ""))
        self.legend.extra.setText("\n".join(lines))
        self.legend.show()
        self.legend.raise_()
        self.legend.place()

    def clear(self):
        """Take the colours, ghosts and legend away."""
        for it in self.items:
            try:
                sc = it.scene()
                if it.parentItem() is not None:
                    it.setParentItem(None)
                if sc is not None:
                    sc.removeItem(it)
            except RuntimeError:                         # its node item was deleted with the scene
                pass
        self.items, self.state = [], {}
        self.legend.hide()
