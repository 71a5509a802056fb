"""The dock's handling of what the worker posts: batches, epochs, snapshots, findings, results, progress."""
import time
from collections import defaultdict

import numpy as np
from PySide6.QtCore import QTimer

from engine.validate import trained_note

from .texts import STATUS, kfold_text, result_text
from .views import CurvesView

DRAIN_MS = 50           # worker messages are applied this often
PLOT_MS = 200           # the visible view is redrawn at most this often (painting is the UI's main cost)


class WorkerMessages:
    """TrainingDock's part that applies the worker's messages on the timer and redraws the views."""

    # ---- messages from the worker ----
    def drain(self):
        """Timer slot: apply everything the worker posted since the last tick, then redraw once."""
        if self.job is None:
            return
        self.job.gate.set()                   # the last redraw's paint is done (also when no 0-timer fires)
        if self._unbegun:                     # one view set up per tick: no long stall at a run's start
            self._begin_views(1)
        msgs = self.job.drain()
        if not msgs:
            return
        rows = defaultdict(list)

        def flush():
            for f, r in rows.items():
                arr = np.array(r, float)                               # (n, 4) epoch, step, loss, accuracy
                for v in self.views:
                    v.batches(f, arr)
                self._last = r[-1]
            rows.clear()

        for m in msgs:
            kind = m[0]
            if self._unbegun and kind != "start":     # the worker did not wait: every view must be ready now
                self._begin_views()
            if kind == "batch":
                rows[m[1]].append(m[2:])
                continue
            flush()
            getattr(self, "_on_" + kind)(*m[1:])
        flush()
        self._show_progress()
        if self.status != "running":          # e.g. a PCA layer chosen after the run: update wherever it is
            for v in self.views:
                v.refresh()
            if self._pending <= 0:
                self.timer.stop()
        elif time.perf_counter() - self._drawn >= PLOT_MS / 1000:
            self.redraw()

    def redraw(self):
        """Refresh the view in front; the others catch up when their tab is shown."""
        self._drawn = time.perf_counter()
        v = self.tabs.currentWidget()
        if v is None:
            return
        gate = self.job.gate if self.running else None
        if gate is not None:                  # the worker pauses at its next batch end while we paint
            gate.clear()
        try:
            v.refresh()
        finally:
            if gate is not None:              # reopen after the paint this refresh scheduled (one paint, not two)
                QTimer.singleShot(0, gate.set)

    def _on_start(self, fold, ctx):
        self._ctx = ctx
        self._epoch = 0
        self._last = None
        self._total = max(ctx["epochs"] * ctx["per_epoch"] * ctx["folds"], 1)
        self._begin_views()                   # a previous fold's views, if any were still waiting
        for i, v in enumerate(self.views):
            if fold == 0:
                self.tabs.setTabEnabled(i, v.applies(ctx))
            else:
                v.fold(fold, ctx)
        if fold == 0 and not self.tabs.isTabEnabled(self.tabs.currentIndex()):
            self.tabs.setCurrentIndex(0)
        self._fold = fold
        if fold == 0:                         # the view in front now, the others on the next ticks
            front = self.tabs.currentWidget()
            self._unbegun = [front] + [v for v in self.views if v is not front]
            self._begin_views(1)
        else:
            self.job.ready.set()
        self.message.setText(f"Training on {ctx['n_train']} samples, validating on {ctx['n_val']}"
                             + (f" — fold {fold + 1} of {ctx['folds']}" if ctx["folds"] > 1 else "") + "."
                             + (f" {note[:1].upper()}{note[1:]}." if (note := trained_note(self.doc.graph)) else ""))

    def _begin_views(self, n=None):
        """Begin the next n (default: all) views still waiting for this run; the worker starts after the last."""
        n = len(self._unbegun) if n is None else n
        todo, self._unbegun = self._unbegun[:n], self._unbegun[n:]
        for v in todo:
            v.begin(self._ctx)
        if todo and not self._unbegun:
            self.job.ready.set()

    def _on_epoch(self, fold, epoch, step, data):
        self._epoch = epoch
        for v in self.views:
            v.epoch(fold, epoch, step, data)

    def _on_snapshot(self, fold, key, payload):
        if self.status != "running":
            self._pending -= 1
        for v in self.views:
            if v.key == key:
                v.snapshot(fold, payload)

    def _on_finding(self, fold, epoch, message, remedies):
        self.banner.show_finding(message, remedies, fold if self._ctx.get("folds", 1) > 1 else None)

    def _on_result(self, fold, result, rec):
        self.result = result
        for v in self.views:
            v.finish(fold, result)
        st = result["status"]
        text = result_text(result, time.perf_counter() - self._t0)
        if result.get("message"):
            text += f". {result['message']}"
        self.message.setText(text)
        self.message.setStyleSheet("color: #b00;" if st == "diverged" else "")
        from ..summary import LOSSES
        loss = self.doc.project.training.get("loss")
        self.message.setToolTip(f"{LOSSES.get(loss, loss)}; n = {self._ctx.get('n_train', '?')} training and "
                                f"{self._ctx.get('n_val', 0)} validation samples" if loss in LOSSES else "")
        if rec is not None:
            self.doc.add_run(rec)

    def _on_kfold(self, summary, rec):
        self.kfold_summary = summary
        txt = kfold_text(summary)
        self.message.setText(f"{self.job.k}-fold cross-validation: mean ± std over the folds: {txt}")
        self.view(CurvesView).finish(0, {"summary": f"{self.job.k}-fold mean ± std: {txt}"})
        self.doc.add_run(rec)

    def _on_error(self, text):
        self.status = "error"
        self.message.setText(f"Training could not run: {text}")
        self.message.setStyleSheet("color: #b00;")

    def _on_done(self):
        self.job.join(5.0)
        self._show_progress()
        st = self.result["status"] if self.result else "error"
        if self.status != "error":
            self.status = st
        if st in ("completed", "early_stopped") and self.status != "error":
            self.progress.setValue(self.progress.maximum())
        if self.status != "error" and self.job.model is not None:
            self.weights.trained(self.job.model)
            self.doc.set_trained(self.job.model)          # saved beside the project with the next Save
        r, c = self.result or {}, self._ctx or {}
        done = (f" after {r['epochs']} of {c.get('epochs', r['epochs'])} epochs · {r.get('steps', 0)} steps"
                if "epochs" in r else "")            # the same count as the message below; no ETA once it is over
        self.progress.setFormat(f"{STATUS.get(self.status, self.status).lower()}{done}"
                                if self.status != "error" else "error")
        self.doc.set_locked(False)
        self._buttons(False)

    def _show_progress(self):
        if self.status != "running" or not self._ctx or getattr(self, "_last", None) is None:
            return
        c = self._ctx
        epoch, step = self._last[0], self._last[1]
        done = self._fold * c["epochs"] * c["per_epoch"] + step
        frac = min(done / self._total, 1.0)
        self.progress.setValue(int(frac * self.progress.maximum()))
        el = time.perf_counter() - self._t0
        eta = el / frac * (1 - frac) if frac > 0 else 0
        fold = f"fold {self._fold + 1}/{c['folds']} · " if c["folds"] > 1 else ""
        text = (f"{fold}epoch {int(epoch)}/{c['epochs']} · step {int(step)}/{c['epochs'] * c['per_epoch']}"
                f" · ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        if self.job.stopping:
            text += " · stopping…"
        elif self.job.paused:
            text += " · paused"
        self.progress.setFormat(text)
