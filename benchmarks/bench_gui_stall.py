"""Longest event-loop stall while the training dock trains the digits example (target: under 50 ms).

A 5 ms QTimer records the time between its ticks on the UI thread while the worker thread trains
resources/examples/digits-mlp.json (or --example); a stall is a gap minus the 5 ms interval. The same
training is also timed headless (no window) in the same process, to show what the live window costs.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_stall.py [--epochs 30] [--example digits-cnn.json] [--json]
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PySide6.QtCore import QElapsedTimer, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.project import Project  # noqa: E402
from engine.session import prepare  # noqa: E402
from gui.document import Document  # noqa: E402
from resources import path  # noqa: E402

TICK_MS = 5
STARTUP_S = 1.0         # the first second of a run (data, model, views set up) is also reported apart


def project(epochs, example="digits-mlp.json"):
    p = Project.load(path("examples", example))
    p.training["epochs"], p.training["patience"] = epochs, 0
    return p


def measure(app, dock, tab, idle=0.0):
    """((gap ms, seconds since start) per tick, run seconds) with the given view tab in front (idle: no run)."""
    dock.tabs.setCurrentIndex(tab)
    gaps, clock = [], QElapsedTimer()
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)

    def tick():
        gaps.append((clock.nsecsElapsed() / 1e6, time.perf_counter() - t0))
        clock.restart()
    timer.timeout.connect(tick)
    t0 = time.perf_counter()
    if not idle:
        dock.start()
    clock.start()
    timer.start()
    while dock.status == "running" if not idle else time.perf_counter() - t0 < idle:
        app.processEvents()
        time.sleep(0.0005)
    timer.stop()
    return np.array(gaps[1:]).reshape(-1, 2), time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--example", default="digits-mlp.json", help="a project in resources/examples")
    ap.add_argument("--views", default="Curves,PCA,Confusion", help="tabs to measure in front, comma-separated "
                    "(e.g. Attention for reverse-transformer.json)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    app = QApplication.instance() or QApplication([])
    from gui.training import TrainingDock

    t0 = time.perf_counter()
    _, tr = prepare(project(a.epochs, a.example))
    head = tr.run()
    headless = time.perf_counter() - t0

    dock = TrainingDock(Document(project(a.epochs, a.example)))
    dock.resize(1280, 760)
    dock.show()
    app.processEvents()
    rows = []
    for name in ["idle (no run)"] + a.views.split(","):
        idle = 3.0 if name.startswith("idle") else 0.0
        tab = next((i for i in range(dock.tabs.count()) if dock.tabs.tabText(i) == name), 0)
        g, secs = measure(app, dock, tab, idle)
        gaps, at = g[:, 0], g[:, 1]
        stall = gaps - TICK_MS
        steady = stall[at > STARTUP_S]
        rows.append({"view": name, "seconds": round(secs, 2),
                     "max_stall_ms": round(float(stall.max()), 1),
                     "p99_stall_ms": round(float(np.percentile(stall, 99)), 1),
                     "max_stall_after_startup_ms": round(float(steady.max()), 1) if len(steady) else None,
                     "ticks_over_50ms": int((stall > 50).sum()), "ticks": len(gaps)})
    dock.shutdown()
    dock.deleteLater()
    app.processEvents()
    out = {"workload": f"{Path(a.example).stem}, {a.epochs} epochs, {head['steps']} steps", "headless_seconds":
           round(headless, 2), "runs": rows, "cpus": os.cpu_count()}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{out['workload']}; headless (no window) {out['headless_seconds']} s; {out['cpus']} CPUs")
    print(f"{'view in front':14} {'run s':>7} {'max stall ms':>13} {'after 1st s':>12} {'p99 ms':>8} "
          f"{'ticks > 50 ms':>14} {'ticks':>7}")
    for r in rows:
        print(f"{r['view']:14} {r['seconds']:7.2f} {r['max_stall_ms']:13.1f} {r['max_stall_after_startup_ms'] or float('nan'):12.1f} "
              f"{r['p99_stall_ms']:8.1f} {r['ticks_over_50ms']:14d} {r['ticks']:7d}")


if __name__ == "__main__":
    main()
