"""The main window: example loaded, title/unsaved marker, bad files, summary copy, templates, autosave, screenshot."""
import os
import shutil

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QCoreApplication, QSettings, QStandardPaths, Qt  # noqa: E402
from PySide6.QtGui import QKeySequence  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from engine.project import Project  # noqa: E402
from gui import app as gui_app  # noqa: E402
from gui.mainwindow import MainWindow, default_example  # noqa: E402
from gui.style import apply_theme  # noqa: E402
from gui.templates import AdviceDialog, advise, templates  # noqa: E402


@pytest.fixture
def isolated(qapp, tmp_path, monkeypatch):
    """Settings and the user data folder in tmp_path; dialogs answer without blocking."""
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QCoreApplication.setOrganizationName("LayerboardTest")
    QCoreApplication.setApplicationName("LayerboardTest")
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: shown.append((title, text)))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    return shown


@pytest.fixture
def window(isolated, qtbot, tmp_path):
    apply_theme(QApplication.instance(), "light")
    w = MainWindow(autosave_dir=tmp_path / "data", training=False)
    qtbot.addWidget(w)
    assert w.open_path(default_example(), template=True)
    w.show()
    qtbot.waitExposed(w)
    w.view.zoom_to_fit()
    return w


def test_the_window_opens_the_example_with_title_and_unsaved_marker(window, tmp_path):
    assert set(window.scene.nodes) == set(window.doc.graph.nodes) and len(window.scene.nodes) > 5
    assert window.windowTitle() == "untitled[*] — Layerboard" and not window.isWindowModified()
    name = next(iter(window.doc.graph.nodes))
    window.doc.move_nodes({name: (5, 5)})
    assert window.isWindowModified()
    assert window._save_to(tmp_path / "mine.json")
    assert window.windowTitle() == "mine.json[*] — Layerboard" and not window.isWindowModified()
    assert window.recent()[0] == str((tmp_path / "mine.json").resolve())


def test_opening_a_bad_file_shows_the_problem_and_keeps_the_document(window, isolated, tmp_path):
    window.doc.add_node("ReLU", name="kept")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "layerboard-project", "version": 99}')
    assert not window.open_path(bad)
    assert isolated and "newer Layerboard" in isolated[-1][1]
    assert "kept" in window.doc.graph.nodes and "kept" in window.scene.nodes and window.doc.dirty


def test_summary_lists_every_layer_with_totals_and_copies_as_tsv(window):
    infos = window.doc.infos
    t, m = window.summary.table, window.summary.model
    assert m.rowCount() == len(infos) + 1
    assert [m.index(r, 0).data() for r in range(len(infos))] == list(infos)
    assert m.index(len(infos), 3).data() == f"{sum(i.params for i in infos.values()):,}"
    t.setFocus()
    t.clearSelection()
    QTest.keySequence(t, QKeySequence(QKeySequence.StandardKey.Copy))
    lines = QApplication.clipboard().text().splitlines()
    assert lines[0].split("\t")[:5] == ["name", "type", "output shape", "params", "MACs"]
    assert len(lines) == len(infos) + 2 and lines[-1].startswith("total\t")
    if any(i.field for i in infos.values()):
        assert "receptive field" in lines[0]


def test_copy_paste_delete_select_all_and_auto_layout(window):
    doc, scene = window.doc, window.scene
    n0 = len(doc.graph.nodes)
    first = list(doc.graph.nodes)[:3]
    scene.select(first)
    window.copy()
    window.paste()
    assert len(doc.graph.nodes) == n0 + 3 and len(scene.selected_names()) == 3
    pasted = scene.selected_names()
    assert sum(1 for e in doc.graph.edges if e.src in pasted and e.dst in pasted) == 2
    window.delete()
    assert len(doc.graph.nodes) == n0
    window.select_all()
    assert len(scene.selected_names()) == n0
    doc.undo_stack.clear()
    window.auto_layout(True)
    assert doc.undo_stack.count() == 1
    xs = {doc.pos(n)[0] for n in doc.graph.nodes}
    assert all((it.pos().x(), it.pos().y()) == doc.pos(n) for n, it in scene.nodes.items())
    assert len(xs) >= 1 and scene.vertical


def test_templates_and_advice_pair_output_and_loss(isolated, qtbot):
    names = {t[0] for t in templates()}
    assert "digits-mlp.json" in names and all(t[2] for t in templates())
    assert advise("tabular", "binary")[2] == "bce" and "Sigmoid" in advise("tabular", "binary")[1]
    assert advise("images", "multi-class")[2] == "cce" and "Softmax" in advise("images", "multi-class")[1]
    assert advise("tabular", "regression")[2] == "mse" and "linear" in advise("tabular", "regression")[1]
    assert "Transformer" in advise("text", "multi-class")[1] and "RNN" in advise("sequences", "binary")[1]
    d = AdviceDialog()
    qtbot.addWidget(d)
    d.kind.setCurrentText("images")
    assert d.pick == ("digits-cnn.json" if "digits-cnn.json" in names else "digits-mlp.json")


