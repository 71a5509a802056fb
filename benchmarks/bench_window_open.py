"""Window open time: seconds from starting `layerboard` (no arguments: the window with the example project) to
the window shown and its event loop running (issue 26 target: under 1.5 s).

Each run is a new process started as the `layerboard` command starts (engine.cli.main with no arguments), with
its own empty settings, autosave and cache folders (no recovery question, no remembered files), offscreen.
The child stops at the first turn of the event loop after the window is shown and the example is loaded; the
time counts from the parent's spawn of the process (interpreter start-up and imports included). Children run
with byte-code caching on, as an installed package has .pyc files. Phases: imports (engine.cli and gui.app), the
window built (MainWindow()), the example loaded (open_path), the first loop turn (layout and first paint); each
in wall-clock seconds and CPU seconds of the window's thread (what the wall clock would be on an idle core).

    python benchmarks/bench_window_open.py [--runs 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
t0 = time.time()
marks = {"python_started": t0}
cpu = {}

def mark(name):
    marks[name], cpu[name] = time.time(), (time.process_time(), time.thread_time())
from engine.cli import main
import gui.app                                              # what `layerboard` imports before the window
mark("imported")
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from gui.mainwindow import MainWindow
real_exec, real_init, real_open = QApplication.exec, MainWindow.__init__, MainWindow.open_path

def init(self, *a, **k):
    real_init(self, *a, **k)
    mark("built")

def open_path(self, *a, **k):
    r = real_open(self, *a, **k)
    mark("example")
    return r

def exec_(self=None):
    def shown():
        mark("loop_running")
        win = next(w for w in QApplication.topLevelWidgets() if w.isVisible() and w.windowTitle())
        marks["visible"] = win.isVisible()
        marks["nodes"] = len(getattr(win, "doc").graph.nodes)
        marks["heavy"] = [m for m in ("numba", "pyarrow", "torch", "scipy") if m in sys.modules]
        print(json.dumps(dict(marks, cpu=cpu)), flush=True)
        QApplication.instance().exit(0)
    QTimer.singleShot(0, shown)
    return real_exec()
QApplication.exec, MainWindow.__init__, MainWindow.open_path = exec_, init, open_path
sys.exit(main([]))
"""

def once(home):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"), LAYERBOARD_CACHE=str(home / "cache"))
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        raise SystemExit(f"the window did not open:\n{r.stderr[-2000:]}")
    m = json.loads(line)
    c = m["cpu"]
    return {"python": m["python_started"] - t0, "imports": m["imported"] - m["python_started"],
            "window": m["loop_running"] - m["imported"], "total": m["loop_running"] - t0, "nodes": m["nodes"],
            "cpu": c["loop_running"][0], "main_cpu": c["loop_running"][1],
            "build": m["built"] - m["imported"], "example": m["example"] - m["built"],
            "first_turn": m["loop_running"] - m["example"], "imports_cpu": c["imported"][1],
            "build_cpu": c["built"][1] - c["imported"][1], "example_cpu": c["example"][1] - c["built"][1],
            "first_turn_cpu": c["loop_running"][1] - c["example"][1], "heavy": m["heavy"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="layerboard-open-") as d:
        once(Path(d) / "warm")                                  # byte code and fonts cached, not reported
        runs = []
        for i in range(a.runs):
            home = Path(d) / f"run{i}"
            home.mkdir()
            runs.append(once(home))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "heavy"}
    print(f"load average {os.getloadavg()[0]:.2f}; median of {a.runs} runs (min total {min(r['total'] for r in runs):.2f} s)")
    print(f"interpreter start {med['python']:.2f} s + imports {med['imports']:.2f} s + window, example "
          f"({med['nodes']:.0f} nodes) and first loop turn {med['window']:.2f} s = {med['total']:.2f} s (target < 1.5); "
          f"CPU time of the process {med['cpu']:.2f} s, of the window's thread {med['main_cpu']:.2f} s")
    print("phases, wall / CPU of the window's thread (s): " + ", ".join(
        f"{k} {med[k]:.2f} / {med[k + '_cpu']:.2f}" if k + "_cpu" in med else f"{k} {med[k]:.2f}"
        for k in ("imports", "build", "example", "first_turn")) + f"; loaded at the first turn: {runs[-1]['heavy']}")


if __name__ == "__main__":
    main()
