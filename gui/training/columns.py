"""The column report of a table dataset as an editable table, and a chart of the selected column."""
import threading

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from engine.data import load
from engine.data.report import HEAD, column_counts
from engine.errors import LayerboardError


def reporting(hook):
    """engine.data.table.reporting, imported when a file is read (the table reader imports pyarrow)."""
    from engine.data.table import reporting as report
    return report(hook)


def editable():
    """{report key: the choices its combo box offers} (engine.data.columns imports pyarrow: only for tables)."""
    from engine.data.columns import ROLES, STRATEGIES, TYPES
    return {"type": TYPES, "role": ROLES, "strategy": STRATEGIES + ("0",)}


class ColumnTable(QWidget):
    """Type, role and missing-value strategy per column (each edit one undoable change of the dataset
    reference's "columns"), the counts of the report, and a histogram or bar chart of the selected column
    (counted in a background thread: a large column never freezes the window)."""

    counted = Signal(int, object)            # (request number, column counts or LayerboardError)

    def __init__(self, document, parent=None):
        super().__init__(parent)
        self.doc, self.report, self.ref = document, [], None
        self._asked, self._counts = 0, {}    # the latest request; counts kept per (reference, column)
        self.counted.connect(self._draw)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget()
        self.table.setMinimumHeight(120)
        self.table.setMaximumHeight(260)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.currentCellChanged.connect(lambda r, *_: self.plot_column(r))
        box.addWidget(self.table)
        self.chart = pg.PlotWidget()
        self.chart.setMaximumHeight(150)
        self.chart.setMouseEnabled(False, False)
        self.chart.hideButtons()
        box.addWidget(self.chart)
        self.caption = QLabel("")
        box.addWidget(self.caption)

    def show_report(self, ds, ref):
        """Fill the table from ds.report for the dataset reference ref."""
        self.report, self.ref = list(ds.report or []), dict(ref)
        t = self.table
        t.clear()
        t.setColumnCount(len(HEAD))
        t.setRowCount(len(self.report))
        t.setHorizontalHeaderLabels(list(HEAD))
        choices = editable()
        for i, c in enumerate(self.report):
            for j, key in enumerate(HEAD):
                key = "name" if key == "column" else key
                if key in choices and not (key == "strategy" and c["role"] != "feature"):
                    t.setCellWidget(i, j, self._combo(c["name"], key, c.get(key), choices[key]))
                else:
                    v = c.get(key)
                    t.setItem(i, j, QTableWidgetItem("" if v is None else f"{v:,}" if isinstance(v, int) else str(v)))
        t.resizeColumnsToContents()
        if self.report:
            t.setCurrentCell(0, 0)
            self.plot_column(0)

    def _combo(self, name, key, value, choices):
        b = QComboBox()
        b.addItems(list(choices))
        if str(value) not in choices:
            b.addItem(str(value))
        b.setCurrentText(str(value))
        b.setToolTip({"type": "How the column is read: number, category (one-hot), text (word ids), datetime, empty",
                      "role": "feature: fed to the model; target: predicted; time: orders rows; ignore: not used",
                      "strategy": "Missing cells: median or mean of the training rows (with a 0/1 'was missing' "
                                  "feature), drop the rows, a 'missing' level (categories), or a constant"}[key])
        b.activated.connect(lambda _i, b=b: self.edit(name, key, b.currentText()))
        return b

    def edit(self, name, key, value):
        """Set the column's type, role or strategy in the dataset reference: one undoable step."""
        from engine.data.columns import ROLES, STRATEGIES
        ref = dict(self.doc.project.dataset)
        cols = dict(ref.get("columns") or {})
        entry = cols.get(name, {})
        entry = dict(entry) if isinstance(entry, dict) else ({"role": entry} if entry in ROLES else {"type": entry})
        if key == "strategy":
            entry["missing"] = float(value) if value not in STRATEGIES else value
        elif key == "role" and value == "target":
            ref["target"] = name
            entry.pop("role", None)
        else:
            entry[key] = value
        cols[name] = entry
        ref["columns"] = {k: v for k, v in cols.items() if v}
        self.doc.set_dataset(ref)

    def plot_column(self, row):
        """Histogram (numbers) or bar chart (levels) of the column in `row`, counted from the cached table in a
        background thread (drawn when done; a later selection wins)."""
        self.chart.clear()
        self._asked += 1
        if not 0 <= row < len(self.report) or not self.ref:
            return
        name, ask, ref, base = self.report[row]["name"], self._asked, dict(self.ref), self.doc.project.base
        key = (repr(sorted(ref.items())), name)
        if key in self._counts:
            return self._draw(ask, self._counts[key])
        self.caption.setText(f"{name}: counting…")

        def run():
            try:
                c = dict(column_counts(ref, base, name), name=name, key=key)
            except LayerboardError as e:
                c = e
            except MemoryError:
                c = LayerboardError(f"{name}: the column does not fit in memory to be counted")
            try:
                self.counted.emit(ask, c)
            except RuntimeError:                   # the table is gone
                pass
        threading.Thread(target=run, name="column-counts", daemon=True).start()

    def _draw(self, ask, c):
        if ask != self._asked:                     # another column was selected meanwhile
            return
        if isinstance(c, Exception):
            self.caption.setText(str(c))
            return
        self._counts = {c["key"]: c}               # keep the latest: counts of a huge table's column are small
        name = c["name"]
        self.chart.clear()
        if c["kind"] == "hist":
            e = c["edges"]
            self.chart.addItem(pg.BarGraphItem(x0=e[:-1], x1=e[1:], height=c["counts"], brush="#5b8def"))
            self.chart.getAxis("bottom").setTicks(None)
        else:
            x = np.arange(len(c["counts"]))
            self.chart.addItem(pg.BarGraphItem(x=x, height=c["counts"], width=0.8, brush="#e0913b"))
            self.chart.getAxis("bottom").setTicks([[(i, str(v)[:12]) for i, v in enumerate(c["labels"])]])
        self.caption.setText(f"{name}: {int(np.sum(c['counts'])):,} values, {c['missing']:,} missing")


