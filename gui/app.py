"""`layerboard` with no arguments: the builder window with an example project loaded."""
import os
import sys
import threading

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from engine.errors import LayerboardError
from engine.session import warm_up

from .mainwindow import MainWindow, default_example
from .style import apply_theme


def offer_recovery(win):
    """If a session ended without a clean exit and left an autosave, offer to restore it. The file is locked
    and kept until the answer (recovered work stays this session's autosave until it is saved)."""
    a = win.autosave
    if not a.pending():
        return False
    r = QMessageBox.question(win, "Recover unsaved work?",
                             "Layerboard did not close normally last time. Restore the autosaved project?",
                             QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    if r != QMessageBox.StandardButton.Yes:
        a.release(delete=True)
        return False
    try:
        project = a.recover()
    except LayerboardError as e:
        a.release()                                  # kept: offered again next time
        QMessageBox.warning(win, "Cannot recover", str(e))
        return False
    a.adopt()
    win.doc.load(project)
    win.doc.undo_stack.resetClean()          # recovered work is unsaved
    win._title()
    win.view.zoom_to_fit()
    return True


def main(argv=None, project=None):
    """Create the application and the window, load `project` (a path) or the example (or recover), run the loop."""
    own = QApplication.instance() is None          # the process is ours: it ends when the window closes
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setOrganizationName("Layerboard")
    app.setApplicationName("Layerboard")
    apply_theme(app, QSettings().value("theme", "light"))
    win = MainWindow(remember=True)
    win.show()
    # first Train is quick: numba's set-up in the background, from the first turn of the event loop (started
    # now it would compete with building the window and loading the example for the interpreter)
    QTimer.singleShot(0, lambda: threading.Thread(target=warm_up, name="numba warm-up", daemon=True).start())
    if project is not None:
        if not win.open_path(project):                  # the dialog said why; the example instead
            project = None
    example = default_example() if project is None else None
    if example is not None:
        win.open_path(example, template=True)
    if project is None:
        offer_recovery(win)
    win.view.zoom_to_fit()
    code = app.exec()
    if own:             # everything is saved by now; the interpreter's and Qt's teardown of the window's
        sys.stdout.flush()          # objects took seconds, and a stopped worker may still be inside a
        sys.stderr.flush()          # numba compilation (it cannot be interrupted): exit without waiting
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
