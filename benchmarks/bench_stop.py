"""Stop, Pause and close latency of the training dock at each moment of a run (digits-cnn by default).

For each moment (before the first step, inside it, mid-epoch, the epoch-end evaluation, the epoch-end probes,
while paused) the script presses the dock's Stop (or Pause) exactly when the worker is there, and reports:
  ui ms      — until stop() returned with "stopping…" shown (the window answers);
  worker ms  — until the worker thread ended (Pause: until it waits at its pause point);
  done ms    — until the dock applied the end of the run (Train enabled again).
Closing the main window while training is timed for "keep the run" and "discard the run".

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_stop.py [--example digits-cnn.json] [--reps 3] [--json]
    python benchmarks/bench_stop.py --only first-step --no-warm-up --reps 1          # a fresh process, no warm-up
    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_stop.py --only first-step --reps 1   # cold JIT cache
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from engine.project import Project  # noqa: E402
from gui.document import Document  # noqa: E402
from resources import path  # noqa: E402

MOMENTS = ("first-step", "in-first-step", "mid-epoch", "evaluation", "probes", "paused")


def project(example):
    p = Project.load(path("examples", example))
    p.path = None
    p.training["patience"] = 0
    return p


def spin(app, cond, limit=600.0):
    end = time.perf_counter() + limit
    while not cond():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() > end:
            raise TimeoutError("the run did not reach the moment in time")


def arm(job, moment, reached):
    """Make the worker set `reached` (and wait for the press) when it gets to the moment."""
    press = threading.Event()

    def at():
        reached.set()
        press.wait(30)
    if moment == "probes":                                     # whichever epoch-end probe runs first
        for key, fn in list(job.probes.items()):
            job.probes[key] = lambda *a, fn=fn: (at(), fn(*a))[1]
    return press


def one(app, dock, example, moment, pause=False):
    """(ui ms, worker ms, done ms) for one press at `moment`."""
    dock.doc.load(project(example))
    reached = threading.Event()
    dock.start()
    job = dock.job
    press = arm(job, moment, reached)
    spin(app, lambda: job.trainer is not None)
    t = job.trainer
    if moment == "first-step":
        pass                                                   # pressed before the first step ran
    elif moment == "in-first-step":                           # while the first step runs (JIT loads or compiles)
        real_step = t.train_step
        t.train_step = lambda *a: (reached.set(), real_step(*a))[1]
        spin(app, reached.is_set)
        time.sleep(0.05)
    elif moment == "mid-epoch":
        spin(app, lambda: t.step >= min(30, t.steps_per_epoch // 2))
    elif moment == "evaluation":
        real = t.evaluate

        def evaluate(*a, **k):
            if k.get("stoppable"):
                reached.set()
                press.wait(30)
            return real(*a, **k)
        t.evaluate = evaluate
    elif moment == "paused":
        spin(app, lambda: t.step >= 5)
        dock.toggle_pause()
        spin(app, lambda: t.step == t.step and not job._go.is_set())
        time.sleep(0.3)
    if moment in ("evaluation", "probes"):
        spin(app, reached.is_set)
    waiting = threading.Event()
    if pause:                                                  # the worker's pause points report when reached
        for ev in (t._go, job._go):
            w = ev.wait
            ev.wait = lambda timeout=None, ev=ev, w=w: ((not ev.is_set()) and waiting.set(), w(timeout))[1]
    t0 = time.perf_counter()
    (dock.toggle_pause if pause else dock.stop)()
    press.set()
    ui = time.perf_counter() - t0
    if pause:
        spin(app, waiting.is_set, 60)
        worker = time.perf_counter() - t0
        dock.stop()
    else:
        job.thread.join(120)
        worker = time.perf_counter() - t0
    spin(app, lambda: not dock.running and dock.status != "running", 120)
    return 1e3 * ui, 1e3 * worker, 1e3 * (time.perf_counter() - t0)


def close(app, example, answer, data_dir):
    """ms that MainWindow.close() takes while training (after the question), and whether the worker ended."""
    from gui.mainwindow import MainWindow
    w = MainWindow(Document(project(example)), autosave_dir=data_dir)
    w.show()
    d = w.training
    d.start()
    spin(app, lambda: d.job.trainer is not None and d.job.trainer.step >= 20)
    w.ask_training_close = lambda: answer
    QMessageBox.question = staticmethod(lambda *a, **k: QMessageBox.StandardButton.Discard)
    job = d.job
    t0 = time.perf_counter()
    w.close()
    ms = 1e3 * (time.perf_counter() - t0)
    job.thread.join(120)
    return ms, 1e3 * (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default="digits-cnn.json")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-warm-up", action="store_true", help="skip what the app does at launch (numba's context)")
    a = ap.parse_args()
    app = QApplication.instance() or QApplication([])
    if not a.no_warm_up:
        from engine.session import warm_up
        warm_up()                                              # as `layerboard` does in the background at launch
    from gui.training import TrainingDock
    dock = TrainingDock(Document())
    dock.resize(1100, 650)
    dock.show()
    rows = []
    for moment in a.only or MOMENTS + ("pause:mid-epoch", "pause:evaluation", "pause:probes", "close:keep",
                                       "close:discard"):
        runs = []
        for _ in range(a.reps):
            if moment.startswith("close:"):
                import tempfile
                ms, end = close(app, a.example, moment.split(":")[1], tempfile.mkdtemp())
                runs.append((ms, end, end))
            elif moment.startswith("pause:"):
                runs.append(one(app, dock, a.example, moment.split(":")[1], pause=True))
            else:
                runs.append(one(app, dock, a.example, moment))
        med = [statistics.median(r[i] for r in runs) for i in range(3)]
        top = [max(r[i] for r in runs) for i in range(3)]
        rows.append({"moment": moment, "median_ms": med, "max_ms": top})
        if not a.json:
            print(f"{moment:18s} ui {med[0]:7.1f} ms   worker {med[1]:7.1f} ms (max {top[1]:7.1f})   "
                  f"done {med[2]:7.1f} ms (max {top[2]:7.1f})", flush=True)
    if a.json:
        print(json.dumps(rows))
    dock.shutdown()


if __name__ == "__main__":
    main()
