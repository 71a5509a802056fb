"""Live training in the window (issue 5): the TrainingDock and its plot views."""
from .dock import TrainingDock
from .views import VIEWS, View

__all__ = ["TrainingDock", "VIEWS", "View"]
