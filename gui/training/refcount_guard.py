"""Guard against PySide6 6.12's lost references to None/True/False on Python < 3.12 (a crash after many calls).

PySide6 6.12.0 on Python 3.11 drops one reference to None on every call of a void method (e.g.
QWidget.update) and QObject.property() of a missing name, and to True/False in some calls: CPython 3.12+
makes these singletons immortal, 3.11 does not, so a live plot aborts with "Fatal Python error:
none_dealloc" after some ten thousand redraws. Giving the three singletons a large reference count once
makes them effectively immortal, as on 3.12. Remove when PySide6 fixes it or Python ≥ 3.12 is required.
"""
import ctypes
import sys

RESERVE = 1 << 40


def install():
    """Make None, True and False effectively immortal (no-op on Python ≥ 3.12 or non-CPython)."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or getattr(install, "done", False):
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += RESERVE        # ob_refcnt is PyObject's first field
    install.done = True
    return True
