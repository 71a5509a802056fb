"""A short-lived note on the canvas where something was refused."""
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem

from .style import theme


class NoteItem(QGraphicsItem):
    """A short-lived note on the canvas next to where something was refused (e.g. a connection), wrapped."""

    WIDTH = 260.0

    def __init__(self, text, pos):
        super().__init__()
        self.text = text
        self.setZValue(10)
        self.setPos(pos + QPointF(14, 10))
        self.font = QFont()
        self.font.setPointSizeF(9)
        fm = QFontMetricsF(self.font)
        r = fm.boundingRect(QRectF(0, 0, self.WIDTH, 1000), int(Qt.TextFlag.TextWordWrap), text)
        self.rect = QRectF(0, 0, min(self.WIDTH, r.width()) + 16, r.height() + 10)
        self.setToolTip(text)

    def boundingRect(self):
        return self.rect.adjusted(-1, -1, 1, 1)

    def paint(self, p, option, widget=None):
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(theme["error"]), 1.4))
        p.setBrush(QBrush(QColor(theme["node"])))
        p.drawRoundedRect(self.rect, 5, 5)
        p.setPen(QColor(theme["node_text"]))
        p.setFont(self.font)
        p.drawText(self.rect.adjusted(8, 5, -8, -5), int(Qt.TextFlag.TextWordWrap), self.text)
