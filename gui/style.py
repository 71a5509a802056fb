"""Themes (light, dark) for resources/styles/layerboard.qss, category colours and painted category icons."""
import re
from functools import lru_cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

from resources import path

THEMES = {
    "light": dict(window="#f4f5f7", panel="#eceef2", base="#ffffff", alt="#f7f8fa", text="#1f2430",
                  muted="#6b7280", border="#d5d9e0", hover="#e2e6ec", accent="#3b6fd8", accent_text="#ffffff",
                  error="#d23c3c", canvas="#fafbfc", grid="#e9ecf0", node="#ffffff", node_text="#1f2430",
                  edge="#8a94a6", edge_hover="#3b6fd8", ok="#2f8f5b"),
    "dark": dict(window="#1e2127", panel="#252930", base="#1a1d22", alt="#20242a", text="#dde1e8",
                 muted="#8b93a1", border="#3a404a", hover="#2f343d", accent="#5b8ef0", accent_text="#ffffff",
                 error="#ef5f5f", canvas="#1b1e23", grid="#242830", node="#2a2e36", node_text="#e3e7ee",
                 edge="#7c8698", edge_hover="#7aa5ff", ok="#4fbf7f"),
}

CATEGORY_COLORS = {
    "input": "#2f9e8f", "core": "#3b6fd8", "activation": "#e08a2e", "convolution": "#8a4fd0",
    "pooling": "#b05fb7", "recurrent": "#c4465a", "attention": "#d4a017", "normalization": "#3c9c4a",
    "regularization": "#7a8595", "merge": "#1f8fbf", "reshape": "#a0724a",
}

theme = dict(THEMES["light"])       # the active colours, read by the canvas items


def stylesheet(name="light"):
    """The stylesheet with the theme's colours filled in."""
    colours = dict(THEMES[name], icons=path("icons").as_posix())
    text = path("styles", "layerboard.qss").read_text(encoding="utf-8")
    return re.sub(r"@(\w+)", lambda m: colours.get(m.group(1), m.group(0)), text)


def apply_theme(app, name="light"):
    theme.clear()
    theme.update(THEMES[name])
    app.setStyle("Fusion")
    app.setStyleSheet(stylesheet(name))


def category_color(cat):
    return QColor(CATEGORY_COLORS.get(cat, "#7a8595"))


def _glyph(p, cat, s):
    """Draw the category's symbol in a square of side s (white on the category colour)."""
    path_ = QPainterPath()
    u = s / 16.0
    if cat == "input":                                     # arrow into a bar
        path_.moveTo(3 * u, 8 * u); path_.lineTo(10 * u, 8 * u)
        path_.moveTo(7 * u, 5 * u); path_.lineTo(10 * u, 8 * u); path_.lineTo(7 * u, 11 * u)
        path_.moveTo(13 * u, 4 * u); path_.lineTo(13 * u, 12 * u)
    elif cat == "core":                                    # fully connected 2 → 2
        for a in (5, 11):
            for b in (5, 11):
                path_.moveTo(4 * u, a * u); path_.lineTo(12 * u, b * u)
    elif cat == "activation":                              # a ReLU kink
        path_.moveTo(3 * u, 11 * u); path_.lineTo(8 * u, 11 * u); path_.lineTo(13 * u, 4 * u)
    elif cat == "convolution":                             # stacked feature maps
        path_.addRect(QRectF(3 * u, 6 * u, 7 * u, 7 * u)); path_.addRect(QRectF(6 * u, 3 * u, 7 * u, 7 * u))
    elif cat == "pooling":                                 # 2×2 grid → one cell
        path_.addRect(QRectF(3 * u, 3 * u, 10 * u, 10 * u))
        path_.moveTo(8 * u, 3 * u); path_.lineTo(8 * u, 13 * u); path_.moveTo(3 * u, 8 * u); path_.lineTo(13 * u, 8 * u)
    elif cat == "recurrent":                               # a loop
        path_.addEllipse(QPointF(8 * u, 8 * u), 4.5 * u, 4.5 * u)
        path_.moveTo(12.5 * u, 8 * u); path_.lineTo(14 * u, 6 * u)
    elif cat == "attention":                               # an eye
        path_.moveTo(2 * u, 8 * u); path_.quadTo(8 * u, 1 * u, 14 * u, 8 * u); path_.quadTo(8 * u, 15 * u, 2 * u, 8 * u)
        path_.addEllipse(QPointF(8 * u, 8 * u), 2 * u, 2 * u)
    elif cat == "normalization":                           # a bell curve
        path_.moveTo(2 * u, 12 * u); path_.cubicTo(6 * u, 12 * u, 6 * u, 3 * u, 8 * u, 3 * u)
        path_.cubicTo(10 * u, 3 * u, 10 * u, 12 * u, 14 * u, 12 * u)
    elif cat == "regularization":                          # a dropped-out column of dots
        for y in (4, 8, 12):
            path_.addEllipse(QPointF(5 * u, y * u), 1.3 * u, 1.3 * u)
        path_.moveTo(9 * u, 6 * u); path_.lineTo(13 * u, 10 * u); path_.moveTo(13 * u, 6 * u); path_.lineTo(9 * u, 10 * u)
    elif cat == "merge":                                   # two paths join
        path_.moveTo(3 * u, 4 * u); path_.quadTo(8 * u, 4 * u, 9 * u, 8 * u)
        path_.moveTo(3 * u, 12 * u); path_.quadTo(8 * u, 12 * u, 9 * u, 8 * u); path_.lineTo(13 * u, 8 * u)
    else:                                                  # reshape: a tall block → a wide one
        path_.addRect(QRectF(3 * u, 3 * u, 4 * u, 10 * u)); path_.addRect(QRectF(9 * u, 6 * u, 5 * u, 4 * u))
    p.setPen(QPen(QColor("white"), max(1.2, 1.4 * u), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                  Qt.PenJoinStyle.RoundJoin))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawPath(path_)


def paint_category(p, cat, rect):
    """Paint the category icon (rounded square + glyph) into rect with an active QPainter."""
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(category_color(cat))
    p.drawRoundedRect(rect, rect.width() * 0.22, rect.width() * 0.22)
    p.translate(rect.topLeft())
    _glyph(p, cat, rect.width())
    p.restore()


@lru_cache(maxsize=None)
def category_icon(cat):
    icon = QIcon()
    for s in (16, 24, 32):
        pm = QPixmap(s, s)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        paint_category(p, cat, QRectF(0, 0, s, s))
        p.end()
        icon.addPixmap(pm)
    return icon
