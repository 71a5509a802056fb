"""Layerboard's engine: graph, shape inference, layers, training and export. Never imports Qt."""
import os as _os

# numba caches compiled kernels next to the sources; a read-only install caches per user instead
# (this must run before numba is imported).
if "NUMBA_CACHE_DIR" not in _os.environ and not _os.access(_os.path.dirname(_os.path.abspath(__file__)), _os.W_OK):
    _os.environ["NUMBA_CACHE_DIR"] = _os.path.join(
        _os.environ.get("XDG_CACHE_HOME") or _os.path.join(_os.path.expanduser("~"), ".cache"), "layerboard", "numba")

# numba itself is imported when the first kernel runs (engine/_jit.py: the window never needs it)

from .errors import ConfigError, DataError, LayerboardError, ProjectError, ShapeError, TrainingError
from .graph import Edge, Graph, GraphError, Node
from .layers import REGISTRY, create
from .shapes import NodeInfo, infer

__all__ = ["ConfigError", "DataError", "Edge", "Graph", "GraphError", "LayerboardError", "Node", "NodeInfo",
           "ProjectError", "REGISTRY", "ShapeError", "TrainingError", "create", "infer"]
