"""The model summary: per-layer shape, params, MACs (and receptive field/stride for conv nets) with totals."""
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QFont, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QApplication, QDockWidget, QTableView

from engine.shapes import table

from .style import theme


class SummaryModel(QAbstractTableModel):
    """The rows of engine.shapes.table(infos); resetting it is cheap, the view asks only for what it shows."""

    def __init__(self):
        super().__init__()
        self.head, self.data_, self.errors = [], [], {}

    def set_infos(self, infos):
        self.beginResetModel()
        self.head, self.data_ = table(infos)
        self.errors = {i.name: i.error for i in infos.values() if i.error}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.data_)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.head)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.head[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        r, c = index.row(), index.column()
        row = self.data_[r]
        last = r == len(self.data_) - 1
        if role == Qt.ItemDataRole.DisplayRole:
            return row[c]
        if role == Qt.ItemDataRole.TextAlignmentRole and c >= 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and last:
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.ForegroundRole and not last and row[0] in self.errors:
            return QColor(theme["error"])
        if role == Qt.ItemDataRole.ToolTipRole and not last and row[0] in self.errors:
            return self.errors[row[0]]
        return None


class SummaryTable(QTableView):
    """Read-only table; Ctrl+C copies the selected rows (or everything) as tab-separated text."""

    def keyPressEvent(self, e):
        if e.matches(QKeySequence.StandardKey.Copy):
            self.copy()
            return e.accept()
        super().keyPressEvent(e)

    def copy(self):
        QApplication.clipboard().setText(self.as_text(selected_only=True))

    def as_text(self, selected_only=False):
        m = self.model()
        rows_ = sorted({i.row() for i in self.selectedIndexes()}) if selected_only else []
        rows_ = rows_ or range(m.rowCount())
        lines = ["\t".join(m.head)] + ["\t".join(m.data_[r]) for r in rows_]
        return "\n".join(lines) + "\n"


class SummaryDock(QDockWidget):
    """Mirrors Document.validated; clicking a row asks to select that node."""

    node_clicked = Signal(str)

    def __init__(self, doc, parent=None):
        super().__init__("Model summary", parent)
        self.setObjectName("summary")
        self.doc = doc
        self.table = SummaryTable()
        self.model = SummaryModel()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setResizeContentsPrecision(60)
        self.table.setToolTip("Ctrl+C copies the selected rows (or the whole table) as tab-separated text")
        self.setWidget(self.table)
        self.table.clicked.connect(lambda ix: self._clicked(ix.row()))
        doc.validated.connect(self.update_table)
        self.update_table(doc.infos)

    def update_table(self, infos):
        n = self.model.rowCount()
        self.model.set_infos(infos)
        if n != self.model.rowCount():
            self.table.resizeColumnsToContents()

    def _clicked(self, r):
        name = self.model.data_[r][0] if r < len(self.model.data_) else None
        if name in self.doc.graph.nodes:
            self.node_clicked.emit(name)
