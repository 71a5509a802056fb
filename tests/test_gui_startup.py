"""Start-up of the window: the training dock builds a view when its tab is first shown, asked for, or a run
starts, not all of them when the window opens."""
from engine.project import Project
from gui.document import Document
from gui.training.dock import Later, TrainingDock
from gui.training.views import VIEWS, CompareView, PCAView
from resources import path


def test_views_built_when_first_needed(qtbot):
    d = TrainingDock(Document(Project.load(path("examples", "digits-mlp.json"))))
    qtbot.addWidget(d)
    assert not isinstance(d.views[0], Later)
    assert all(isinstance(v, Later) for v in d.views[1:])
    assert [d.tabs.tabText(i) for i in range(d.tabs.count())] == [c.title for c in VIEWS]
    i = next(i for i, c in enumerate(VIEWS) if c is PCAView)
    d.tabs.setCurrentIndex(i)                                  # shown: built in its place, same title
    assert isinstance(d.views[i], PCAView) and d.tabs.widget(i) is d.views[i]
    assert d.tabs.tabText(i) == PCAView.title and d.tabs.currentIndex() == i
    cmp = d.view(CompareView)                                  # asked for: built, with the run list
    assert isinstance(cmp, CompareView) and d.runs.parent() is not None
    d._renew()                                                 # what Train does first: every view real
    assert not any(isinstance(v, Later) for v in d.views)


def test_builtin_read_from_a_file_loads_in_the_background(qtbot):
    from gui.training.dataset_panel import DatasetPanel
    doc = Document(Project.load(path("examples", "digits-mlp.json")))
    panel = DatasetPanel(doc)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.loaded, timeout=60000, check_params_cb=lambda ds: ds is not None):
        panel.use_builtin("mnist")
        assert panel.dataset is None and "Reading" in panel.info.text()      # the window did not wait
    assert len(panel.dataset) == 10000 and "mnist" in panel.info.text()
