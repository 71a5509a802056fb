"""The dataset panel's column table: the report of a CSV, undoable edits of type, role and missing values,
a chart of the selected column."""
import numpy as np
import pyqtgraph as pg

from engine.project import Project
from gui.document import Document
from gui.training.dataset_panel import DatasetPanel
from resources import path

CSV = "island,bill,kind,y\n" + "\n".join(f"{['Biscoe', 'Dream'][i % 2]},{'' if i % 5 == 0 else 30 + i},"
                                           f"{i % 3},{i % 2}" for i in range(30)) + "\n"


def panel_for(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOARD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "d.csv").write_text(CSV)
    p = Project.load(path("examples", "xor.json"))
    p.path = None
    doc = Document(p)
    panel = DatasetPanel(doc)
    qtbot.addWidget(panel)
    panel.resize(700, 900)
    panel.show()
    panel.import_file(tmp_path / "d.csv")
    return doc, panel


def row_of(t, name):
    return next(i for i in range(t.rowCount()) if t.item(i, 0).text() == name)


def test_column_table_shows_the_report_and_edits_are_undoable(qtbot, tmp_path, monkeypatch):
    doc, panel = panel_for(qtbot, tmp_path, monkeypatch)
    cols = panel.columns
    t = cols.table
    assert cols.isVisible() and t.rowCount() == 4
    r = row_of(t, "bill")
    assert t.cellWidget(r, 1).currentText() == "number" and t.item(r, 3).text() == "6"     # 6 empty cells
    assert t.cellWidget(r, 4).currentText() == "median" and t.item(r, 5).text() == "6"
    assert panel.dataset.x.shape == (30, 5)                    # island one-hot 2, bill, was missing, kind
    box = t.cellWidget(row_of(t, "kind"), 1)
    box.setCurrentText("category")
    box.activated.emit(box.currentIndex())
    assert doc.project.dataset["columns"] == {"kind": {"type": "category"}}
    assert panel.dataset.x.shape == (30, 7)
    box = cols.table.cellWidget(row_of(cols.table, "bill"), 4)
    box.setCurrentText("drop")
    box.activated.emit(box.currentIndex())
    assert len(panel.dataset) == 24 and doc.project.dataset["columns"]["bill"] == {"missing": "drop"}
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert "columns" not in doc.project.dataset and panel.dataset.x.shape == (30, 5)
    panel.grab().save(str(tmp_path / "columns.png"))


def test_chart_of_the_selected_column(qtbot, tmp_path, monkeypatch):
    doc, panel = panel_for(qtbot, tmp_path, monkeypatch)
    cols = panel.columns
    cols.table.setCurrentCell(row_of(cols.table, "bill"), 0)
    qtbot.waitUntil(lambda: cols.caption.text() == "bill: 24 values, 6 missing")   # counted in the background
    bars = [i for i in cols.chart.getPlotItem().items if isinstance(i, pg.BarGraphItem)]
    assert len(bars) == 1 and np.sum(bars[0].opts["height"]) == 24
    cols.table.setCurrentCell(row_of(cols.table, "island"), 0)
    qtbot.waitUntil(lambda: cols.caption.text().startswith("island: 30 values"))
    bars = [i for i in cols.chart.getPlotItem().items if isinstance(i, pg.BarGraphItem)]
    assert list(bars[0].opts["height"]) == [15, 15]


def test_chart_counts_off_the_window_thread(qtbot, tmp_path, monkeypatch):
    import threading

    from gui.training import columns
    doc, panel = panel_for(qtbot, tmp_path, monkeypatch)
    cols = panel.columns
    seen, gate = [], threading.Event()
    real = columns.column_counts

    def slow(ref, base, name):
        seen.append(threading.current_thread() is threading.main_thread())
        gate.wait(10)                                   # the window stays responsive meanwhile
        return real(ref, base, name)
    monkeypatch.setattr(columns, "column_counts", slow)
    cols.table.setCurrentCell(row_of(cols.table, "bill"), 0)
    assert cols.caption.text() == "bill: counting…"
    cols.table.setCurrentCell(row_of(cols.table, "island"), 0)     # the later selection wins
    gate.set()
    qtbot.waitUntil(lambda: cols.caption.text().startswith("island:"))
    qtbot.wait(100)
    assert cols.caption.text().startswith("island:") and seen and not any(seen)


def test_large_file_reads_in_the_background_with_progress_and_cancel(qtbot, tmp_path, monkeypatch):
    import threading

    from engine.data import cache, table
    from gui.training import columns, dataset_panel
    monkeypatch.setattr(dataset_panel, "BACKGROUND_BYTES", 0)
    monkeypatch.setattr(table, "PART", 4096)
    monkeypatch.setattr(table, "BLOCK", 1 << 12)
    gate, seen = threading.Event(), []
    real = columns.reporting

    def gated(hook):                                   # each progress step waits until the test opens the gate
        return real(lambda what, f: (gate.wait(20), seen.append(what), hook(what, f)))
    monkeypatch.setattr(columns, "reporting", gated)
    doc, panel = panel_for(qtbot, tmp_path, monkeypatch)
    assert panel.dataset is None and panel.loader.isVisible() and "Reading" in panel.info.text()
    gate.set()
    qtbot.waitUntil(lambda: panel.dataset is not None, timeout=20000)
    assert panel.dataset.x.shape == (30, 5) and not panel.loader.isVisible() and panel.columns.isVisible()
    assert "reading" in seen and "encoding" in seen
    gate.clear()
    big = tmp_path / "big.csv"
    big.write_text("a,b,y\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(50_000)))
    panel.import_file(big)
    assert panel.dataset is None and panel.loader.isVisible()
    panel.loader.cancel_btn.click()
    gate.set()
    qtbot.waitUntil(lambda: "cancelled" in panel.info.text(), timeout=20000)
    assert panel.dataset is None and not panel.loader.isVisible()
    assert cache.lookup(big, "parsed", {"delimiter": None}) is None                    # nothing half-written kept
    assert [p.name for p in cache.entry(big, "parsed", {})[0].parent.iterdir()] == []
