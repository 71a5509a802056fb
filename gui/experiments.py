"""The main window's Tools menu: the run history, the search window, the Try-it panel and Evaluate on the
held-out test split."""
import threading

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDockWidget, QMessageBox

from engine.errors import LayerboardError
from engine.project import Project, training_config
from engine.graph import Graph

from .diff_overlay import DiffOverlay
from .search_marks import apply_trial
from .search_tags import SearchTags


class Relay(QObject):
    """Carries a background result to the GUI thread."""

    done = Signal(object)


class Experiments:
    """Owns the windows of the Tools menu of one main window."""

    def __init__(self, win):
        self.win, self.doc = win, win.doc
        self.runs = self.search = self.diff = None
        self._tryit = None                              # the panel is built when its dock is first shown
        self.tryit_dock = QDockWidget("Try it", win)
        self.tryit_dock.setObjectName("tryit")
        win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.tryit_dock)
        self.tryit_dock.hide()
        self.tryit_dock.visibilityChanged.connect(lambda on: on and self.tryit)
        self.doc.trained_changed.connect(self.refresh_tryit)
        self.doc.reset.connect(lambda: self._tryit is not None and self._tryit.set_model(None))
        self.tags = SearchTags(win.scene)               # ⌕ under layers with marked search ranges
        self.relay = Relay()
        self.relay.done.connect(self._evaluated)

    def install(self, menubar):
        t = menubar.addMenu("&Tools")
        self.win._act(t, "Run &history…", self.show_runs, "Ctrl+H",
                      tip="Every training run recorded, with its settings, curves and scores")
        self.win._act(t, "&Search settings…", self.show_search,
                      tip="Try settings with Optuna; Apply takes a trial's settings as one undoable step")
        t.addAction(self.tryit_dock.toggleViewAction())
        self.tryit_dock.toggleViewAction().setText("&Try it")
        self.win._act(t, "&Evaluate on the test split", self.evaluate,
                      tip="Metrics of the trained model on the held-out test split (training setting test_split)")
        return t

    # ---- run history ----
    def show_runs(self):
        if self.runs is None:
            from .runs_window import RunsWindow            # pyqtgraph: imported when first needed
            self.runs = RunsWindow()
            self.runs.open_run.connect(self.open_run)
            self.runs.show_diff.connect(self.show_diff)
        else:
            self.runs.reload()
        self.runs.show()
        self.runs.raise_()

    def show_diff(self, d, graph_a, title):
        """Colour the run diff on the canvas (view state: the document is not edited)."""
        if self.diff is None:
            self.diff = DiffOverlay(self.win.scene, self.win.view)
        self.diff.show(d, graph_a, title)
        self.win.raise_()
        self.win.show_message(f"{title}: coloured on the canvas (Clear in its legend)")

    def open_run(self, run, graph):
        """Restore a recorded run's graph, settings and dataset (and its weights file when it still exists)."""
        try:
            p = Project(Graph.from_dict(graph), training_config(run["training"]), dict(run["dataset"]),
                        name=run["project"])
        except LayerboardError as e:
            self.win.show_message(f"run {run['id']} cannot be opened: {e}")
            return
        trained = None
        if run.get("weights"):
            from engine.model import Model
            from engine.weights import load_into
            try:
                trained = Model(p.graph.copy())
                load_into(trained, run["weights"])
            except (LayerboardError, OSError, ValueError):
                trained = None
        if self.win.maybe_save() and self.win._replace(p, trained):
            self.win.show_message(f"opened run {run['id']} of {run['project']}"
                                  + ("" if trained is not None else " (its weights file is gone: train again)"))

    # ---- search ----
    def show_search(self):
        p = self.doc.project
        if p.path is None:
            QMessageBox.information(self.win, "Search", "Save the project first: the search's worker processes "
                                                        "read it from its file.")
            return
        if self.doc.dirty and not self.win.maybe_save():
            return
        from .search_window import SearchWindow            # optuna's window: imported when first opened
        self.search = SearchWindow(p)
        self.search.apply.connect(self.apply_trial)
        self.search.show()

    def apply_trial(self, values):
        try:
            apply_trial(self.doc, values, self.search.space if self.search is not None else None)
        except LayerboardError as e:
            self.win.show_message(f"cannot apply the trial: {e}")
            return
        self.win.show_message("applied: " + ", ".join(f"{k} = {v}" for k, v in values.items()) + " (Ctrl+Z undoes it)")

    # ---- try it ----
    @property
    def tryit(self):
        """The Try-it panel (built now if it was not yet)."""
        if self._tryit is None:
            from .tryit_panel import TryItPanel
            self._tryit = TryItPanel()
            self.tryit_dock.setWidget(self._tryit)
            self.refresh_tryit()
        return self._tryit

    def refresh_tryit(self):
        if self._tryit is None:                          # built later with the model of that moment
            return
        m = self.doc.trained
        job = getattr(self.win.training, "job", None) if self.win.training is not None else None
        val = getattr(getattr(job, "trainer", None), "val", None)
        classes = m.meta.get("classes") if m is not None else None
        if classes is None and val is not None and getattr(val, "classes", None):
            classes = list(val.classes)
        self.tryit.set_model(m, classes, val)

    # ---- evaluate ----
    def evaluate(self):
        """Evaluate the trained model on the project's test split in a background thread."""
        p, m = self.doc.project, self.doc.trained
        if not p.training.get("test_split"):
            QMessageBox.information(self.win, "Evaluate", "This project keeps no test split: set Test split in "
                                                          "the training settings (e.g. 0.1), train, then evaluate.")
            return
        if m is None or not self.doc.trained_fits():
            QMessageBox.information(self.win, "Evaluate", "Train the model first (the trained model must match "
                                                          "the graph on the canvas).")
            return
        self.win.show_message("evaluating on the test split…")
        weights = m.weights()

        def work():
            from engine.session import evaluate_test, prepare
            try:
                _, tr = prepare(p, weights=weights)
                self.relay.done.emit(evaluate_test(tr))
            except LayerboardError as e:
                self.relay.done.emit(str(e))
        threading.Thread(target=work, daemon=True).start()

    def _evaluated(self, res):
        if isinstance(res, str):
            self.win.show_message(f"evaluation failed: {res}")
            return
        self.last_evaluation = res
        text = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                         for k, v in res.items())
        self.win.show_message(f"test split: {text}")
