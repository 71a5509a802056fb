"""Search ranges marked in the inspector and the training form: mark, unmark, undo/redo, saved with the project,
followed by renames and deletes, read by the search; a block of selected layers marked "repeat 1–4"; Apply of
a trial that repeats a block is one undo step."""
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialog

from engine import search
from engine.errors import LayerboardError
from engine.project import Project
from gui import search_marks
from gui.document import Document
from gui.inspector import Inspector
from gui.search_window import SearchWindow
from gui.training.settings import SettingsForm
from resources import path


@pytest.fixture
def doc(tmp_path):
    d = Document()
    d.load(Project.load(str(path("examples", "moons-mlp.json"))))
    return d


@pytest.fixture
def insp(qtbot, doc):
    w = Inspector(doc)
    qtbot.addWidget(w)
    w.show()
    return w


def answer(monkeypatch, *fills):
    """The range dialog answers with each fill in turn (fn(dialog) then OK), then Cancel."""
    todo = list(fills)

    def exec_(d):
        if not todo:
            return QDialog.DialogCode.Rejected
        todo.pop(0)(d)
        return QDialog.DialogCode.Accepted
    monkeypatch.setattr(search_marks.RangeDialog, "exec", exec_)


def values(text):
    def fill(d):
        d.kind.setCurrentIndex(0)
        d.choices.setText(text)
    return fill


def test_mark_unmark_undo_redo_a_nodes_setting(qtbot, doc, insp, monkeypatch):
    insp.show_node("hidden1")
    b = insp.marks["units"]
    assert not b.marked and insp.labels["units"].text() == "units"
    answer(monkeypatch, values("16, 32, 64"))
    QTest.mouseClick(b, Qt.MouseButton.LeftButton)
    assert doc.project.search == {"hidden1.units": {"choices": [16, 32, 64]}}
    assert b.isChecked() and b.note.text() == "search ∈ {16, 32, 64}" and not b.note.isHidden() and insp.labels["units"].text() == "⌕ units"
    assert doc.dirty and doc.undo_stack.undoText() == "Search range hidden1.units"
    doc.undo_stack.undo()
    assert doc.project.search == {} and not b.isChecked() and insp.labels["units"].text() == "units"
    assert b.note.isHidden()
    doc.undo_stack.redo()
    assert doc.project.search["hidden1.units"] == {"choices": [16, 32, 64]} and b.isChecked()
    answer(monkeypatch, lambda d: d._unmark())                       # the dialog's Unmark button
    QTest.mouseClick(b, Qt.MouseButton.LeftButton)
    assert doc.project.search == {} and not b.isChecked()
    doc.undo_stack.undo()
    assert "hidden1.units" in doc.project.search


def test_a_refused_range_changes_nothing_and_says_why(qtbot, doc, insp, monkeypatch):
    insp.show_node("hidden1")
    seen = []
    answer(monkeypatch, values("16, 0"), lambda d: seen.append(d.error.text()))
    QTest.mouseClick(insp.marks["units"], Qt.MouseButton.LeftButton)
    assert doc.project.search == {} and doc.undo_stack.count() == 0
    assert seen and "units must be ≥ 1" in seen[0]


def test_training_lr_on_a_log_scale_is_saved_and_read_by_the_search(qtbot, doc, insp, monkeypatch, tmp_path):
    form = SettingsForm(doc)
    qtbot.addWidget(form)

    def log_range(d):
        d.kind.setCurrentIndex(1)
        d.low.setText("1e-4")
        d.high.setText("0.1")
        d.log.setChecked(True)
    answer(monkeypatch, log_range)
    form.marks["lr"].click()
    assert "seed" not in form.marks and "loss" not in form.marks      # never searched: they change the comparison
    insp.show_node("hidden1")
    answer(monkeypatch, values("8, 16, 32"))
    insp.marks["units"].click()
    want = {"training.lr": {"low": 1e-4, "high": 0.1, "log": True}, "hidden1.units": {"choices": [8, 16, 32]}}
    assert doc.project.search == want and form.marks["lr"].note.text() == "search ∈ [0.0001, 0.1] log"
    doc.save(tmp_path / "m.json")
    p = Project.load(tmp_path / "m.json")
    assert p.search == want
    search.check_space(p, p.search)
    w = SearchWindow(p)
    qtbot.addWidget(w)
    assert w.space == want and "marked ⌕ in the inspector" in w.ranges.text()
    assert "hidden1.units ∈ {8, 16, 32}" in w.ranges.text()


