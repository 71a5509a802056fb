"""Live training in the window (issue 5): the TrainingDock and its plot views."""
from .refcount_guard import install as _guard

_guard()        # PySide6 6.12 + Python 3.11 refcount bug: see refcount_guard.py

from .dock import TrainingDock  # noqa: E402
from .views import VIEWS, View, register  # noqa: E402

__all__ = ["TrainingDock", "VIEWS", "View", "register"]
