"""Periodic autosave of a dirty document to the user data folder, and recovery after a crash."""
import json
import time
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QStandardPaths, QTimer

from engine.errors import LayerboardError
from engine.project import Project, atomic_write

KEY_CLEAN_EXIT = "autosave/clean_exit"


def data_dir():
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


class Autosave(QObject):
    """Every `interval_ms` while the document is dirty, write it to <AppData>/autosave.json."""

    def __init__(self, doc, interval_ms=60_000, folder=None, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.folder = Path(folder) if folder else data_dir()
        self.file = self.folder / "autosave.json"
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def tick(self):
        """Write the autosave if there are unsaved changes; returns True when it wrote."""
        if not self.doc.dirty:
            return False
        d = self.doc.project.to_dict()
        d["autosave_of"] = str(self.doc.project.path) if self.doc.project.path else None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self.file, json.dumps(d, ensure_ascii=False).encode())
        except OSError:
            return False
        return True

    def clean_exit(self):
        """The user closed the window normally: the autosave is no longer needed."""
        self.timer.stop()
        try:
            self.file.unlink()
        except OSError:
            pass
        QSettings().setValue(KEY_CLEAN_EXIT, time.time())

    def pending(self):
        """True if an autosave newer than the last clean exit exists (the app did not close normally)."""
        if not self.file.exists():
            return False
        last = float(QSettings().value(KEY_CLEAN_EXIT, 0) or 0)
        return self.file.stat().st_mtime > last

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
