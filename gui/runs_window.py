"""The run history window: every recorded run in a sortable, filterable table; curves of the selected runs
overlaid, a parallel-coordinates plot of settings → score, the diff of two runs, and Open run."""
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPlainTextEdit, QPushButton,
                               QSplitter, QTableView, QTabWidget, QVBoxLayout, QWidget)

from engine.history import History, HistoryError
from engine.rundiff import diff, lines

FIXED = ("id", "project", "status", "started", "epochs", "seconds", "params", "macs")
SCORES = ("val_loss", "val_accuracy", "val_rmse", "val_mae", "val_r2", "train_loss", "train_accuracy")


class RunsModel(QAbstractTableModel):
    """Runs as rows; columns: the fixed ones, then every varying training setting, then the final scores."""

    def __init__(self, runs=(), parent=None):
        super().__init__(parent)
        self.set_runs(list(runs))

    def set_runs(self, runs):
        self.beginResetModel()
        self.runs = runs
        settings = sorted({k for r in runs for k in r["training"]})
        vary = [k for k in settings if len({repr(r["training"].get(k)) for r in runs}) > 1]
        self.settings = vary or settings[:6]
        self.scores = [k for k in SCORES if any(k in r["result"] for r in runs)]
        self.columns = list(FIXED) + self.settings + self.scores
        cols = range(len(self.columns))
        self.text = [" ".join(str(self.value(r, c)) for c in cols).lower() for r in range(len(runs))]   # for filters
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.runs)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.columns)

    def value(self, row, col):
        r, k = self.runs[row], self.columns[col]
        if k in FIXED:
            return r[k]
        if k in self.settings:
            return r["training"].get(k)
        return r["result"].get(k)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        v = self.value(index.row(), index.column())
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        k = self.columns[index.column()]
        if v is None:
            return "–"
        if k == "started":
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(v))
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, int) and k in ("params", "macs"):
            return f"{v:,}"
        return str(v)

    def sort(self, column, order=Qt.SortOrder.AscendingOrder):
        """Reorder the runs by one column: numbers as numbers, text as text, missing values last."""
        def key(r):
            v = self.value(r, column)
            if v is None:
                return (2, 0, "")
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            return (0, v, "") if num else (1, 0, str(v))
        rows = sorted(range(len(self.runs)), key=key, reverse=order == Qt.SortOrder.DescendingOrder)
        self.beginResetModel()
        self.runs, self.text = [self.runs[i] for i in rows], [self.text[i] for i in rows]
        self.endResetModel()

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section].replace("_", " ")
        return None


