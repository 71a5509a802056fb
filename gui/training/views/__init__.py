"""The plot views shown as tabs in the training dock; a new view (e.g. attention heatmaps) is one more entry."""
from .base import View
from .boundary import BoundaryView
from .compare import CompareView
from .confusion import ConfusionView
from .curves import CurvesView
from .pca import PCAView
from .scatter import ScatterView
from .hidden import HiddenView
from .gradflow import GradFlowView
from .gates import GateView
from .attention import AttentionView

VIEWS = [CurvesView, ScatterView, PCAView, BoundaryView, ConfusionView, CompareView]
VIEWS += [HiddenView, GradFlowView, GateView, AttentionView]    # sequence views: for recurrent / attention models

__all__ = ["VIEWS", "View", "BoundaryView", "CompareView", "ConfusionView", "CurvesView", "PCAView", "ScatterView",
           "HiddenView", "GradFlowView", "GateView", "AttentionView"]