def test_ranges_follow_renames_and_leave_with_deleted_layers(qtbot, doc):
    search_marks.set_range(doc, "hidden2.units", {"choices": [8, 16]})
    search_marks.mark_repeat(doc, ["relu2", "hidden2"], 1, 3)
    key = "repeat:hidden2+relu2"                                    # graph order, whatever the selection order
    assert doc.project.search[key] == {"low": 1, "high": 3, "int": True, "repeat": ["hidden2", "relu2"]}
    doc.rename("hidden2", "wide")
    assert set(doc.project.search) == {"wide.units", "repeat:wide+relu2"}
    search.check_space(doc.project, doc.project.search)
    doc.undo_stack.undo()
    assert set(doc.project.search) == {"hidden2.units", key}
    doc.remove_nodes(["hidden2"])
    assert doc.project.search == {}                                 # one step: the layer and its ranges
    doc.undo_stack.undo()
    assert set(doc.project.search) == {"hidden2.units", key} and "hidden2" in doc.graph.nodes


def test_selected_layers_are_marked_as_a_repeated_block(qtbot, doc, insp):
    insp.show_nodes(["hidden2", "relu2"])
    panel = insp.block_panel
    panel.high.setValue(3)
    assert panel.button.text() == "Search: repeat 1–3"
    panel.button.click()
    assert doc.project.search["repeat:hidden2+relu2"]["high"] == 3 and "× 1–3" in panel.note.text()
    doc.undo_stack.undo()
    assert doc.project.search == {} and panel.unmark_button.isHidden()
    doc.undo_stack.redo()
    insp.show_node("relu2")
    assert "block hidden2+relu2 repeated × 1–3" in insp.blocks.text() and not insp.blocks.isHidden()
    insp.show_nodes(["hidden1", "hidden2"])
    insp.block_panel.button.click()
    assert "exactly one layer outside" in insp.block_panel.note.text()
    assert list(doc.project.search) == ["repeat:hidden2+relu2"]


def test_applying_a_trial_that_repeats_a_block_is_one_undo_step(qtbot, doc):
    search_marks.mark_repeat(doc, ["hidden2", "relu2"], 1, 3)
    before = (set(doc.graph.nodes), set(doc.graph.edges))
    search_marks.apply_trial(doc, {"repeat:hidden2+relu2": 3, "hidden1.units": 32, "training.lr": 0.01})
    g = doc.graph
    assert {"hidden2_r2", "relu2_r2", "hidden2_r3", "relu2_r3"} <= set(g.nodes)
    assert g.inputs_of("out") == ["relu2_r3"] and doc.project.training["lr"] == 0.01
    assert all(i.ok for i in doc.infos.values())
    doc.undo_stack.undo()
    assert (set(doc.graph.nodes), set(doc.graph.edges)) == before and doc.graph.nodes["hidden1"].config["units"] == 16
    doc.set_locked(True)                                             # while training: refused, nothing changes
    at = doc.undo_stack.index()
    with pytest.raises(LayerboardError, match="training"):
        search_marks.apply_trial(doc, {"repeat:hidden2+relu2": 2})
    assert set(doc.graph.nodes) == before[0] and doc.undo_stack.index() == at


def test_screenshot_of_marked_ranges(qtbot, doc, insp, tmp_path):
    search_marks.set_range(doc, "hidden1.units", {"choices": [16, 32, 64]})
    doc.set_hparam("hidden1", "units", 32)
    insp.resize(340, 520)
    insp.show_node("hidden1")
    qtbot.wait(50)
    out = tmp_path / "inspector-search-ranges.png"
    assert insp.grab().save(str(out))
    assert out.stat().st_size > 1000


def test_the_canvas_shows_marked_layers(qtbot, doc):
    from gui.scene import GraphScene
    from gui.search_tags import SearchTags
    scene = GraphScene(doc)
    t = SearchTags(scene)
    text = lambda: {n: it.text() for n, (it, _) in t.items.items()}      # noqa: E731
    assert text() == {}
    search_marks.set_range(doc, "hidden1.units", {"choices": [8, 16]})
    search_marks.mark_repeat(doc, ["hidden2", "relu2"], 1, 4)
    assert text() == {"hidden1": "⌕ units", "hidden2": "⌕ block × 1–4", "relu2": "⌕ block × 1–4"}
    assert t.items["hidden1"][0].parentItem() is scene.nodes["hidden1"]           # moves with its layer
    doc.rename("hidden1", "wide")
    assert text()["wide"] == "⌕ units" and "hidden1" not in text()
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert text() == {"hidden1": "⌕ units"}
    doc.remove_nodes(["hidden1"])
    assert text() == {}
    doc.undo_stack.undo()
    assert text() == {"hidden1": "⌕ units"} and t.items["hidden1"][0].scene() is scene