class RunsFilter(QSortFilterProxyModel):
    """Rows whose text contains every word of the filter (any column); 'status' narrows to one status.
    Sorting is the source model's (one Python sort, not a comparison callback per pair)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.words, self.status = [], ""

    def sort(self, column, order=Qt.SortOrder.AscendingOrder):
        self.sourceModel().sort(column, order)

    def set_filter(self, text, status=""):
        if hasattr(self, "beginFilterChange"):                      # Qt ≥ 6.10
            self.beginFilterChange()
            self.words, self.status = text.lower().split(), status
            self.endFilterChange()
        else:
            self.words, self.status = text.lower().split(), status
            self.invalidateFilter()

    def filterAcceptsRow(self, row, parent):
        m = self.sourceModel()
        if self.status and m.runs[row]["status"] != self.status:
            return False
        return all(w in m.text[row] for w in self.words)


class RunsWindow(QWidget):
    """The run history of every project (or of one), from the SQLite database engine.history keeps."""

    open_run = Signal(dict, dict)           # (run, graph dict): the window restores graph, settings and weights
    show_diff = Signal(dict, dict, str)     # (rundiff.diff, first run's graph, title): coloured on the canvas

    def __init__(self, path=None, project=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Run history")
        self.path, self.project, self.history = path, project, None
        box = QVBoxLayout(self)
        top = QHBoxLayout()
        self.search = QLineEdit(placeholderText="Filter runs: words in any column, e.g. adam completed")
        self.search.textChanged.connect(self._filter)
        self.status = QComboBox()
        self.status.addItems(["any status", "completed", "early_stopped", "stopped", "pruned", "diverged",
                              "interrupted", "failed", "running"])
        self.status.currentTextChanged.connect(self._filter)
        self.count = QLabel()
        reload = QPushButton("Reload")
        reload.clicked.connect(self.reload)
        self.open_button = QPushButton("Open run")
        self.open_button.setToolTip("Restore the selected run's graph, settings and weights in the window")
        self.open_button.clicked.connect(self._open)
        self.canvas_button = QPushButton("Show on canvas")
        self.canvas_button.setToolTip("Colour the layers the second selected run added, changed or removed")
        self.canvas_button.setEnabled(False)
        self.canvas_button.clicked.connect(self._show_diff)
        for w in (self.search, self.status, self.count, reload, self.open_button, self.canvas_button):
            top.addWidget(w, 1 if w is self.search else 0)
        box.addLayout(top)
        split = QSplitter(Qt.Orientation.Vertical)
        self.model, self.proxy = RunsModel(), RunsFilter()
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setResizeContentsPrecision(40)   # widths from 40 rows, not every run
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)   # no per-row size hints
        self.table.selectionModel().selectionChanged.connect(self._selected)
        split.addWidget(self.table)
        self.tabs = QTabWidget()
        curves = QWidget()
        cbox = QVBoxLayout(curves)
        self.metric_box = QComboBox()
        self.metric_box.currentTextChanged.connect(self._selected)
        cbox.addWidget(self.metric_box)
        self.curves = pg.PlotWidget(background="w")
        self.curves.addLegend(offset=(-10, 10))
        self.curves.setLabel("bottom", "epoch")
        cbox.addWidget(self.curves, 1)
        self.tabs.addTab(curves, "Curves")
        self.parallel = pg.PlotWidget(background="w")
        self.parallel.hideAxis("left")
        self.tabs.addTab(self.parallel, "Settings → score")
        self.diff = QPlainTextEdit(readOnly=True)
        self.diff.setPlaceholderText("Select two runs to see what changed between them.")
        self.tabs.addTab(self.diff, "Diff")
        split.addWidget(self.tabs)
        box.addWidget(split, 1)
        self.resize(1000, 700)
        self.reload()

    def reload(self):
        try:
            if self.history is None:
                self.history = History(self.path)
            runs = self.history.runs(self.project)
        except HistoryError as e:
            self.count.setText(str(e))
            return
        self.model.set_runs(runs)
        self.metric_box.blockSignals(True)
        self.metric_box.clear()
        self.metric_box.addItems([k for k in ("val_loss", "train_loss", "val_accuracy", "val_rmse", "val_r2")
                              if k in self.model.scores] or ["train_loss"])
        self.metric_box.blockSignals(False)
        self.table.resizeColumnsToContents()
        self._filter()
        self._parallel()

    def _filter(self, *_):
        st = self.status.currentText()
        self.proxy.set_filter(self.search.text(), "" if st == "any status" else st)
        self.count.setText(f"{self.proxy.rowCount()} of {self.model.rowCount()} runs")

    def selected(self):
        rows = sorted({self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.runs[r] for r in rows]

    def _selected(self, *_):
        runs = self.selected()
        self.curves.clear()
        metric = self.metric_box.currentText()
        self.curves.setLabel("left", metric.replace("_", " "))
        for i, r in enumerate(runs[:12]):
            ys = self.history.curves(r["id"]).get(metric, [])
            if ys:
                self.curves.plot(np.arange(1, len(ys) + 1), np.array([np.nan if v is None else v for v in ys], float),
                                 pen=pg.mkPen(pg.intColor(i, 12), width=2), name=f"run {r['id']}")
        self.last_diff = None
        if len(runs) == 2:
            a, b = runs
            ga = self.history.graph(a["id"])
            d = diff(a, b, ga, self.history.graph(b["id"]))
            self.last_diff = (d, ga, f"run {a['id']} → run {b['id']}")
            self.diff.setPlainText(f"run {a['id']} → run {b['id']}\n" + "\n".join(lines(d)))
        self.open_button.setEnabled(len(runs) == 1)
        self.canvas_button.setEnabled(len(runs) == 2)

    def _parallel(self):
        """One polyline per run across the numeric settings that vary, then the score (axes scaled to 0…1)."""
        self.parallel.clear()
        runs, score = self.model.runs, next((k for k in ("val_loss", "train_loss") if k in self.model.scores), None)
        axes = [k for k in self.model.settings if all(isinstance(r["training"].get(k), (int, float)) for r in runs)]
        if not runs or score is None or not axes:
            return
        cols = [[r["training"][k] for r in runs] for k in axes] + [[r["result"].get(score) for r in runs]]
        names = axes + [score]
        m = np.array([[np.nan if v is None else float(v) for v in c] for c in cols])      # (axes, runs)
        logs = [i for i, k in enumerate(names) if k in ("lr", "weight_decay") and np.nanmin(m[i]) > 0]
        m[logs] = np.log10(m[logs])
        lo, hi = np.nanmin(m, 1, keepdims=True), np.nanmax(m, 1, keepdims=True)
        z = (m - lo) / np.where(hi > lo, hi - lo, 1)                 # (axes, runs) in 0…1
        band = np.where(np.isfinite(z[-1]), np.minimum((z[-1] * 6).astype(int), 5), 6)   # score bands, one item each
        x = np.arange(len(names) + 1, dtype=float)
        x[-1] = np.nan
        for b in range(7):
            cols_b = z[:, band == b]
            if cols_b.shape[1]:                                        # polylines joined by NaN breaks
                y = np.vstack([cols_b, np.full((1, cols_b.shape[1]), np.nan)]).T.ravel()
                colour = (128, 128, 128, 90) if b == 6 else (40 * b + 20, 90, 255 - 40 * b, 110)
                self.parallel.plot(np.tile(x, cols_b.shape[1]), y, pen=pg.mkPen(colour), connect="finite")
        ax = self.parallel.getAxis("bottom")
        ax.setTicks([[(i, n + (" (log)" if i in logs else "")) for i, n in enumerate(names)]])

    def _show_diff(self):
        if getattr(self, "last_diff", None) is not None:
            self.show_diff.emit(*self.last_diff)

    def _open(self):
        runs = self.selected()
        if len(runs) == 1:
            self.open_run.emit(runs[0], self.history.graph(runs[0]["id"]))
