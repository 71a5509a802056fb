"""The run history window: runs from the database in a sortable, filterable table, curves of the selected
runs, the diff of two, and Open run handing graph and run to the main window."""
import pytest
from PySide6.QtCore import Qt

from engine.history import History
from engine.project import Project
from gui.runs_window import RunsWindow
from resources import path

XOR = str(path("examples", "xor.json"))


def fill(db, n=30):
    h = History(db)
    p = Project.load(XOR)
    for i in range(n):
        p.training["lr"] = 0.001 * (i + 1)
        p.training["optimizer"] = "adam" if i % 2 else "sgd"
        r = h.start(p, params=9 + i, macs=6)
        for e in range(1, 4):
            h.epoch(r, e, {"train_loss": 1.0 / (e + i), "val_loss": 2.0 / (e + i)})
        h.finish(r, "completed" if i % 3 else "diverged", {"val_loss": 2.0 / (3 + i), "train_loss": 1.0 / (3 + i)})
    return h


def rows(w):
    return [w.proxy.index(r, 0).data() for r in range(w.proxy.rowCount())]


def test_table_filters_sorts_and_diffs(qtbot, tmp_path):
    fill(tmp_path / "runs.sqlite")
    w = RunsWindow(tmp_path / "runs.sqlite")
    qtbot.addWidget(w)
    assert w.proxy.rowCount() == 30 and "lr" in w.model.columns and "optimizer" in w.model.columns
    assert "val_loss" in w.model.columns and "batch_size" not in w.model.columns   # only settings that vary
    w.search.setText("adam")
    assert w.proxy.rowCount() == 15 and w.count.text() == "15 of 30 runs"
    w.status.setCurrentText("diverged")
    assert {w.model.runs[w.proxy.mapToSource(w.proxy.index(r, 0)).row()]["status"]
            for r in range(w.proxy.rowCount())} == {"diverged"}
    w.search.setText("")
    w.status.setCurrentText("any status")
    col = w.model.columns.index("val_loss")
    w.table.sortByColumn(col, Qt.SortOrder.AscendingOrder)
    vals = [w.model.runs[w.proxy.mapToSource(w.proxy.index(r, 0)).row()]["result"]["val_loss"]
            for r in range(w.proxy.rowCount())]
    assert vals == sorted(vals)                                        # numbers sort as numbers
    sel = w.table.selectionModel()
    w.table.selectRow(0)
    w.table.setSelectionMode(w.table.SelectionMode.MultiSelection)
    w.table.selectRow(1)
    assert len(w.selected()) == 2
    assert "~ lr:" in w.diff.toPlainText() and "val_loss" in w.diff.toPlainText()
    assert len(w.curves.getPlotItem().listDataItems()) == 2
    sel.clearSelection()


def test_open_run_hands_over_run_and_graph(qtbot, tmp_path):
    fill(tmp_path / "runs.sqlite", 3)
    w = RunsWindow(tmp_path / "runs.sqlite")
    qtbot.addWidget(w)
    w.table.selectRow(1)
    with qtbot.waitSignal(w.open_run) as got:
        w.open_button.click()
    run, graph = got.args
    assert run["id"] == w.selected()[0]["id"] and graph == Project.load(XOR).graph.to_dict()


def test_unreadable_database_is_one_line_in_the_window(qtbot, tmp_path):
    f = tmp_path / "runs.sqlite"
    f.write_bytes(b"garbage" * 200)
    w = RunsWindow(f)
    qtbot.addWidget(w)
    assert "runs.sqlite" in w.count.text() and "\n" not in w.count.text() and w.model.rowCount() == 0
