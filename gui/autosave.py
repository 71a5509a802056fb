"""Autosave of a dirty document a few seconds after each burst of edits, and recovery after a crash.

Each running window writes its own <AppData>/autosave-N.json and holds autosave-N.lock (a QLockFile) while it
runs. An autosave whose lock no running process holds was left by a session that crashed: the next session
locks it, offers it, and deletes it only after the user's answer. Nobody touches another live session's file."""
import json
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, QStandardPaths, QTimer

from engine.errors import LayerboardError
from engine.project import Project, atomic_write

from .document import clean_tmp

DELAY_MS = 3000          # quiet time after the last edit before the autosave is written
SLOTS = 64               # autosave-0 … autosave-63: sessions running at once


def data_dir():
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


def lock_for(file):
    """The QLockFile guarding an autosave file; stale only when the process that holds it is gone."""
    lock = QLockFile(str(Path(file).with_suffix(".lock")))
    lock.setStaleLockTime(0)                 # a session may run for days: never stale by age
    return lock


class Autosave(QObject):
    """`delay_ms` after the last edit of a burst, write the dirty document to this session's autosave file.

    A save (or undoing back to the saved state) deletes it, so recovery never offers a copy older than the
    project file."""

    def __init__(self, doc, delay_ms=DELAY_MS, folder=None, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.folder = Path(folder) if folder else data_dir()
        self.file, self.lock = self._claim()
        self.orphan = self.orphan_lock = None     # a crashed session's autosave, locked while it is offered
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(delay_ms)
        self.timer.timeout.connect(self.tick)
        doc.changed.connect(self.timer.start)            # each edit restarts the wait: one write per burst
        doc.saved.connect(lambda _p: self.discard())

    def _claim(self):
        """(file, held lock) of a free slot: no file (a crash's file waits for recovery) and no live owner."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        for n in range(SLOTS):
            f = self.folder / f"autosave-{n}.json"
            if f.exists():
                continue
            lock = lock_for(f)
            if lock.tryLock(0):
                if not f.exists():                       # another session may have claimed and written it
                    clean_tmp(f)                         # leftovers of autosaves killed mid-write
                    return f, lock
                lock.unlock()
            elif lock.error() not in (QLockFile.LockError.NoError, QLockFile.LockError.LockFailedError):
                break                                    # the folder cannot hold locks: autosave without one
        return self.folder / "autosave-unlocked.json", None

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
        """The user closed the window normally: this session's autosave and locks go."""
        self.timer.stop()
        self.discard()
        self.release()
        if self.lock is not None:
            self.lock.unlock()
            self.lock = None

    # ---- recovery ----
    def pending(self):
        """True when a crashed session left an autosave newer than the file it copies; it is then locked
        (self.orphan) until recover(), adopt() or release(). Older copies of saved projects are deleted."""
        if self.orphan is not None:
            return True
        try:
            found = sorted(self.folder.glob("autosave*.json"), key=lambda f: f.stat().st_mtime, reverse=True)
        except OSError:
            return False
        for f in found:
            if f == self.file:
                continue
            lock = lock_for(f)
            if not lock.tryLock(0):                      # a running session's own file
                continue
            try:
                when = f.stat().st_mtime
                origin = json.loads(f.read_text(encoding="utf-8")).get("autosave_of")
                newer = not origin or not Path(origin).exists() or Path(origin).stat().st_mtime < when
            except (OSError, ValueError, AttributeError):
                newer = f.exists()                       # unreadable: offered, and recover() says why
            if newer:
                self.orphan, self.orphan_lock = f, lock
                return True
            _remove(f)                                   # the project was saved after it: nothing to recover
            lock.unlock()
        return False

    def recover(self):
        """The autosaved Project (its path set to the file it came from, if any); LayerboardError if unreadable."""
        f = self.orphan or self.file
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LayerboardError(f"the autosave {f} cannot be read: {e}") from None
        origin = d.pop("autosave_of", None) if isinstance(d, dict) else None
        p = Project.from_dict(d, str(f))
        p.path = Path(origin) if origin else None
        return p

    def adopt(self):
        """The recovered work is this session's now: its file and lock become ours (kept until saved or closed)."""
        if self.orphan is None:
            return
        self.timer.stop()
        self.discard()
        if self.lock is not None:
            self.lock.unlock()
        self.file, self.lock = self.orphan, self.orphan_lock
        self.orphan = self.orphan_lock = None

    def release(self, delete=False):
        """Stop offering the crashed session's autosave; delete: the user declined it."""
        if self.orphan is None:
            return
        if delete:
            _remove(self.orphan)
        self.orphan_lock.unlock()
        self.orphan = self.orphan_lock = None

    def discard(self):
        _remove(self.file)


def _remove(f):
    try:
        f.unlink()
    except OSError:
        pass
