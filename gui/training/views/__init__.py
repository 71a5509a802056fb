"""The plot views shown as tabs in the training dock; a new view (e.g. attention heatmaps) is one more entry."""
from .base import View
from .boundary import BoundaryView
from .compare import CompareView
from .confusion import ConfusionView
from .curves import CurvesView
from .pca import PCAView
from .scatter import ScatterView

VIEWS = [CurvesView, ScatterView, PCAView, BoundaryView, ConfusionView, CompareView]

__all__ = ["VIEWS", "View", "BoundaryView", "CompareView", "ConfusionView", "CurvesView", "PCAView", "ScatterView"]
