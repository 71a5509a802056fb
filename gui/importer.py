"""Opening an ONNX model in the window: the import runs in a thread (the window stays live), the model opens as
an untitled project with its weights as the trained model; what cannot be mapped is listed in one dialog."""
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QHeaderView, QLabel, QProgressBar,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout)

from engine.errors import LayerboardError

from .grouping import fold_and_place
from .layout import choose, layered
from .view import READABLE

OPENS = (".json", ".onnx")          # what File ▸ Open and a drop on the window accept


def dropped_files(mime):
    """Local .json / .onnx paths among a drag's URLs."""
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and Path(u.toLocalFile()).suffix.lower() in OPENS]


def place(graph, width, height, readable):
    """Lay every node out for a width × height canvas shown at zoom ≥ readable (meta x, y); True if the layout
    runs top to bottom. Qt-free."""
    vertical, wrap, planned = choose(graph, width, height, readable)
    for n, (x, y) in layered(graph, vertical, wrap=wrap, planned=planned).items():
        m = graph.nodes[n].meta
        m.pop("pos", None)                                  # the engine importer's own layout: ours replaces it
        m["x"], m["y"] = round(x), round(y)
    return vertical


def load_onnx(path, width, height, readable):
    """(Project, trained Model, vertical, kept nodes) of an ONNX file, laid out for a width × height canvas shown at zoom
    ≥ readable. Qt-free (it runs in the import thread); ImportFailed/LayerboardError if it cannot be opened."""
    from engine.model import Model
    from engine.onnx_import import import_project
    project, weights, kept = import_project(path)
    vertical = fold_and_place(project.graph, width, height, readable)       # repeated blocks offered folded
    model = Model(project.graph.copy())
    model.set_weights({**model.weights(), **weights}, where=f"the weights in {Path(path).name}")
    return project, model, vertical, kept


class OnnxOpener(QObject):
    """Runs one import at a time for the window; a newer request supersedes an older one's result."""

    finished = Signal(object)           # (ticket, result or exception), from the thread to the window's

    def __init__(self, win):
        super().__init__(win)
        self.win = win
        self.ticket = 0                 # the request whose result is wanted
        self.running = None             # path being imported, or None
        self.dialog = None              # the last failure dialog
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)        # "busy", no percentage: onnx reading has no progress to report
        self.busy.setMaximumWidth(140)
        self.busy.hide()
        win.statusBar().insertPermanentWidget(0, self.busy)   # beside, not under, the "importing…" message
        self.finished.connect(self._finished, Qt.ConnectionType.QueuedConnection)

    def canvas(self):
        """(width, height, smallest zoom) the layout of a new graph is made for."""
        vp = self.win.view.viewport().size()
        return max(vp.width(), 400), max(vp.height(), 300), READABLE

    def place_unplaced(self, project):
        """Lay out a project whose nodes have no canvas position (e.g. written by `layerboard import`); returns
        whether it runs top to bottom, or None if it had positions."""
        if all("x" in v.meta and "y" in v.meta for v in project.graph.nodes.values()):
            return None
        return fold_and_place(project.graph, *self.canvas())

    def start(self, path):
        """Begin importing `path`; the window says so and stays usable. False if it cannot start."""
        win = self.win
        if win.doc.locked:
            win.show_message("stop the training run first")
            return False
        self.ticket += 1
        ticket, self.running = self.ticket, str(path)
        self._before = (win.doc.project, win.doc.undo_stack.index())
        size = self.canvas()
        self.busy.show()
        win.statusBar().showMessage(f"importing {Path(path).name}…")
        threading.Thread(target=self._run, args=(ticket, str(path), size), name="onnx-import", daemon=True).start()
        return True

    def _run(self, ticket, path, size):
        try:
            result = load_onnx(path, *size)
        except LayerboardError as e:
            result = e
        except Exception as e:          # a bug of the importer: still one line, never a traceback
            result = LayerboardError(f"cannot import {Path(path).name}: the importer failed "
                                     f"({type(e).__name__}: {e})")
        try:
            self.finished.emit((ticket, path, result))
        except RuntimeError:            # the window closed meanwhile
            pass

    def _finished(self, msg):
        ticket, path, result = msg
        if ticket != self.ticket:       # superseded by a newer request
            return
        self.running = None
        self.busy.hide()
        win = self.win
        win.statusBar().clearMessage()
        if isinstance(result, Exception):
            self.dialog = ProblemsDialog(path, result, win)
            self.dialog.open()
            return
        project, model, vertical, kept = result
        if (win.doc.project, win.doc.undo_stack.index()) != self._before and not win.maybe_save():
            win.show_message(f"did not open {Path(path).name}: the project was edited while it was imported")
            return
        if not win._replace(project, model):
            return
        win.untitled_name = f"{Path(path).stem}.json"
        win.scene.set_vertical(vertical)
        win.view.zoom_to_fit()
        win._add_recent(str(Path(path).resolve()))
        from engine.onnx_import_multi import report
        io = report(project.graph)                                      # time-major inputs, mask inputs, outputs
        win.show_message(f"imported {Path(path).name}: {len(project.graph.nodes)} layers with their weights; "
                         + (kept_text(kept) if kept else "Save writes the project and its weights")
                         + (". How its inputs and outputs map to the ONNX file's: see the Training panel" if io else ""))


class ProblemsDialog(QDialog):
    """Why a model could not be imported: one line, and every ONNX node without a mapping (op, name, why)."""

    def __init__(self, path, error, parent=None):
        super().__init__(parent)
        name = Path(path).name
        problems = list(getattr(error, "problems", []) or [])
        self.setWindowTitle(f"Cannot import {name}")
        lay = QVBoxLayout(self)
        head = (f"{len(problems)} node(s) of {name} have no Layerboard layer, so the model was not opened. "
                "Your current project is unchanged." if problems else f"{error} Your current project is unchanged.")
        self.label = QLabel(head)
        self.label.setWordWrap(True)
        lay.addWidget(self.label)
        self.table = QTableWidget(len(problems), 3)
        self.table.setHorizontalHeaderLabels(["Operator", "Node", "Why"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, row in enumerate(problems):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(str(text)))
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        hh.setStretchLastSection(True)
        self.table.setVisible(bool(problems))
        lay.addWidget(self.table)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy list")
        copy.setVisible(bool(problems))
        copy.clicked.connect(self.copy)
        bb.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self.resize(760, 420 if problems else 160)

    def rows(self):
        """[(op, node, why)] as the table shows them."""
        return [tuple(self.table.item(r, c).text() for c in range(3)) for r in range(self.table.rowCount())]

    def copy(self):
        QApplication.clipboard().setText("\n".join("\t".join(r) for r in self.rows()))


def kept_text(kept):
    """One line on the ONNX nodes kept as they are (op and name each)."""
    names = ", ".join(f"{op} '{n}'" for op, n, _, _ in kept[:4]) + (f" and {len(kept) - 4} more" if len(kept) > 4 else "")
    return f"{len(kept)} ONNX node(s) kept as they are ({names}): they run in onnxruntime and are not trainable"


def defer(fn, *args):
    """Run fn(*args) once the current event (e.g. a drop) has returned."""
    QTimer.singleShot(0, lambda: fn(*args))
