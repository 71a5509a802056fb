"""The training dock: dataset and settings, Train / Pause / Stop, progress, live plot views, k-fold and runs."""
import time
from functools import partial
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QApplication, QDockWidget, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea,
                               QSpinBox, QSplitter, QStyle, QTabWidget, QVBoxLayout, QWidget)

from engine.layers.onnx_node import frozen_note
from engine.validate import trained_note

from .banner import Banner
from .closing import Closing, _orphaned
from .datacheck import DataCheck
from .dataset_panel import DatasetPanel
from .job import Job, snapshot_project
from .messages import DRAIN_MS, WorkerMessages
from .runs import RunList
from .settings import HP, Editor, SettingsForm
from .views import VIEWS, CompareView, CurvesView
from .weights import Weights


class Later(QWidget):
    """A tab's place until its view is built (the dock builds views when first shown, asked for, or at Train)."""

    def __init__(self, cls):
        super().__init__()
        self.cls, self.key, self.needs = cls, cls.key, getattr(cls, "needs", ())


class TrainingDock(WorkerMessages, Closing, QDockWidget):
    """Trains the document's project in a worker thread and shows it live; the window never waits for it."""

    def __init__(self, document, parent=None):
        super().__init__("Training", parent)
        self.setObjectName("TrainingDock")
        self.doc = document
        self.job = None
        self.options = {}
        self.status = ""
        self.result = None
        self.kfold_summary = None
        self._t0 = 0.0
        self._total = 1
        self._ctx = {}
        self._unbegun = []                # views still to begin for the run that is starting
        self._watched = None
        self._fold, self._epoch, self._last, self._drawn = 0, 0, None, 0.0
        self._pending = 0                     # probes asked for after a run; the timer runs until they arrive
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(self._left())
        body.addWidget(self._right())
        body.setStretchFactor(1, 1)
        body.setSizes([370, 730])
        self.setWidget(body)
        self.timer = QTimer(self)
        self.timer.setInterval(DRAIN_MS)
        self.timer.timeout.connect(self.drain)
        self.weights = Weights()              # what Export writes; loaded weights the next runs start from
        self.doc.validated.connect(self._graph_edited)
        self.doc.reset.connect(self._opened)
        self._jobs = [None]                   # the current job, for _orphaned (which must not hold the dock)
        self.destroyed.connect(partial(_orphaned, self.doc, self._jobs))
        self.doc.validated.connect(self._show_tabs)
        self._show_tabs()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # ---- layout ----
    def _left(self):
        w = QWidget()
        box = QVBoxLayout(w)
        box.setContentsMargins(4, 4, 4, 4)
        self.data = DatasetPanel(self.doc)
        self.data.loaded.connect(self._data_loaded)
        self.datacheck = DataCheck(self.doc, self.data)        # dataset ↔ model mismatches as node errors
        box.addWidget(self.data)
        self.form = SettingsForm(self.doc)
        box.addWidget(self.form)
        box.addStretch(1)
        if self.data.dataset is not None:
            self._data_loaded(self.data.dataset)
        s = QScrollArea()
        s.setWidget(w)
        s.setWidgetResizable(True)
        s.setMinimumWidth(340)
        s.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        return s

    def _right(self):
        w = QWidget()
        box = QVBoxLayout(w)
        box.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.train_btn = QPushButton(self._icon("SP_MediaPlay"), "Train")
        self.train_btn.setToolTip("Train the model on the dataset with these settings")
        self.train_btn.clicked.connect(lambda: self.start())
        self.kfold_btn = QPushButton("Cross-validate")
        self.kfold_btn.setToolTip("k-fold cross-validation: train k models, each validated on one fold")
        self.kfold_btn.clicked.connect(lambda: self.start(k=self.k_spin.value()))
        self.k_spin = QSpinBox()
        self.k_spin.setRange(2, 20)
        self.k_spin.setValue(5)
        self.k_spin.setPrefix("k = ")
        self.k_spin.setMaximumWidth(80)
        self.pause_btn = QPushButton(self._icon("SP_MediaPause"), "Pause")
        self.pause_btn.clicked.connect(self.toggle_pause)
        self.stop_btn = QPushButton(self._icon("SP_MediaStop"), "Stop")
        self.stop_btn.clicked.connect(self.stop)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress.setMinimumWidth(240)
        for b in (self.train_btn, self.kfold_btn, self.k_spin, self.pause_btn, self.stop_btn):
            row.addWidget(b)
        row.addSpacing(8)
        self.quick = {}                       # epochs and η beside Train: never hidden in the settings' scroll area
        for key, text in (("epochs", "Epochs"), ("lr", "η")):
            e = self.quick[key] = Editor(HP[key])
            e.widget.setMinimumWidth(64)
            e.widget.setMaximumWidth(90)
            e.committed.connect(lambda k, v: self.doc.project.training.get(k) != v and self.doc.set_training(k, v))
            lab = QLabel(text)
            lab.setToolTip(HP[key].doc)
            row.addWidget(lab)
            row.addWidget(e)
        row.addStretch(1)
        box.addLayout(row)
        box.addWidget(self.progress)
        self.doc.changed.connect(self._quick_refresh)
        self._quick_refresh()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setMinimumHeight(2 * self.message.fontMetrics().lineSpacing() + 4)   # new text: no re-layout
        self.message.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.message)
        self.banner = Banner(self.doc)           # a strip of its own: it never covers a plot
        self.banner.message.connect(self.message.setText)
        self.banner.dataset = self.data.dataset
        box.addWidget(self.banner)
        self.tabs = QTabWidget()
        self.views = []
        self.runs = RunList(self.doc)
        self.runs.chosen.connect(self._compare)
        self._make_views()
        self.tabs.currentChanged.connect(lambda i: (self._renew([i]), self.redraw()))
        box.addWidget(self.tabs, 1)
        self._buttons(False)
        return w

    def _make_views(self):
        """One tab per view class; only the first view is built now, the others when first shown, asked for
        (view()) or a run starts (building all ten took half of the window's start-up)."""
        self._stale = set()                   # tabs whose view still shows a closed project (renewed when needed)
        self._used = set()                    # tabs whose view has shown this project's runs
        for i, cls in enumerate(VIEWS):
            self.views.append(self._new_view(cls) if i == 0 else Later(cls))
            self.tabs.addTab(self.views[-1], cls.title)
            if i:
                self._stale.add(i)
        if isinstance(self.views[0], CompareView):
            self.views[0].attach_list(self.runs)

    def _new_view(self, cls):
        v = cls()
        v.options = self.options
        v.reprobe.connect(self._reprobe)
        return v

    def _renew(self, stale=None):
        """Replace the stale views (or those given) by fresh ones in their tabs: a new project shows nothing of
        the last one (its layers, hover texts, options). Done lazily: building a view takes 50-500 ms."""
        todo = sorted(self._stale if stale is None else set(stale) & self._stale)
        if not todo:
            return
        cur = self.tabs.currentIndex()
        self.tabs.blockSignals(True)
        for i in todo:
            old = self.views[i]
            if isinstance(old, CompareView):
                self.runs.setParent(None)     # kept: the run list lives in the Compare view being replaced
            kind = getattr(old, "cls", type(old))             # a Later stands for a view not built yet
            v = self.views[i] = self._new_view(kind)
            shown, enabled = self.tabs.isTabVisible(i), self.tabs.isTabEnabled(i)
            self.tabs.removeTab(i)
            self.tabs.insertTab(i, v, kind.title)
            self.tabs.setTabVisible(i, shown)
            self.tabs.setTabEnabled(i, enabled)
            if isinstance(v, CompareView):
                v.attach_list(self.runs)
            old.deleteLater()
            self._stale.discard(i)
        self.tabs.setCurrentIndex(cur)
        self.tabs.blockSignals(False)

    def _quick_refresh(self):
        for k, e in self.quick.items():
            e.set_value(self.doc.project.training[k])

    def _icon(self, name):
        return self.style().standardIcon(getattr(QStyle.StandardPixmap, name))

    def _pause_label(self, paused):
        self.pause_btn.setText("Resume" if paused else "Pause")
        self.pause_btn.setIcon(self._icon("SP_MediaPlay" if paused else "SP_MediaPause"))

    def view(self, cls):
        """The dock's instance of a view class (e.g. dock.view(PCAView)), renewed if it showed a closed project."""
        i = next(i for i, v in enumerate(self.views) if isinstance(v, cls) or getattr(v, "cls", None) is cls)
        self._renew([i])
        return self.views[i]

    # ---- control ----
    @property
    def running(self):
        return self.job is not None and self.job.alive

    def start(self, k=0):
        """Begin a run (k ≥ 2: k-fold cross-validation) in the background."""
        if self.running:
            return
        self._renew()                         # every view fresh for the run (after an Open, only those not shown)
        self._used = set(range(len(self.views)))
        p = self.doc.project
        data = p.dataset.get("name") or Path(str(p.dataset.get("path", "data"))).name
        label = f"Run {len(p.runs) + 1}{f' ({k}-fold)' if k >= 2 else ''}: {data}, {time.strftime('%H:%M:%S')}"
        probes = {cls.key: cls.compute for cls in VIEWS if cls.key}
        live = tuple(cls.key for cls in VIEWS if cls.key and getattr(cls, "live", False))
        self.job = Job(snapshot_project(p), k=k if k >= 2 else 0, probes=probes, options=self.options,
                       label=label, weights=self.weights.start, live=live)
        self.status, self.result, self.kfold_summary = "running", None, None
        self._t0, self._total, self._ctx, self._pending = time.perf_counter(), 1, {}, 0
        self.banner.hide()
        note = frozen_note(p.graph, {n: i.params for n, i in self.doc.infos.items()})     # an ONNX node: no gradient
        notes = [t for t in (trained_note(p.graph), note) if t]                           # several outputs: which one
        self.message.setText("Preparing the data and the model…" + "".join(f" Note: {t}." for t in notes))
        self.message.setStyleSheet("")
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.doc.set_locked(True)
        self._buttons(True)
        self.job.start()
        self.timer.start()
        self._jobs[0] = self.job

    def stop(self):
        """Answers at once: the worker ends at its next check; the graph can be edited meanwhile (the run
        reads its own copy), Train waits for the worker (a numba compilation cannot be interrupted)."""
        if self.running and not self.job.stopping:
            self.job.stop()
            self.pause_btn.setEnabled(False)
            self.stop_btn.setEnabled(False)
            self._pause_label(False)
            self.progress.setFormat(self.progress.format().replace(" · paused", "") + " · stopping…")
            self.doc.set_locked(False)

    def toggle_pause(self):
        if not self.running or self.job.stopping:
            return
        if self.job.paused:
            self.job.resume()
            self._pause_label(False)
        else:
            self.job.pause()
            self._pause_label(True)
            self.progress.setFormat(self.progress.format() + " · paused")

    def _buttons(self, running):
        self.train_btn.setEnabled(not running)
        self.kfold_btn.setEnabled(not running)
        self.k_spin.setEnabled(not running)
        self.pause_btn.setEnabled(running)
        self.stop_btn.setEnabled(running)
        self._pause_label(False)
        self.data.setEnabled(not running)
        self.form.setEnabled(not running)
        for e in self.quick.values():
            e.setEnabled(not running)

    def _reprobe(self, key):
        if self.job is not None and not self.running:
            self._pending += 1
            self.job.probe_now(key)
            self.timer.start()

    def _compare(self, records):
        cmp = self.view(CompareView)
        self._used.add(self.views.index(cmp))
        cmp.show_runs(records[-2:] if len(records) > 2 else records)

    def _data_loaded(self, ds):
        if hasattr(self, "banner"):
            self.banner.dataset = ds
        if ds is not None:
            self.form.update_warnings(ds.task, ds.n_classes if ds.task != "regression" else 0)
        else:
            self.form.update_warnings(None, 0)

    def loaded_weights(self, name):
        """Say that weights were loaded (the next runs start from them)."""
        self.message.setStyleSheet("")
        self.message.setText(f"Loaded weights from {name}: Export writes them; the next run starts from them.")
        self.doc.set_trained(self.weights.model)

    def _opened(self):
        """A project was opened (or New): every view and panel shows that project alone; its saved trained
        model is what Export writes; its last run's curves show."""
        if self.running:                      # a (stopped) run still ending belongs to the project that was closed
            self.job.stop()
            self.doc.set_locked(False)
        self.job = self._jobs[0] = None
        self.timer.stop()
        self.status, self.result, self.kfold_summary, self._ctx = "", None, None, {}
        self._unbegun, self._last, self._pending, self._fold, self._epoch = [], None, 0, 0, 0
        self.options.clear()                  # e.g. the PCA layer of the last project
        self._stale, self._used = self._stale | self._used, set()
        for i in range(len(self.views)):      # disabled by the last run's data (e.g. no regression plot)
            self.tabs.setTabEnabled(i, True)
        self._renew([self.tabs.currentIndex()])           # the others when shown, asked for, or at Train
        self._show_tabs()
        self.banner.hide()
        self.message.setText("")
        self.message.setStyleSheet("")
        self.message.setToolTip("")
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self._buttons(False)
        self.weights.model, self.weights.start, self.weights.name = self.doc.trained, None, ""
        runs = [r for r in self.doc.project.runs if isinstance(r, dict) and isinstance(r.get("history"), dict)]
        if runs:
            self.show_history(runs[-1])
        if self.doc.weights_note:
            self.message.setText(self.doc.weights_note)
        elif self.doc.trained is not None and runs:
            self.message.setText(f"Trained weights of {runs[-1].get('label', 'the last run')} loaded with the project: "
                                 "Export writes them.")
        elif self.doc.trained is not None:                  # an imported model's weights: no run made them
            from engine.onnx_import_multi import report          # how its inputs and outputs map to the ONNX file's
            self.message.setText("The project's weights are loaded (no run recorded yet): Export writes them."
                                 + "".join(f"\n{line.strip()}" for line in report(self.doc.graph)))

    def show_history(self, rec):
        """Draw a recorded run's per-epoch curves (e.g. after reopening the project)."""
        h, res = rec["history"], rec.get("result", {}) if isinstance(rec.get("result"), dict) else {}
        n = len(h.get("train_loss", []))
        if not n:
            return
        per = rec.get("steps_per_epoch") or max(int(res.get("steps", n) or n) // max(int(res.get("epochs", n) or n), 1),
                                                1)     # older records: from the totals
        curves = self.view(CurvesView)
        self._used.add(self.views.index(curves))
        curves.begin({"folds": 1, "epochs": n, "per_epoch": per, "n_val": int(bool(h.get("val_loss"))),
                      "classify": bool(h.get("train_accuracy"))})
        for i in range(n):
            curves.epoch(0, i + 1, (i + 1) * per, {k: (v[i] if i < len(v) and v[i] is not None else np.nan)
                                                   for k, v in h.items() if isinstance(v, list)})
        curves.refresh()

    def _show_tabs(self, _infos=None):
        """Views that need a layer type (e.g. RNN, attention) have a tab only while the graph has one."""
        types = {n.type for n in self.doc.graph.nodes.values()}
        for i, v in enumerate(self.views):
            need = getattr(v, "needs", ())
            if need:
                self.tabs.setTabVisible(i, any(t in types for t in need))

    def _graph_edited(self, _infos):
        if self.weights.graph_changed(self.doc.graph):
            self.message.setText(f"The graph changed, so the next run starts from fresh weights, "
                                 f"not from {self.weights.name}.")
