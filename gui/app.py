"""`layerboard` with no arguments: the builder window with an example project loaded."""
import sys
import threading

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from engine.errors import LayerboardError
from engine.session import warm_up

from .mainwindow import MainWindow, default_example
from .style import apply_theme


def offer_recovery(win):
    """If the last session ended without a clean exit and left an autosave, offer to restore it."""
    a = win.autosave
    if not a.pending():
        return False
    r = QMessageBox.question(win, "Recover unsaved work?",
                             "Layerboard did not close normally last time. Restore the autosaved project?",
                             QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    if r != QMessageBox.StandardButton.Yes:
        a.discard()
        return False
    try:
        project = a.recover()
    except LayerboardError as e:
        QMessageBox.warning(win, "Cannot recover", str(e))
        return False
    win.doc.load(project)
    win.doc.undo_stack.resetClean()          # recovered work is unsaved
    win._title()
    win.view.zoom_to_fit()
    return True


def main(argv=None, project=None):
    """Create the application and the window, load `project` (a path) or the example (or recover), run the loop."""
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setOrganizationName("Layerboard")
    app.setApplicationName("Layerboard")
    apply_theme(app, QSettings().value("theme", "light"))
    win = MainWindow(remember=True)
    win.show()
    threading.Thread(target=warm_up, name="numba warm-up", daemon=True).start()   # first Train is quick
    if project is not None:
        if not win.open_path(project):                  # the dialog said why; the example instead
            project = None
    example = default_example() if project is None else None
    if example is not None:
        win.open_path(example, template=True)
    if project is None:
        offer_recovery(win)
    win.view.zoom_to_fit()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
