"""The window's help: About, Keyboard shortcuts, Formulas, and undo reaching the window from text fields; a mixin of
MainWindow."""
import re
from importlib import metadata
from pathlib import Path

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractSpinBox, QApplication, QDialog, QDialogButtonBox, QLineEdit, QMessageBox,
                               QTextBrowser, QVBoxLayout)


def version():
    """The installed package's version, else the one in pyproject.toml beside the sources."""
    try:
        return metadata.version("layerboard")
    except metadata.PackageNotFoundError:
        p = Path(__file__).resolve().parent.parent / "pyproject.toml"
        m = re.search(r'^version\s*=\s*"([^"]+)"', p.read_text(encoding="utf-8"), re.M) if p.exists() else None
        return m.group(1) if m else "unknown"

class UndoAnywhere(QObject):
    """Ctrl+Z / redo reach the window's undo stack while a text or number field has focus, unless the field
    has its own typing to undo (a field would otherwise swallow the shortcut)."""

    def eventFilter(self, obj, e):
        if e.type() == QEvent.Type.ShortcutOverride:
            undo, redo = e.matches(QKeySequence.StandardKey.Undo), (
                e.matches(QKeySequence.StandardKey.Redo) or QKeySequence(e.keyCombination()) == QKeySequence("Ctrl+Y"))
            if undo or redo:
                w = QApplication.focusWidget()
                le = w if isinstance(w, QLineEdit) else (w.findChild(QLineEdit) if isinstance(w, QAbstractSpinBox)
                                                         else None)
                if le is not None and not (le.isUndoAvailable() if undo else le.isRedoAvailable()):
                    e.ignore()
                    return True               # not taken by the field: the window's shortcut runs
        return False


SHORTCUT_HELP = (("Drag from the palette / double-click", "add a layer (at a free place)"),
                 ("Drag from an output port to an input port", "connect two layers"),
                 ("Middle button or Space + drag", "pan the canvas"), ("Mouse wheel", "zoom the canvas"))



class HelpActions:
    """Help ▸ Keyboard shortcuts, Formulas, About."""

    def about(self):
        QMessageBox.about(self, "About Layerboard", f"<b>Layerboard {version()}</b><br>Build a network by connecting "
                          "layers; shapes, parameters and MACs update as you edit. Drag layers from the palette; "
                          "connect an output to an input; train on real data and export the model.")

    def shortcuts(self):
        """[(keys, what)] for every action with a shortcut, then the mouse gestures."""
        rows, seen = [], set()
        for a in self.findChildren(QAction):
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts())
            what = a.text().replace("&", "").rstrip("…")
            if keys and (keys, what) not in seen:
                seen.add((keys, what))
                rows.append((keys, what))
        return rows + list(SHORTCUT_HELP)

    def _text_dialog(self, title, html):
        d = QDialog(self)
        d.setWindowTitle(title)
        lay = QVBoxLayout(d)
        t = QTextBrowser()
        t.setHtml(html)
        lay.addWidget(t)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(d.reject)
        lay.addWidget(bb)
        d.resize(640, 520)
        d.show()
        self._help_dialog = d
        return d

    def show_shortcuts(self):
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{w}</td></tr>" for k, w in self.shortcuts())
        return self._text_dialog("Keyboard shortcuts", f"<table>{rows}</table>")

    def show_formulas(self):
        from .summary import formulas_html
        return self._text_dialog("Formulas", formulas_html())
