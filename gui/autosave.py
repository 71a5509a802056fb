"""Autosave of a dirty document a few seconds after each burst of edits, and recovery after a crash."""
import json
import time
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QStandardPaths, QTimer

from engine.errors import LayerboardError
from engine.project import Project, atomic_write

from .document import clean_tmp

KEY_CLEAN_EXIT = "autosave/clean_exit"
DELAY_MS = 3000          # quiet time after the last edit before the autosave is written


def data_dir():
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


class Autosave(QObject):
    """`delay_ms` after the last edit of a burst, write the dirty document to <AppData>/autosave.json.

    A save (or undoing back to the saved state) deletes the autosave, so recovery never offers a copy
    older than the project file."""

    def __init__(self, doc, delay_ms=DELAY_MS, folder=None, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.folder = Path(folder) if folder else data_dir()
        self.file = self.folder / "autosave.json"
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(delay_ms)
        self.timer.timeout.connect(self.tick)
        doc.changed.connect(self.timer.start)            # each edit restarts the wait: one write per burst
        doc.saved.connect(lambda _p: self.discard())
        clean_tmp(self.file)                             # leftovers of autosaves killed mid-write

    def tick(self):
        """Write the autosave if there are unsaved changes (else remove it); returns True when it wrote."""
        if not self.doc.dirty:
            self.discard()
            return False
        d = self.doc.project.to_dict()
        d["autosave_of"] = str(self.doc.project.path) if self.doc.project.path else None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self.file, json.dumps(d, ensure_ascii=False).encode())
        except (OSError, ValueError):
            return False
        return True

    def clean_exit(self):
        """The user closed the window normally: the autosave is no longer needed."""
        self.timer.stop()
        self.discard()
        QSettings().setValue(KEY_CLEAN_EXIT, time.time())

    def pending(self):
        """True if an autosave newer than the last clean exit and than the file it copies exists."""
        try:
            when = self.file.stat().st_mtime
        except OSError:
            return False
        last = float(QSettings().value(KEY_CLEAN_EXIT, 0) or 0)
        if when <= last:
            return False
        try:
            origin = json.loads(self.file.read_text(encoding="utf-8")).get("autosave_of")
            return not origin or Path(origin).stat().st_mtime < when
        except (OSError, ValueError, AttributeError):
            return True                              # unreadable: recover() says why

    def recover(self):
        """The autosaved Project (its path set to the file it came from, if any); ProjectError if unreadable."""
        try:
            d = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LayerboardError(f"the autosave {self.file} cannot be read: {e}") from None
        origin = d.pop("autosave_of", None) if isinstance(d, dict) else None
        p = Project.from_dict(d, str(self.file))
        p.path = Path(origin) if origin else None
        return p

    def discard(self):
        try:
            self.file.unlink()
        except OSError:
            pass
