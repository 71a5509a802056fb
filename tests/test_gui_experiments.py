"""The Tools menu: runs trained in the window land in the run history, Open run restores one, a search trial
applies as one undo step, Try it follows the trained model, Evaluate reads the test split."""
import pytest

from engine.history import History
from engine.project import Project
from gui.mainwindow import MainWindow
from resources import path

HANG_MS = 600_000


@pytest.fixture
def win(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOARD_RUNS", str(tmp_path / "runs.sqlite"))
    w = MainWindow(autosave_dir=tmp_path)
    w.maybe_save = lambda: True                                      # no "save changes?" dialog in a test
    qtbot.addWidget(w)
    return w


def train(qtbot, w, epochs=2, **training):
    p = Project.load(str(path("examples", "moons-mlp.json")))
    p.training.update(epochs=epochs, **training)
    w._replace(p)
    w.training.start()
    qtbot.waitUntil(lambda: (w.training.drain(), not w.training.running)[1], timeout=HANG_MS)
    return p


def test_a_window_run_is_recorded_and_can_be_opened_again(qtbot, win):
    p = train(qtbot, win)
    (run,) = History().runs()
    assert run["status"] == "completed" and run["epochs"] == 2 and run["project"] == p.name
    assert len(History().curves(run["id"])["train_loss"]) == 2
    win.doc.set_hparam("hidden1", "units", 3)
    assert win.doc.graph.nodes["hidden1"].config["units"] == 3
    win.experiments.open_run(run, History().graph(run["id"]))
    assert win.doc.graph.nodes["hidden1"].config["units"] == 16 and win.doc.project.training["epochs"] == 2


def test_apply_trial_is_one_undo_step_and_checked_first(qtbot, win):
    win._replace(Project.load(str(path("examples", "moons-mlp.json"))))
    before = win.doc.project.to_dict()
    win.experiments.apply_trial({"training.lr": 0.05, "hidden1.units": 32, "training.batch_size": 64})
    assert win.doc.project.training["lr"] == 0.05 and win.doc.graph.nodes["hidden1"].config["units"] == 32
    win.doc.undo_stack.undo()
    assert win.doc.project.to_dict() == before                       # one step undoes all three
    win.experiments.apply_trial({"training.lr": 0.05, "nope.units": 3})
    assert win.doc.project.to_dict() == before and "cannot apply" in win.statusBar().currentMessage()


def test_try_it_follows_the_trained_model_and_evaluate_reads_the_test_split(qtbot, win):
    train(qtbot, win, test_split=0.2)
    t = win.experiments.tryit
    assert t.model is win.doc.trained and t.tabs.isTabEnabled(3)
    t.row.setValue(1)
    assert t.result["kind"] == "classes" and "true:" in t.answer.text()
    win.experiments.evaluate()
    qtbot.waitUntil(lambda: hasattr(win.experiments, "last_evaluation"), timeout=HANG_MS)
    res = win.experiments.last_evaluation
    assert res["test_samples"] == 80 and 0 <= res["test_accuracy"] <= 1
    assert "test split: test loss" in win.statusBar().currentMessage()
