"""What Train refuses about the graph as a whole (a second output, no Input) is an error on the nodes the moment the
graph is edited, in the window and in `layerboard summary`, with Train's own line (engine/validate.py); an imported
model's marked outputs are no error, and the Training panel says which of them is trained."""
import json

import pytest

from engine.errors import ShapeError
from engine.graph import Graph
from engine.model import Model
from engine.shapes import infer
from engine.validate import mark, problem, trained_note
from test_gui_onnx import isolated  # noqa: F401  (a fixture: the window's settings in tmp_path)


def dangling():
    """Input -> Dense(h) -> Dense(out), and a second Dense(spare) reading the Input that nobody reads."""
    g = Graph()
    g.add_node("Input", "x", {"shape": [2]})
    g.add_node("Dense", "h", {"units": 4})
    g.add_node("Dense", "out", {"units": 2})
    g.add_node("Dense", "spare", {"units": 3})
    g.connect("x", "h")
    g.connect("h", "out")
    g.connect("x", "spare")
    return g


def test_a_second_output_is_an_error_on_both_ends_with_the_line_train_raises():
    g = dangling()
    assert not any(i.error for i in infer(g).values())        # every layer is fine on its own
    infos = mark(g, dict(infer(g)))
    bad = {n: i.error for n, i in infos.items() if i.error}
    assert set(bad) == {"out", "spare"}
    line = bad["spare"]
    assert "'out'" in line and "'spare'" in line and "exactly one output" in line and "\n" not in line
    with pytest.raises(ShapeError) as e:
        Model(g)
    assert str(e.value) == line                                # Train's refusal is the same line
    g.remove_node("spare")
    assert problem(g) is None and not any(i.error for i in mark(g, dict(infer(g))).values())
    Model(g)


def test_mark_leaves_infers_cached_infos_alone():
    g = dangling()
    base = infer(g)
    mark(g, dict(base))
    assert base["spare"].error is None                        # a replaced entry, not an edited NodeInfo


def test_no_input_is_named_and_an_empty_graph_has_no_problem():
    assert problem(Graph()) is None
    g = Graph()
    g.add_node("Dense", "d", {"units": 2})
    names, line = problem(g)
    assert names == ["d"] and "no Input" in line


def test_the_window_shows_the_second_output_live_and_clears_it_when_connected(qtbot):
    from gui.document import Document
    from engine.project import Project
    g = dangling()
    g.remove_node("spare")
    doc = Document(Project(graph=g))
    assert not any(i.error for i in doc.infos.values())
    doc.add_node("Dense", {"units": 3}, name="spare")
    doc.connect("x", "spare")
    errs = {n for n, i in doc.infos.items() if i.error}
    assert errs == {"out", "spare"}, errs
    doc.undo_stack.undo()                                    # the edge: spare reads nothing, x still read by h
    doc.undo_stack.undo()                                    # the node
    assert not any(i.error for i in doc.infos.values())


def test_the_window_status_counts_it_and_the_card_shows_it(qtbot, tmp_path):
    from gui.mainwindow import MainWindow
    from engine.project import Project
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    w.resize(1200, 760)
    w.show()
    w.doc.load(Project(graph=dangling()))
    assert "2 error(s)" in w.status.text(), w.status.text()
    assert w.scene.nodes["spare"].has_error and w.scene.nodes["out"].has_error
    assert not w.scene.nodes["h"].has_error
    w.grab().save(str(tmp_path / "dangling.png"))


def test_cli_summary_prints_the_line_once_and_fails(tmp_path, capsys):
    from engine.cli import main
    from engine.project import Project
    p = Project(graph=dangling())
    p.save(tmp_path / "p.json")
    assert main(["summary", str(tmp_path / "p.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exactly one output" in err[0], err
    assert main(["summary", "--json", str(tmp_path / "p.json")]) == 1
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert {d["name"] for d in layers if "error" in d} == {"out", "spare"}


def test_marked_outputs_of_an_import_are_no_error_and_the_note_names_the_trained_one():
    g = dangling()
    g.nodes["out"].meta["output"] = 1
    g.nodes["spare"].meta["output"] = 0
    assert problem(g) is None
    note = trained_note(g)
    assert note.startswith("the model trains output 'spare' (the first of 2: 'spare' and 'out')"), note
    assert Model(g).output == "spare"
    assert trained_note(dangling()) is None


def test_an_imported_two_output_model_opens_without_errors_and_the_run_says_which_output_it_trains(
        isolated, qtbot, tmp_path):
    import onnx
    from gui.mainwindow import MainWindow
    from test_gui_onnx import wait_import
    from test_onnx_import_time_major import recurrent_graph
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    w.resize(1360, 820)
    w.show()
    model, _ = recurrent_graph("GRU", "bidirectional", ("Y", "Y_h"), False)
    onnx.save(model, tmp_path / "gru2.onnx")
    assert w.open_path(tmp_path / "gru2.onnx")
    wait_import(qtbot, w)
    assert not [i.error for i in w.doc.infos.values() if i.error]
    assert "no errors" in w.status.text()
    first = trained_note(w.doc.graph)
    assert first and first.startswith("the model trains output '")
    w.training.start()
    note = w.training.message.text()
    assert first in note, note
    w.grab().save(str(tmp_path / "two_outputs.png"))
    qtbot.waitUntil(lambda: not w.training.running, timeout=120000)


def test_cli_train_notes_which_output_of_an_imported_model_it_fits(tmp_path, capsys):
    from engine.cli import main
    from engine.project import Project
    g = dangling()
    g.chain(("probs", "Softmax", {}), after="out")
    g.nodes["probs"].meta["output"] = 0                        # (2,): xor's two classes
    g.nodes["spare"].meta["output"] = 1
    p = Project(graph=g)
    p.save(tmp_path / "p.json")
    assert main(["train", str(tmp_path / "p.json"), "--epochs", "1", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: the model trains output 'probs' (the first of 2: 'probs' and 'spare')" in err, err
