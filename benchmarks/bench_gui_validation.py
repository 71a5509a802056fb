"""Re-validation + canvas update after one edit on a 200-node graph (budget: one 60 Hz frame, 16 ms).

Run: QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_validation.py
Prints the median over many edits of Document.set_hparam → shape inference (engine.shapes.infer, memoised
per node) → scene items updated, for a typical edit (a conv's filters: its consumers change) and the worst
case (the input shape: every node changes), then a typical edit in the full window (summary table,
inspector, status) including the canvas repaint. Every edit sets a value not seen before.
"""
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QStandardPaths  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.graph import Graph  # noqa: E402
from engine.project import Project  # noqa: E402
from engine.shapes import _LAYERS, _SHAPES, infer  # noqa: E402
from gui.document import Document  # noqa: E402
from gui.layout import layered  # noqa: E402
from gui.mainwindow import MainWindow  # noqa: E402
from gui.scene import GraphScene  # noqa: E402

N_BLOCKS = 66               # Input + 66 × (Conv2D, BatchNorm, ReLU) = 199 nodes, + a Flatten = 200


def big_project():
    g = Graph()
    g.add_node("Input", "x", {"shape": [3, 32, 32]})
    prev = "x"
    for i in range(N_BLOCKS):
        for t, c in (("Conv2D", {"filters": 8, "padding": "same"}), ("BatchNorm", {}), ("ReLU", {})):
            name = g.add_node(t, f"{t.lower()}{i}", c).name
            g.connect(prev, name)
            prev = name
    g.add_node("Flatten", "flat")
    g.connect(prev, "flat")
    for n, (x, y) in layered(g, wrap=20).items():
        g.nodes[n].meta.update(x=x, y=y)
    return Project(graph=g)


def measure(doc, after, reps=200, node="conv2d0", key="filters", value=lambda k: 9 + k):
    """Median and max ms of one edit + `after`; every edit sets a new value (engine memos cannot answer it)."""
    times = []
    for k in range(reps):
        t0 = time.perf_counter()
        doc.set_hparam(node, key, value(k))
        after()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, max(times) * 1e3


def main():
    QStandardPaths.setTestModeEnabled(True)
    app = QApplication.instance() or QApplication([])
    doc = Document(big_project())
    assert len(doc.graph.nodes) == 200 and not any(i.error for i in doc.infos.values())
    scene = GraphScene(doc)
    med, worst = measure(doc, lambda: None)
    print(f"200 nodes, conv filters edit → shape inference → scene items updated: median {med:.2f} ms "
          f"(max {worst:.2f} ms)")
    med_all, worst_all = measure(doc, lambda: None, 60, "x", "shape", lambda k: [3, 33 + k, 33 + k])
    print(f"200 nodes, input shape edit (every node re-inferred and redrawn): median {med_all:.2f} ms "
          f"(max {worst_all:.2f} ms)")
    win = MainWindow(Document(big_project()), training=False)
    win.resize(1400, 900)
    win.show()
    app.processEvents()
    med2, worst2 = measure(win.doc, lambda: (win.view.viewport().repaint(), app.processEvents()), reps=60)
    print(f"200 nodes, full window (summary table + canvas repaint): median {med2:.2f} ms (max {worst2:.2f} ms)")
    ts = []
    for _ in range(30):
        t0 = time.perf_counter()
        _SHAPES.clear()
        _LAYERS.clear()
        infer(doc.graph)
        ts.append(time.perf_counter() - t0)
    print(f"for reference, engine.shapes.infer of all 200 nodes, memos cleared: median {statistics.median(ts) * 1e3:.2f} ms")
    print("16 ms budget: typical edit", "OK" if med < 16 else "OVER", "· worst case", "OK" if med_all < 16 else "OVER")
    win.doc.undo_stack.setClean()
    win.close()
    del scene


if __name__ == "__main__":
    main()
