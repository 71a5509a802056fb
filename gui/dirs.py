"""The folder file dialogs start in: the last one the user chose a file in (remembered in QSettings)."""
from pathlib import Path

from PySide6.QtCore import QSettings

KEY = "last_dir"


def last_dir(fallback=None):
    """The folder of the last file chosen in any dialog, else `fallback`, else the home folder."""
    d = QSettings().value(KEY, "") or ""
    if d and Path(d).is_dir():
        return Path(d)
    return Path(fallback) if fallback else Path.home()


def remember(path):
    """Note the folder of a chosen file (or a chosen folder's parent) for the next dialog; returns path."""
    if path:
        p = Path(path)
        QSettings().setValue(KEY, str((p if p.is_dir() and not p.suffix else p.parent).resolve()))
    return path