def test_autosave_writes_when_dirty_and_recovery_is_offered_after_a_crash(window, tmp_path, monkeypatch, qtbot):
    a = window.autosave
    assert not a.tick()                                    # clean: nothing to save
    window.doc.add_node("Dense", name="unsaved_work")
    assert a.tick() and a.file.exists()
    a.timer.stop()
    a.lock.unlock()                                        # the session is killed: its lock is stale, the file stays
    w2 = MainWindow(autosave_dir=tmp_path / "data", training=False, autosave_ms=50)
    qtbot.addWidget(w2)
    assert w2.open_path(default_example(), template=True)   # what launching does first: the autosave timer runs

    def answer_later(*_a, **_k):                           # the user reads the question for a while
        qtbot.wait(400)
        return QMessageBox.StandardButton.Yes
    monkeypatch.setattr(QMessageBox, "question", answer_later)
    assert gui_app.offer_recovery(w2)
    assert "unsaved_work" in w2.doc.graph.nodes and w2.doc.dirty
    assert w2.autosave.file == a.file                      # the recovered work is w2's autosave now
    qtbot.waitUntil(lambda: a.file.exists() and "unsaved_work" in a.file.read_text(), timeout=5000)
    w2.doc.undo_stack.setClean()
    w2.close()                                             # a clean exit removes the autosave
    assert not a.file.exists() and not w2.autosave.pending()


def test_screenshot_of_the_builder(window, tmp_path):
    window.resize(1440, 860)
    window.view.zoom_to_fit()
    conv = next((n for n, v in window.doc.graph.nodes.items() if v.type == "Conv2D"), None)
    window.scene.select([conv or next(iter(window.doc.graph.nodes))])
    QApplication.processEvents()
    img = window.grab().toImage()
    f = tmp_path / "builder.png"
    assert img.save(str(f))
    assert img.width() >= 1000 and img.height() >= 700
    colours = {img.pixel(x, y) for x in range(0, img.width(), 17) for y in range(0, img.height(), 17)}
    assert len(colours) > 20                              # not a blank grab
    if os.environ.get("LAYERBOARD_SCREENSHOT"):
        shutil.copy(f, os.environ["LAYERBOARD_SCREENSHOT"])


def test_closing_with_unsaved_changes_asks_and_cancel_keeps_the_window(window, monkeypatch):
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[1]) or QMessageBox.StandardButton.Cancel)
    window.doc.add_node("ReLU")
    assert not window.close() and window.isVisible() and asked == ["Unsaved changes"]
    window.doc.undo_stack.setClean()
    assert window.close()


@pytest.mark.parametrize("project", [None, "xor.json", "mine/xor.json"])
def test_main_opens_the_window_with_the_example_and_returns(isolated, qtbot, monkeypatch, project, tmp_path):
    from PySide6.QtCore import QEventLoop, QTimer
    from resources import path
    seen, made, loop = [], [], QEventLoop()
    if project == "mine/xor.json":                        # the user's own copy of an example
        (tmp_path / "mine").mkdir()
        shutil.copy(path("examples", "xor.json"), tmp_path / "mine" / "xor.json")

    def close_it():
        for w in made:                                    # the window main() made (never another test's: a scan of
            if w.isVisible():                             # topLevelWidgets() once crashed on a stale wrapper in CI)
                seen.append((w.windowTitle(), len(w.doc.graph.nodes), w.training is not None))
                w.doc.undo_stack.setClean()
                w.close()
        loop.quit()

    # a local event loop instead of the application's: quitting the application would stop the timers of
    # every later test in this process
    monkeypatch.setattr(QApplication, "exec", lambda *a: loop.exec())
    app = QApplication.instance()
    app.setQuitOnLastWindowClosed(False)
    monkeypatch.setattr(gui_app, "MainWindow",
                        lambda **k: made.append(MainWindow(training=False, **k)) or made[-1])
    QTimer.singleShot(300, close_it)
    try:
        mine = project and project.startswith("mine")
        assert gui_app.main(project=(tmp_path / project if mine else path("examples", project)) if project else None) == 0
    finally:
        app.setQuitOnLastWindowClosed(True)
    if project is None:
        assert seen and seen[0][0].startswith("untitled") and seen[0][1] == len(Project.load(default_example()).graph.nodes)
    elif mine:                                            # `layerboard mine/xor.json`: that project, under its name
        assert seen and seen[0][0].startswith("xor.json") and seen[0][1] == len(Project.load(path("examples", "xor.json")).graph.nodes)
    else:                                                 # a shipped example: an untitled copy (Save asks where)
        assert seen and seen[0][0].startswith("untitled") and seen[0][1] == len(Project.load(path("examples", project)).graph.nodes)


def test_dark_theme_and_top_to_bottom_layout_render(window, tmp_path):
    window.dark_action.setChecked(True)
    window.toggle_theme()
    window.auto_layout(True)
    QApplication.processEvents()
    img = window.view.viewport().grab().toImage()
    img.save(str(tmp_path / "dark.png"))
    corner = img.pixelColor(3, 3)
    assert corner.lightness() < 80                        # the dark canvas, not the light one
    first, second = window.doc.graph.edges[0].src, window.doc.graph.edges[0].dst
    assert window.doc.pos(second)[1] > window.doc.pos(first)[1]     # flows downwards
    window.dark_action.setChecked(False)
    window.toggle_theme()
    if os.environ.get("LAYERBOARD_SCREENSHOT_DARK"):
        shutil.copy(tmp_path / "dark.png", os.environ["LAYERBOARD_SCREENSHOT_DARK"])


def test_double_clicking_a_palette_entry_adds_that_layer(window):
    tree = window.palette.tree
    item = next(tree.topLevelItem(i).child(j) for i in range(tree.topLevelItemCount())
                for j in range(tree.topLevelItem(i).childCount()) if tree.topLevelItem(i).child(j).text(0) == "Dropout")
    before = set(window.doc.graph.nodes)
    tree.scrollToItem(item)
    rect = tree.visualItemRect(item)
    assert tree.viewport().rect().contains(rect.center())
    QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    QTest.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    added = set(window.doc.graph.nodes) - before
    assert len(added) == 1 and window.doc.graph.nodes[added.pop()].type == "Dropout"
    assert window.scene.selected_names() and window.inspector.name == window.scene.selected_names()[0]
