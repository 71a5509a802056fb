"""Qt object lifetimes: dropping a Document with a full undo stack, and exiting after a copy, must not crash.

Both crashes happen in C++ (a segfault kills the process), so each case runs in a fresh interpreter.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

ROOT = Path(__file__).resolve().parent.parent


def run(code):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit code {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    return r.stdout


def test_garbage_collecting_documents_with_undo_history_is_safe():
    out = run("""
        import gc
        from PySide6.QtWidgets import QApplication
        from engine.project import Project
        from gui.document import Document
        from resources import path
        app = QApplication([])
        for k in range(4):
            doc = Document(Project.load(path("examples", "digits-cnn.json")))
            names = list(doc.graph.nodes)
            for i in range(60):                      # moves, merged hparam edits, undo, redo, truncation
                doc.move_nodes({names[i % len(names)]: (i, -i)})
                doc.set_hparam("conv1", "filters", 4 + i % 3)
                if i % 7 == 0:
                    doc.undo_stack.undo()
                if i % 11 == 0:
                    doc.undo_stack.redo()
            del doc
            print(gc.collect())
        print("ok")
    """)
    assert out.strip().endswith("ok")


def test_exiting_after_copying_layers_is_clean():
    out = run("""
        import tempfile
        from PySide6.QtCore import QStandardPaths
        from PySide6.QtWidgets import QApplication
        from gui.mainwindow import MainWindow, default_example
        QStandardPaths.setTestModeEnabled(True)
        app = QApplication([])
        w = MainWindow(autosave_dir=tempfile.mkdtemp(), training=False)
        w.open_path(default_example(), template=True)
        w.scene.select(list(w.doc.graph.nodes)[:2])
        w.copy()
        n = len(w.doc.graph.nodes)
        w.paste()
        print(len(w.doc.graph.nodes) - n)
    """)
    assert out.split() == ["2"]
