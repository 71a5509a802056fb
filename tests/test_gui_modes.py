"""View ▸ Build / Train: the window opens in Build; while building the canvas gets at least half the window; Train shows the training
panel; a run starting switches to Train."""
import tempfile

from gui.mainwindow import MainWindow, default_example


def test_build_gives_the_canvas_half_the_window_and_a_run_switches_to_train(qtbot):
    w = MainWindow(autosave_dir=tempfile.mkdtemp())
    w.maybe_save = lambda: True
    qtbot.addWidget(w)
    w.open_path(default_example(), template=True)
    w.show()
    qtbot.waitExposed(w)
    assert w.modes.mode == "build" and w.modes.actions["build"].isChecked()     # no run: the window opens in Build
    assert not w.training.isVisible() and w.summary.isVisible()
    qtbot.waitUntil(lambda: w.view.height() >= w.height() / 2)
    w.modes.actions["train"].trigger()
    assert w.training.isVisible() and w.modes.mode == "train"
    train_h = w.view.height()
    w.modes.actions["build"].trigger()
    qtbot.waitUntil(lambda: w.view.height() > train_h)
    assert not w.training.isVisible()
    w.doc.set_locked(True)                                # as when a run starts
    assert w.modes.mode == "train" and w.training.isVisible()
    w.doc.set_locked(False)
    shortcuts = {a.text(): a.shortcut().toString() for a in w.modes.actions.values()}
    assert shortcuts == {"&Build": "Ctrl+1", "&Train": "Ctrl+2"}
