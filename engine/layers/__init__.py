"""Layer types; importing this package fills REGISTRY."""
from . import activations, activations_more, attention, conv, core, merge, normalization, pooling, position  # noqa: F401
from . import merge_reduce, norm_groups, norm_scale, pointwise, recurrent, regularization, reshape, sequence  # noqa: F401
from . import conv1d, conv3d, conv_transpose, upsample  # noqa: F401  (convolution family)
from . import onnx_node, permute, scale_shift  # noqa: F401  (imported models: ONNX nodes kept, Transpose, constants)
from . import gru, lstm, rnn  # noqa: F401  (the recurrent family; recurrent.py is its base)
from . import cross_attention  # noqa: F401  (encoder–decoder)
from . import grid_sample, rotary  # noqa: F401  (spatial transformer sampling, rotary position embedding)
from . import divide, reduce, unary  # noqa: F401  (Divide; Reduce over axes; Math: unary functions per value)
from . import sdpa  # noqa: F401  (attention of given queries, keys and values: ONNX Attention)
from . import hardmax, lp_pool, matmul  # noqa: F401  (ONNX Hardmax, LpPool, MatMul of two tensors)
from . import depth_space, slicing, tile  # noqa: F401  (DepthToSpace, SpaceToDepth; Slice (ONNX Slice, Split); Tile)
from .base import CATEGORIES, REGISTRY, Fix, Layer, Param, fmt, register
from ..errors import ConfigError


def create(type, name="", config=None):
    """Instantiate a registered layer type with checked hyperparameters."""
    cls = REGISTRY.get(type)
    if cls is None:
        raise ConfigError(f"unknown layer type {type!r} for '{name}'; known: {', '.join(sorted(REGISTRY))}")
    return cls(name, **(config or {}))


__all__ = ["CATEGORIES", "REGISTRY", "Fix", "Layer", "Param", "create", "fmt", "register"]
