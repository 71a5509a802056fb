"""The search window runs `layerboard search` in the background, shows its trials live and applies one;
it can also watch a study that other workers run."""
import pytest

from engine import search
from engine.project import Project
from gui.search_window import SearchWindow, best_so_far
from resources import path


@pytest.fixture
def moons(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOARD_RUNS", str(tmp_path / "runs.sqlite"))
    p = Project.load(str(path("examples", "moons-mlp.json")))
    p.save(tmp_path / "moons.json")
    return Project.load(tmp_path / "moons.json")


def test_best_so_far_keeps_the_running_best():
    rows = [(0, "complete", [0.5], {}), (1, "pruned", None, {}), (2, "complete", [0.7], {}),
            (3, "complete", [0.2], {})]
    assert best_so_far(rows) == ([0, 2, 3], [0.5, 0.5, 0.2])
    assert best_so_far(rows, maximize=True) == ([0, 2, 3], [0.5, 0.7, 0.7])


def test_search_runs_in_the_background_and_applies_a_trial(qtbot, moons, tmp_path):
    w = SearchWindow(moons)
    qtbot.addWidget(w)
    w.trials.setValue(4)
    w.epochs.setValue(3)
    w.storage.setText(str(tmp_path / "s.journal"))
    w.start.click()
    assert not w.start.isEnabled() and w.stop_button.isEnabled()       # the window keeps working meanwhile
    qtbot.waitUntil(lambda: w.start.isEnabled(), timeout=300_000)
    assert w.status.text().startswith("search finished: 4 trials"), w.status.text()
    assert w.table.rowCount() == 4 and w.best.getPlotItem().listDataItems()
    w.table.selectRow(2)
    with qtbot.waitSignal(w.apply) as got:
        w.apply_button.click()
    (values,) = got.args
    assert set(values) == set(search.default_space(moons))
    assert values == {t.number: t.params for t in w.study.trials}[2]


def test_watching_a_study_run_elsewhere(qtbot, moons, tmp_path):
    storage = str(tmp_path / "w.journal")
    search.run(moons, 3, storage, name="elsewhere", epochs=2)
    w = SearchWindow(moons)
    qtbot.addWidget(w)
    w.storage.setText(storage)
    w.name.setText("elsewhere")
    w.watch_button.click()
    assert w.table.rowCount() == 3 and "3 trials" in w.status.text()
