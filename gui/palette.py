"""The layer palette: registry types grouped by category, searchable; drag onto the canvas or double-click."""
from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QDockWidget, QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from engine.layers import CATEGORIES, REGISTRY

from . import my_blocks
from .blocks import BLOCKS
from .style import category_icon
from .view import MIME

TYPE_ROLE = Qt.ItemDataRole.UserRole


def my_doc(b):
    """A saved block's tooltip: its layers in order."""
    types = [n.get("type", "?") for n in b["nodes"]]
    return f"{len(types)} layers: " + " → ".join(types[:8]) + (" …" if len(types) > 8 else "")


def mime_for(type):
    m = QMimeData()
    m.setData(MIME, type.encode())
    m.setText(type)
    return m


class PaletteTree(QTreeWidget):
    """Tree of layer types; dragging one carries the MIME type application/x-layerboard-layer."""

    def __init__(self):
        super().__init__()
        self.setHeaderHidden(True)
        self.setDragEnabled(True)
        self.setIndentation(12)
        self.setRootIsDecorated(True)
        self.populate()

    def populate(self):
        self.clear()
        by_cat = {}
        for t, cls in REGISTRY.items():
            if not cls.palette:                   # made only by an import (OnnxNode)
                continue
            by_cat.setdefault(cls.category, []).append(t)
        for cat in CATEGORIES:
            if cat not in by_cat:
                continue
            group = QTreeWidgetItem(self, [cat.capitalize()])
            group.setIcon(0, category_icon(cat))
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            f = group.font(0)
            f.setBold(True)
            group.setFont(0, f)
            for t in by_cat[cat]:
                it = QTreeWidgetItem(group, [t])
                it.setData(0, TYPE_ROLE, t)
                it.setIcon(0, category_icon(cat))
                it.setToolTip(0, f"<b>{t}</b><br>{REGISTRY[t].doc}")
        self._blocks()
        self.expandAll()

    def _blocks(self):
        """Connected sub-graphs (e.g. a Transformer encoder block) whose layer types are all registered."""
        ready = [b for b in BLOCKS.values() if b.available]
        if ready:
            group = QTreeWidgetItem(self, ["Blocks"])
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            for b in ready:
                it = QTreeWidgetItem(group, [b.title])
                it.setData(0, TYPE_ROLE, b.title)
                it.setToolTip(0, f"<b>{b.title}</b><br>{b.doc}")
        mine = my_blocks.load()
        if mine:                              # saved by the user (Save block to palette), for every project
            group = QTreeWidgetItem(self, ["My blocks"])
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            for b in mine:
                it = QTreeWidgetItem(group, [b["title"]])
                it.setData(0, TYPE_ROLE, my_blocks.PREFIX + b["title"])
                it.setToolTip(0, f"<b>{b['title']}</b><br>{my_doc(b)}")

    def filter(self, text):
        text = text.strip().lower()
        for i in range(self.topLevelItemCount()):
            g = self.topLevelItem(i)
            shown = 0
            for j in range(g.childCount()):
                it = g.child(j)
                t = it.data(0, TYPE_ROLE)
                doc = (REGISTRY[t].doc if t in REGISTRY else BLOCKS[t].doc if t in BLOCKS else t).lower()
                hit = not text or text in t.lower() or text in doc or text in g.text(0).lower()
                it.setHidden(not hit)
                shown += hit
            g.setHidden(shown == 0)

    def mimeTypes(self):
        return [MIME]

    def mimeData(self, items):
        types = [it.data(0, TYPE_ROLE) for it in items if it.data(0, TYPE_ROLE)]
        return mime_for(types[0]) if types else None

    def startDrag(self, actions):
        it = self.currentItem()
        t = it.data(0, TYPE_ROLE) if it else None
        if not t:
            return
        drag = QDrag(self)
        drag.setMimeData(mime_for(t))
        drag.setPixmap(it.icon(0).pixmap(24, 24))
        drag.exec(Qt.DropAction.CopyAction)


class PaletteDock(QDockWidget):
    """Dock holding the search box and the layer tree; emits add_requested(type) on double-click."""

    add_requested = Signal(str)

    def __init__(self, parent=None):
        super().__init__("Layers", parent)
        self.setObjectName("palette")
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(6, 6, 6, 6)
        self.search = QLineEdit(placeholderText="Search layers…", clearButtonEnabled=True)
        self.tree = PaletteTree()
        lay.addWidget(self.search)
        lay.addWidget(self.tree)
        self.setWidget(w)
        self.search.textChanged.connect(self.tree.filter)
        self.tree.itemDoubleClicked.connect(self._double)

    def _double(self, it, col):
        t = it.data(0, TYPE_ROLE)
        if t:
            self.add_requested.emit(t)
