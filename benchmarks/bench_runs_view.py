"""Run history window at size: open 1,000 recorded runs, filter and sort them (targets: < 1 s, < 100 ms).

    python benchmarks/bench_runs_view.py [--runs 1000]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    a = ap.parse_args()
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication
    from engine.history import History
    from engine.project import Project
    from gui.runs_window import RunsWindow
    from resources import path
    app = QApplication.instance() or QApplication([])
    db = Path(tempfile.mkdtemp()) / "runs.sqlite"
    h, p = History(db), Project.load(str(path("examples", "moons-mlp.json")))
    t = time.perf_counter()
    for i in range(a.runs):
        p.training["lr"], p.training["batch_size"] = 10 ** (-4 + 3 * (i % 97) / 97), 16 << (i % 4)
        p.training["optimizer"] = ("adam", "sgd", "rmsprop")[i % 3]
        r = h.start(p, params=100 + i, macs=200 + i)
        for e in range(1, 21):
            h.epoch(r, e, {"train_loss": 1 / e, "val_loss": 1.2 / e, "val_accuracy": 1 - 1 / (e + i % 7)})
        h.finish(r, "completed", {"val_loss": 0.06, "val_accuracy": 0.9 + (i % 10) / 100, "train_loss": 0.05})
    print(f"recorded {a.runs} runs × 20 epochs in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    w = RunsWindow(db)
    w.show()
    app.processEvents()
    print(f"open: {1000 * (time.perf_counter() - t):.0f} ms for {w.model.rowCount()} runs")
    times = []
    for text in ("adam", "rmsprop 32", "completed", "", "sgd 0.00"):
        t = time.perf_counter()
        w.search.setText(text)
        app.processEvents()
        times.append(1000 * (time.perf_counter() - t))
    print(f"filter: {max(times):.1f} ms worst of {len(times)} ({', '.join(f'{x:.1f}' for x in times)})")
    t = time.perf_counter()
    w.table.sortByColumn(w.model.columns.index("val_accuracy"), Qt.SortOrder.DescendingOrder)
    app.processEvents()
    print(f"sort by val_accuracy: {1000 * (time.perf_counter() - t):.1f} ms")


if __name__ == "__main__":
    main()
