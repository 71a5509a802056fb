"""Window layout and polish: no accidental tabs, Reset layout, remembered size, status tips, About, shortcuts,
undo from number fields, free drop spot, remembered folders, `layerboard proj.json`, the bar after Stop."""
import pytest
from PySide6.QtCore import QCoreApplication, QSettings, QStandardPaths, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QSpinBox, QTextBrowser

from conftest import HANG_MS
from engine import cli
from gui import dirs
from gui.mainwindow import MainWindow, default_example, version


@pytest.fixture
def isolated(qapp, tmp_path, monkeypatch):
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QCoreApplication.setOrganizationName("LayerboardLayoutTest")
    QCoreApplication.setApplicationName("LayerboardLayoutTest")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    return tmp_path


def make(qtbot, tmp_path, **kw):
    w = MainWindow(autosave_dir=tmp_path / "data", **kw)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_docks_do_not_become_tabs_and_reset_layout_restores(isolated, qtbot):
    w = make(qtbot, isolated, training=False)
    assert not w.dockOptions() & QMainWindow.DockOption.AllowTabbedDocks
    w.tabifyDockWidget(w.inspector, w.summary)               # what an accidental drop used to do
    w.palette.setFloating(True)
    assert w.tabifiedDockWidgets(w.inspector)
    w.reset_layout()
    assert not w.tabifiedDockWidgets(w.inspector) and not w.palette.isFloating()
    assert w.dockWidgetArea(w.summary) == Qt.DockWidgetArea.BottomDockWidgetArea
    assert w.dockWidgetArea(w.inspector) == Qt.DockWidgetArea.RightDockWidgetArea


def test_window_size_and_docks_are_remembered(isolated, qtbot):
    w = make(qtbot, isolated, training=False, remember=True)
    w.resize(740, 530)
    w.removeDockWidget(w.palette)
    w.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, w.palette)
    w.palette.show()
    w.close()
    w2 = make(qtbot, isolated, training=False, remember=True)
    assert (w2.width(), w2.height()) == (740, 530)
    assert w2.dockWidgetArea(w2.palette) == Qt.DockWidgetArea.RightDockWidgetArea


def test_status_tips_about_and_shortcuts(isolated, qtbot, monkeypatch):
    w = make(qtbot, isolated, training=False)
    tips = [a.statusTip() for a in w.menuBar().actions()[0].menu().actions()]
    assert "New" in tips and not any("&" in t for t in tips)
    shown = []
    monkeypatch.setattr(QMessageBox, "about", lambda parent, title, text: shown.append(text))
    w.about()
    assert version() and version() != "unknown" and version() in shown[0]
    keys = dict((what, k) for k, what in w.shortcuts())
    assert keys["Undo"].startswith("Ctrl+Z") and "Save" in keys and "Zoom to fit" in keys
    d = w.show_shortcuts()
    assert "Ctrl+Z" in d.findChild(QTextBrowser).toPlainText() and "pan the canvas" in d.findChild(QTextBrowser).toPlainText()


def test_ctrl_z_undoes_while_a_number_field_has_focus(isolated, qtbot):
    w = make(qtbot, isolated, training=False)
    assert w.open_path(default_example(), template=True)
    name = next(n for n, v in w.doc.graph.nodes.items() if v.type == "Dense")
    w.scene.select([name])
    w.doc.move_nodes({name: (123, 45)})
    box = next(b for b in w.inspector.findChildren(QSpinBox) if b.isVisible())
    box.setFocus()
    QApplication.processEvents()
    assert QApplication.focusWidget() is box
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert w.doc.pos(name) != (123.0, 45.0)


def test_double_clicked_layers_land_on_free_places(isolated, qtbot):
    w = make(qtbot, isolated, training=False)
    assert w.open_path(default_example(), template=True)
    names = [w.view.add_layer("ReLU") for _ in range(4)]
    rects = {n: it.sceneBoundingRect() for n, it in w.scene.nodes.items()}
    for n in names:
        assert not any(rects[n].intersects(r) for m, r in rects.items() if m != n), n


def test_file_dialogs_start_in_the_last_folder(isolated, qtbot):
    w = make(qtbot, isolated, training=False)
    sub = isolated / "projects"
    sub.mkdir()
    dirs.remember(str(sub / "a.json"))
    assert w._dir() == sub.resolve()
    assert dirs.last_dir() == sub.resolve()


def test_layerboard_with_a_project_path_opens_the_window_on_it(monkeypatch, tmp_path):
    opened = []
    monkeypatch.setattr(cli, "gui", lambda project=None: opened.append(project) or 0)
    p = tmp_path / "proj.json"
    p.write_text("{}")
    assert cli.main([str(p)]) == 0 and opened == [str(p)]
    assert cli.main([]) == 0 and opened[-1] is None
    assert cli.main([str(tmp_path / "missing.json")]) == 2


def test_after_stop_the_bar_shows_no_eta_and_the_same_epoch_count(isolated, qtbot):
    from engine.project import Project
    from resources import path
    w = make(qtbot, isolated)
    p = Project.load(path("examples", "xor.json"))
    p.path = None
    p.training["epochs"] = 100000
    w.doc.load(p)
    d = w.training
    d.start()
    qtbot.waitUntil(lambda: d.job.trainer is not None and d.job.trainer.step > 50 and "ETA" in d.progress.format(),
                    timeout=HANG_MS)
    d.stop()
    qtbot.waitUntil(lambda: d.status != "running", timeout=HANG_MS)
    fmt = d.progress.format()
    assert "ETA" not in fmt and d.result["status"] == "stopped"
    n = d.result["epochs"]
    assert f"after {n} of 100000 epochs" in fmt and f"after {n} epochs" in d.message.text()


def test_the_chosen_mode_and_training_panel_stay_across_launches_and_reset_layout_sticks(isolated, qtbot):
    w = make(qtbot, isolated, remember=True)                  # fresh settings: the window opens in Build
    assert w.modes.mode == "build" and not w.training.isVisible()
    w.modes.actions["train"].trigger()                        # the user chooses View ▸ Train, then Quit
    assert w.training.isVisible()
    w.close()
    w2 = make(qtbot, isolated, remember=True)                 # the second launch
    assert w2.training.isVisible() and not w2.training.isFloating()
    w2.training.toggleViewAction().trigger()                  # the user hides it, quits, launches again
    w2.close()
    w3 = make(qtbot, isolated, remember=True)
    assert not w3.training.isVisible()
    w3.reset_layout()                                         # View ▸ Reset layout, then Quit and launch
    assert w3.training.isVisible()
    w3.close()
    w4 = make(qtbot, isolated, remember=True)
    assert w4.modes.mode == "train"
    assert all(d.isVisible() for d in (w4.training, w4.palette, w4.inspector, w4.summary))
    w4.modes.actions["build"].trigger()                       # chosen Build: the next launch opens in Build
    w4.close()
    w5 = make(qtbot, isolated, remember=True)
    assert w5.modes.mode == "build" and not w5.training.isVisible() and w5.summary.isVisible()
    assert w5.dockWidgetArea(w5.training) == Qt.DockWidgetArea.BottomDockWidgetArea
