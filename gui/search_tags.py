"""Search ranges shown on the canvas: a ⌕ line under each layer with marked settings or in a repeated block.
It mirrors project.search (redrawn after every edit, undo and redo) and never edits the document."""
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsSimpleTextItem

from engine import structure

from .layout import NODE_H as H
from .search_marks import MARK
from .style import theme


def tags(search_field, nodes):
    """{node: text} for the nodes of `nodes` that ranges name: '⌕ units, rate' and '⌕ block × 1–4'."""
    out = {}
    for k, r in search_field.items():
        if structure.is_repeat(k):
            for n in r.get("repeat", ()):
                if n in nodes:
                    out.setdefault(n, []).append(f"block {structure.describe(r)}")
        else:
            n, _, hp = k.rpartition(".")
            if n in nodes:
                out.setdefault(n, []).append(hp)
    return {n: f"{MARK} " + ", ".join(v) for n, v in out.items()}


class SearchTags:
    """Keeps one tag item under each node item that a search range names."""

    def __init__(self, scene):
        self.scene, self.items = scene, {}
        scene.doc.changed.connect(self.refresh)
        self.refresh()

    def refresh(self):
        want = tags(self.scene.doc.project.search, self.scene.nodes)
        for n in list(self.items):
            it, node = self.items[n]
            if want.get(n) is None or self.scene.nodes.get(n) is not node:
                self._drop(it)
                del self.items[n]
        for n, text in want.items():
            if n in self.items:
                self.items[n][0].setText(text)
                continue
            node = self.scene.nodes[n]
            it = QGraphicsSimpleTextItem(text, node)
            it.setBrush(QColor(theme["accent"]))
            it.setPos(4, H + 3)
            self.items[n] = (it, node)

    @staticmethod
    def _drop(it):
        try:
            sc = it.scene()
            it.setParentItem(None)
            if sc is not None:
                sc.removeItem(it)
        except RuntimeError:                    # its node item went with the scene
            pass