class Loader(QWidget):
    """Reads a dataset in a background thread with a progress bar and a Cancel button; emits
    done(key, dataset or LayerboardError) on the window's thread."""

    done = Signal(str, object)
    _progress = Signal(str, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop reading this file (nothing is kept in the cache)")
        self.cancel_btn.clicked.connect(self.cancel)
        row.addWidget(self.label)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_btn)
        self._progress.connect(self._show)
        self._stop = None
        app = QCoreApplication.instance()
        if app is not None:                        # quitting stops a read (the thread is joined at exit)
            app.aboutToQuit.connect(self.cancel)
        self.hide()

    def start(self, key, ref, base):
        """Read ref in a thread (a previous read still running is cancelled)."""
        self.cancel()
        stop = self._stop = threading.Event()
        self.label.setText("Reading…")
        self.bar.setValue(0)
        self.show()

        def hook(what, fraction):
            from engine.data.table import Cancelled
            if stop.is_set():
                raise Cancelled("reading cancelled")
            try:
                self._progress.emit(what, fraction)
            except RuntimeError:                   # the panel is gone
                raise Cancelled("reading cancelled") from None

        def run():
            try:
                if ref.get("kind") == "builtin":               # read without progress: no table reader needed
                    out = load(ref, base)
                else:
                    with reporting(hook):
                        out = load(ref, base)
            except LayerboardError as e:
                out = e
            except MemoryError:
                out = LayerboardError("the file does not fit in memory while it is read")
            try:
                self.done.emit(key, out)           # the panel ignores the result of a reference it left
            except RuntimeError:                   # the panel is gone
                pass
        threading.Thread(target=run, name="dataset-loader").start()

    def cancel(self):
        if self._stop is not None:
            self._stop.set()
        self.hide()

    def _show(self, what, fraction):
        self.label.setText({"reading": "Reading", "encoding": "Encoding"}.get(what, what))
        self.bar.setValue(int(1000 * fraction))
