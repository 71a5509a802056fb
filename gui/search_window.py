"""The search window: run `layerboard search` in the background (or watch a study that runs elsewhere) and see
its trials live: a trial table, the best score so far, the importance of each setting and the Pareto front;
Apply hands the chosen trial's settings to the main window (one undoable step there)."""
import sys

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QProcess, QThreadPool, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
                               QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from engine import search
from engine.structure import describe

POLL_MS = 1000


def trial_rows(study):
    """(number, state, values, params) of every trial, from the study's storage."""
    return [(t.number, t.state.name.lower(), t.values, t.params) for t in study.get_trials(deepcopy=False)]


def best_so_far(rows, maximize=False):
    """(trial numbers, best objective value up to each) over finished trials, in trial order."""
    xs, ys, best = [], [], None
    for n, state, values, _ in sorted(rows):
        if state == "complete" and values:
            v = values[0]
            best = v if best is None else (max(best, v) if maximize else min(best, v))
            xs.append(n)
            ys.append(best)
    return xs, ys


class SearchWindow(QWidget):
    """Search over the project's ranges (project.search, else the defaults a user would try first)."""

    apply = Signal(dict)            # {"training.lr": 0.01, "fc1.units": 64}: the main window applies it as one undo step

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Search — {project.name or 'project'}")
        self.project, self.study, self.proc = project, None, None
        self.space = project.search or search.default_space(project)
        box = QVBoxLayout(self)
        form = QFormLayout()
        self.trials = QSpinBox(minimum=1, maximum=100000, value=20)
        self.jobs = QSpinBox(minimum=1, maximum=64, value=1)
        self.objective = QComboBox()
        self.objective.addItems(sorted(search.OBJECTIVES))
        self.objective.setCurrentText("val_loss")
        self.pareto = QComboBox()
        self.pareto.addItems(["none", *search.PARETO])
        self.storage = QLineEdit(placeholderText="default: a journal file beside the run history; or postgresql://…")
        self.name = QLineEdit(search.study_name(project))
        self.epochs = QSpinBox(minimum=0, maximum=100000, value=0, specialValueText="as the project")
        for label, w in (("Trials", self.trials), ("Worker processes", self.jobs), ("Objective", self.objective),
                         ("Pareto against", self.pareto), ("Epochs per trial", self.epochs),
                         ("Storage", self.storage), ("Study", self.name)):
            form.addRow(label, w)
        box.addLayout(form)
        self.ranges = QLabel(("Searching the ranges marked ⌕ in the inspector: " if project.search else
                              "Searching default ranges (mark your own with ⌕ in the inspector): ")
                             + ", ".join(f"{k} {describe(r)}" for k, r in self.space.items()))
        self.ranges.setWordWrap(True)
        box.addWidget(self.ranges)
        row = QHBoxLayout()
        self.start = QPushButton("Start search")
        self.start.clicked.connect(self.run)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.watch_button = QPushButton("Watch study")
        self.watch_button.setToolTip("Follow a study that workers elsewhere run (same storage and study name)")
        self.watch_button.clicked.connect(self.watch)
        self.apply_button = QPushButton("Apply selected trial")
        self.apply_button.clicked.connect(self._apply)
        for b in (self.start, self.stop_button, self.watch_button, self.apply_button):
            row.addWidget(b)
        box.addLayout(row)
        self.status = QLabel("")
        box.addWidget(self.status)
        split = QSplitter()
        self.table = QTableWidget(0, 0)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        split.addWidget(self.table)
        tabs = QTabWidget()
        self.best = pg.PlotWidget(background="w", title="Best so far")
        self.best.setLabel("bottom", "trial")
        tabs.addTab(self.best, "Best so far")
        self.importance = pg.PlotWidget(background="w", title="Importance of each setting (fANOVA)")
        tabs.addTab(self.importance, "Importance")
        self.front = pg.PlotWidget(background="w", title="Pareto front")
        tabs.addTab(self.front, "Pareto front")
        split.addWidget(tabs)
        box.addWidget(split, 1)
        self.timer = QTimer(self, interval=POLL_MS)
        self.timer.timeout.connect(self.refresh)
        self._importance_busy, self._shown = False, -1
        self.resize(1100, 700)

    # ---- running ----
    def args(self):
        a = ["-m", "engine.cli", "search", str(self.project.path), "--trials", str(self.trials.value()),
             "--jobs", str(self.jobs.value()), "--objective", self.objective.currentText(), "--study",
             self.name.text(), "--json"]
        if self.pareto.currentText() != "none":
            a += ["--pareto", self.pareto.currentText()]
        if self.storage.text():
            a += ["--storage", self.storage.text()]
        if self.epochs.value():
            a += ["--epochs", str(self.epochs.value())]
        return a

    def run(self):
        """Start the search as a background process (the window stays responsive) and poll its study."""
        if self.project.path is None:
            self.status.setText("Save the project first: the search's worker processes read it from its file.")
            return
        self.proc = QProcess(self)
        self.proc.setProgram(sys.executable)
        self.proc.setArguments(self.args())
        self.proc.finished.connect(self._finished)
        self.proc.start()
        self.start.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.setText("searching…")
        self.watch()

    def stop(self):
        if self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning:
            self.proc.kill()
            self.proc.waitForFinished(2000)
        self.status.setText("stopped; finished trials are kept in the study and the run history")

    def _finished(self, code, _status):
        self.start.setEnabled(True)
        self.stop_button.setEnabled(False)
        err = bytes(self.proc.readAllStandardError()).decode(errors="replace").strip().splitlines()
        self.timer.stop()
        self.refresh()                                     # the last trials, then what the process said
        if code == 0:
            self.status.setText(f"search finished: {self.status.text()}")
        elif err:
            self.status.setText(err[-1])

    def watch(self):
        """Follow the study named in the form (it may be run by workers on other machines)."""
        pareto = None if self.pareto.currentText() == "none" else self.pareto.currentText()
        try:
            self.study = search.create(self.project, self.storage.text() or None, self.objective.currentText(),
                                       pareto, self.name.text())
        except Exception as e:                    # a storage URL that cannot be reached: one line
            self.status.setText(f"cannot open the study: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            return
        self.timer.start()
        self.refresh()

    # ---- showing ----
    def refresh(self):
        if self.study is None:
            return
        rows = trial_rows(self.study)
        if len(rows) == self._shown and all(r[1] in ("complete", "pruned", "fail") for r in rows):
            return
        self._shown = len(rows)
        keys = sorted({k for r in rows for k in r[3]})
        self.table.setColumnCount(3 + len(keys))
        self.table.setHorizontalHeaderLabels(["trial", "state", self.objective.currentText()] + keys)
        self.table.setRowCount(len(rows))
        for i, (n, state, values, params) in enumerate(rows):
            cells = [str(n), state, ", ".join(f"{v:.4g}" for v in values) if values else "–"]
            cells += [_fmt(params.get(k)) for k in keys]
            for j, c in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(c))
        maximize = search.OBJECTIVES[self.objective.currentText()] == "maximize"
        xs, ys = best_so_far(rows, maximize)
        self.best.clear()
        self.best.setLabel("left", self.objective.currentText())
        if xs:
            self.best.plot(xs, ys, pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=5)
        done = [r for r in rows if r[1] == "complete" and r[2]]
        if done and len(done[0][2]) > 1:
            self.front.clear()
            pts = np.array([r[2][:2] for r in done], float)
            self.front.plot(pts[:, 1], pts[:, 0], pen=None, symbol="o", symbolBrush="#999")
            best = np.array([t.values for t in self.study.best_trials], float)
            best = best[np.argsort(best[:, 1])]
            self.front.plot(best[:, 1], best[:, 0], pen=pg.mkPen("#1f77b4", width=2), symbol="o",
                            symbolBrush="#1f77b4")
            self.front.setLabel("bottom", self.pareto.currentText())
            self.front.setLabel("left", self.objective.currentText())
        self.status.setText(f"{len(rows)} trials: {len(done)} complete, "
                            f"{sum(r[1] == 'pruned' for r in rows)} pruned, {sum(r[1] == 'running' for r in rows)} running")
        if len(done) >= 3 and not self._importance_busy and len(done[0][2]) == 1:
            self._importance_busy = True
            QThreadPool.globalInstance().start(self._importances)

    def _importances(self):
        """fANOVA importances off the GUI thread; shown through a queued timer call."""
        import optuna
        try:
            imp = optuna.importance.get_param_importances(self.study)
        except Exception:
            imp = {}
        QTimer.singleShot(0, self, lambda: self._show_importance(imp))

    def _show_importance(self, imp):
        self._importance_busy = False
        self.importance.clear()
        if imp:
            names = list(imp)
            self.importance.addItem(pg.BarGraphItem(x0=0, y=np.arange(len(names)), height=0.6,
                                                    width=[imp[k] for k in names], brush="#1f77b4"))
            self.importance.getAxis("left").setTicks([list(enumerate(names))])

    def _apply(self):
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        if self.study is None:
            return
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        if rows:
            t = trials.get(int(self.table.item(rows[0], 0).text()))
        else:
            try:
                t = self.study.best_trial
            except (ValueError, RuntimeError):
                t = None
        if t is not None and t.params:
            self.apply.emit(dict(t.params))

    def closeEvent(self, e):
        self.timer.stop()
        if self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning:
            self.proc.kill()
            self.proc.waitForFinished(2000)
        super().closeEvent(e)


def _fmt(v):
    return "–" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

