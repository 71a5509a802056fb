"""The model summary: per-layer shape, params, MACs (and receptive field/stride for conv nets) with totals."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QApplication, QDockWidget, QTableWidget, QTableWidgetItem

from engine.layers import fmt

from .style import theme


def rows(infos):
    """Header and text rows (with a totals row) for the table and for copying."""
    spatial = any(i.field for i in infos.values())
    head = ["name", "type", "output shape", "params", "MACs"] + (["receptive field", "stride"] if spatial else [])
    out = []
    for i in infos.values():
        shape = fmt(i.shape) if i.shape else ("error" if i.error else f"needs {i.blocked}")
        r = [i.name, i.type, shape, f"{i.params:,}", f"{i.macs:,}"]
        if spatial:
            r += [f"{i.field[0]}×{i.field[1]}" if i.field else "", f"{i.stride[0]}×{i.stride[1]}" if i.stride else ""]
        out.append(r)
    total = ["total", "", "", f"{sum(i.params for i in infos.values()):,}", f"{sum(i.macs for i in infos.values()):,}"]
    out.append(total + [""] * (len(head) - len(total)))
    return head, out


class SummaryTable(QTableWidget):
    """Read-only table; Ctrl+C copies the selected rows (or everything) as tab-separated text."""

    def keyPressEvent(self, e):
        if e.matches(QKeySequence.StandardKey.Copy):
            self.copy()
            return e.accept()
        super().keyPressEvent(e)

    def copy(self):
        QApplication.clipboard().setText(self.as_text(selected_only=True))

    def as_text(self, selected_only=False):
        rows_ = sorted({i.row() for i in self.selectedIndexes()}) if selected_only else []
        rows_ = rows_ or range(self.rowCount())
        head = [self.horizontalHeaderItem(c).text() for c in range(self.columnCount())]
        lines = ["\t".join(head)]
        for r in rows_:
            lines.append("\t".join(self.item(r, c).text() if self.item(r, c) else "" for c in range(self.columnCount())))
        return "\n".join(lines) + "\n"


class SummaryDock(QDockWidget):
    """Mirrors Document.validated; clicking a row asks to select that node."""

    node_clicked = Signal(str)

    def __init__(self, doc, parent=None):
        super().__init__("Model summary", parent)
        self.setObjectName("summary")
        self.doc = doc
        self.table = SummaryTable()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.setToolTip("Ctrl+C copies the selected rows (or the whole table) as tab-separated text")
        self.setWidget(self.table)
        self.table.cellClicked.connect(self._clicked)
        doc.validated.connect(self.update_table)
        self.update_table(doc.infos)

    def update_table(self, infos):
        head, data = rows(infos)
        t = self.table
        t.setColumnCount(len(head))
        t.setHorizontalHeaderLabels(head)
        t.setRowCount(len(data))
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        errs = {i.name: i.error for i in infos.values() if i.error}
        for r, row in enumerate(data):
            last = r == len(data) - 1
            for c, text in enumerate(row):
                it = QTableWidgetItem(text)
                if c >= 3:
                    it.setTextAlignment(right)
                if last:
                    f = it.font()
                    f.setBold(True)
                    it.setFont(f)
                elif row[0] in errs:
                    it.setForeground(QColor(theme["error"]))
                    it.setToolTip(errs[row[0]])
                t.setItem(r, c, it)
        t.resizeColumnsToContents()

    def _clicked(self, r, c):
        it = self.table.item(r, 0)
        if it is not None and it.text() in self.doc.graph.nodes:
            self.node_clicked.emit(it.text())
