"""The plot views shown as tabs in the training dock; a new view (e.g. attention heatmaps) is one more entry."""
from .base import View
from .boundary import BoundaryView
from .compare import CompareView
from .confusion import ConfusionView
from .curves import CurvesView
from .pca import PCAView
from .hidden import HiddenView
from .gradflow import GradFlowView
from .attention import AttentionView

VIEWS = [CurvesView, PCAView, BoundaryView, ConfusionView, CompareView]
VIEWS += [HiddenView, GradFlowView, AttentionView]              # sequence views: shown for RNN / attention models


def register(cls):
    """Add a View subclass to the dock's tabs (use as a class decorator); returns cls."""
    if cls not in VIEWS:
        VIEWS.append(cls)
    return cls


__all__ = ["VIEWS", "View", "register", "BoundaryView", "CompareView", "ConfusionView", "CurvesView", "PCAView",
           "HiddenView", "GradFlowView", "AttentionView"]
