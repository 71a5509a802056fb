"""The project's run records as a list; selecting two overlays their curves in the Compare view."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from .views.compare import describe


class RunList(QWidget):
    """Lists document.project.runs (newest last); emits chosen(list of records) on selection changes."""

    chosen = Signal(list)

    def __init__(self, document, parent=None):
        super().__init__(parent)
        self.doc = document
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Runs — select two to compare (Ctrl+click)")
        title.setStyleSheet("font-weight: bold;")
        box.addWidget(title)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setWordWrap(True)                      # whole run names, never cut
        self.list.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.list.itemSelectionChanged.connect(self._selected)
        box.addWidget(self.list)
        self._count = -1
        document.changed.connect(self.refresh)
        self.refresh()

    def refresh(self):
        runs = self.doc.project.runs
        if len(runs) == self._count and all(
                self.list.item(i).data(Qt.ItemDataRole.UserRole) is r for i, r in enumerate(runs)):
            return
        keep = {id(r) for r in self.selected()}
        self.list.blockSignals(True)
        self.list.clear()
        for r in runs:
            it = QListWidgetItem(describe(r))
            it.setData(Qt.ItemDataRole.UserRole, r)
            it.setToolTip("\n".join(r.get("findings", [])) or describe(r))
            self.list.addItem(it)
            it.setSelected(id(r) in keep)
        self.list.blockSignals(False)
        self._count = len(runs)
        self._selected()

    def selected(self):
        return [it.data(Qt.ItemDataRole.UserRole) for it in self.list.selectedItems()]

    def select(self, rows):
        """Select runs by index (for tests and scripted use)."""
        self.list.clearSelection()
        for i in rows:
            self.list.item(i).setSelected(True)

    def _selected(self):
        rows = sorted(self.list.row(it) for it in self.list.selectedItems())
        self.chosen.emit([self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in rows])
