"""Layerboard's engine: graph, shape inference, layers, training and export. Never imports Qt."""
from .errors import ConfigError, DataError, LayerboardError, ProjectError, ShapeError, TrainingError
from .graph import Edge, Graph, GraphError, Node
from .layers import REGISTRY, create
from .shapes import NodeInfo, infer

__all__ = ["ConfigError", "DataError", "Edge", "Graph", "GraphError", "LayerboardError", "Node", "NodeInfo",
           "ProjectError", "REGISTRY", "ShapeError", "TrainingError", "create", "infer"]
