"""Weight initialisation (spec §8): Glorot/Xavier variance 2/(n_in+n_out), He variance 2/n_in."""
from math import prod, sqrt

INITS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal")


def fans(shape):
    """(fan_in, fan_out) for (out, in, *kernel) weight shapes, as PyTorch counts them."""
    if len(shape) == 1:
        return shape[0], shape[0]
    rf = prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def variance(init, shape):
    """The spec's target variance for a weight of this shape."""
    fi, fo = fans(shape)
    return 2.0 / (fi + fo) if init.startswith("glorot") else 2.0 / fi


def initialize(init, shape, rng, dtype):
    """Draw a tensor: a constant, zeros/ones, or normal/uniform with the spec's variance."""
    import numpy as np
    if isinstance(init, (int, float)):
        return np.full(shape, init, dtype)
    if init == "zeros":
        return np.zeros(shape, dtype)
    if init == "ones":
        return np.ones(shape, dtype)
    if init not in INITS:
        raise ValueError(f"unknown initializer {init!r}")
    std = sqrt(variance(init, shape))
    if init.endswith("normal"):
        return rng.normal(0.0, std, shape).astype(dtype)
    a = sqrt(3.0) * std                                      # U(-a, a) has variance a²/3
    return rng.uniform(-a, a, shape).astype(dtype)
