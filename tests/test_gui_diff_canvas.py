"""The diff of two runs coloured on the canvas: added, changed and removed layers, ghosts for removed layers
not on the canvas, a legend with Clear; the document is never edited."""
import pytest
from PySide6.QtCore import QCoreApplication, QSettings, QStandardPaths
from PySide6.QtWidgets import QApplication, QGraphicsPathItem, QMessageBox

from engine import structure
from engine.history import History
from engine.project import Project
from gui.diff_overlay import COLOURS, marks
from gui.mainwindow import MainWindow
from gui.style import apply_theme
from resources import path


@pytest.fixture
def window(qapp, qtbot, tmp_path, monkeypatch):
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QCoreApplication.setOrganizationName("LayerboardTest")
    QCoreApplication.setApplicationName("LayerboardTest")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    monkeypatch.setenv("LAYERBOARD_RUNS", str(tmp_path / "runs.sqlite"))
    apply_theme(QApplication.instance(), "light")
    w = MainWindow(autosave_dir=tmp_path / "data", training=False)
    qtbot.addWidget(w)
    w.resize(1300, 700)
    w.show()
    qtbot.waitExposed(w)
    return w


def two_runs():
    """Run a: moons with an extra Dropout; run b: hidden1 wider, Dense+ReLU pair repeated, no Dropout."""
    a = Project.load(str(path("examples", "moons-mlp.json")))
    a.graph.add_node("Dropout", "drop", {}, {"x": 420, "y": 260})
    b = Project.load(str(path("examples", "moons-mlp.json")))
    b.graph = structure.repeat(b.graph, ["hidden2", "relu2"], 2)
    b.graph.nodes["hidden1"].config["units"] = 32
    b.training["lr"] = 0.02
    h = History()
    for p in (a, b):
        h.finish(h.start(p, params=1, macs=1), "completed", {"val_loss": 0.3})
    return a, b


def test_marks_of_a_diff():
    d = {"nodes": {"added": ["n1", "n9"], "removed": ["old", "gone"], "changed": {"fc": {"units": (16, 32)}}}}
    state, ghosts = marks(d, {"n1", "fc", "old"})
    assert state == {"n1": ("added", "+ added"), "fc": ("changed", "~ units 16 → 32"), "old": ("removed", "− removed")}
    assert ghosts == ["gone"]


def test_show_on_canvas_colours_the_diff_and_clear_takes_it_away(window, qtbot, tmp_path):
    a, b = two_runs()
    window.doc.load(b)                                       # the canvas shows the second run's graph
    undo, dirty = window.doc.undo_stack.count(), window.doc.dirty
    before = len(window.scene.items())
    window.experiments.show_runs()
    runs = window.experiments.runs
    qtbot.addWidget(runs)
    runs.table.setSelectionMode(runs.table.SelectionMode.MultiSelection)
    runs.table.selectRow(0)
    runs.table.selectRow(1)
    assert runs.canvas_button.isEnabled()
    runs.canvas_button.click()
    ov = window.experiments.diff
    assert {n: s for n, (s, _) in ov.state.items()} == {"hidden2_r2": "added", "relu2_r2": "added",
                                                         "hidden1": "changed"}
    assert "units 16 → 32" in ov.state["hidden1"][1]
    rings = [c for c in window.scene.nodes["hidden1"].childItems() if isinstance(c, QGraphicsPathItem)]
    assert rings and rings[0].pen().color().name() == COLOURS["changed"]
    ghosts = [it for it in window.scene.items() if isinstance(it, QGraphicsPathItem) and it.parentItem() is None
              and "'drop' was in the first run" in it.toolTip()]
    assert len(ghosts) == 1 and (ghosts[0].pos().x(), ghosts[0].pos().y()) == (420, 260)
    leg = ov.legend
    assert leg.isVisible() and "2 added, 1 changed, 1 removed" in leg.extra.text() and "drop" in leg.extra.text()
    assert "Settings: lr" in leg.extra.text() and "→ 0.02" in leg.extra.text()
    vp = window.view.viewport().geometry()
    assert leg.geometry().right() <= vp.right() and leg.geometry().top() >= vp.top()
    window.resize(1100, 650)                                 # the legend follows the canvas's corner
    qtbot.wait(50)
    assert leg.geometry().right() <= window.view.viewport().geometry().right()
    assert window.doc.undo_stack.count() == undo and window.doc.dirty == dirty     # view state, not an edit
    window.view.zoom_to_fit()
    qtbot.wait(50)
    assert window.view.grab().save(str(tmp_path / "diff.png"))
    leg.clear_button.click()
    assert not leg.isVisible() and ov.state == {} and len(window.scene.items()) == before
    assert not [c for c in window.scene.nodes["hidden1"].childItems() if isinstance(c, QGraphicsPathItem)]
    window.experiments.show_diff(*runs.last_diff)
    window.doc.load(a)                                       # another project: the colours go
    assert not leg.isVisible() and ov.state == {}
