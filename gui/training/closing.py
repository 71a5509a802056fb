"""Stopping a run when the application quits, the window closes, or the dock is deleted."""
import time

import shiboken6
from PySide6.QtCore import QEvent, QTimer
from PySide6.QtWidgets import QApplication

from .messages import DRAIN_MS

STOP_WAIT = 3.0         # seconds closing the window waits for a stopped run's result (a numba compilation
                        # cannot be interrupted; the worker normally ends within one batch)


class Closing:
    """TrainingDock's part that ends a run cleanly when its window or the application closes."""

    def shutdown(self, timeout=0.5):
        """Stop a running job and wait a moment for its thread (application quitting: the process ends next,
        the daemon worker with it)."""
        if self.job is not None:
            self.job.stop()
            self.job.join(timeout)
            if self.status == "running":
                self.drain()
        self.timer.stop()

    def stop_for_close(self, keep, wait=STOP_WAIT):
        """The window closes during a run: stop it; keep: wait up to `wait` s for the worker's result and record
        it in the project, else forget the run. True when the worker ended."""
        job = self.job
        if not self.running:
            return True
        self.stop()
        if not keep:
            self.job = self._jobs[0] = None
            self.timer.stop()
            return False
        end = time.perf_counter() + wait
        while job.alive and time.perf_counter() < end:      # the window still paints "stopping…"
            QApplication.processEvents()
            job.join(0.02)
        self.drain()                                        # the result (and "done" when it came)
        return not job.alive

    def stop_soon(self):
        """Ask a run to stop without waiting (the dock or its window closes): the UI never blocks on the
        worker (a slow data load may take seconds to notice); the timer keeps draining until "done"."""
        if self.running:
            self.job.stop()
            self.timer.start()

    # ---- closing the window stops training cleanly ----
    def showEvent(self, e):
        """Watch the top-level window (the main window once docked) for its Close event."""
        win = self.window()
        if win is not self and win is not self._watched:
            if self._watched is not None:
                self._watched.removeEventFilter(self)
            win.installEventFilter(self)
            self._watched = win
        super().showEvent(e)

    def eventFilter(self, obj, e):
        if obj is self._watched and e.type() == QEvent.Type.Close:     # stop only if the close was accepted
            QTimer.singleShot(0, lambda: None if obj.isVisible() else self.stop_soon())
        return False

    def closeEvent(self, e):
        """Closing the dock (or the window that owns it) stops a run; "done" is still read when it comes."""
        self.stop_soon()
        super().closeEvent(e)


def _orphaned(doc, jobs, *_):
    """The dock was deleted: if its job still runs, stop it and unlock the document when the worker ends."""
    job = jobs[0]
    if job is None or not shiboken6.isValid(doc):       # nothing ran, or the whole window is going away
        return
    if not job.alive:
        doc.set_locked(False)
        return
    job.stop()
    t = QTimer(doc)
    t.setInterval(DRAIN_MS)

    def check():
        if not job.alive:
            t.stop()
            t.deleteLater()
            doc.set_locked(False)
    t.timeout.connect(check)
    t.start()
