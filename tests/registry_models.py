"""Models built around one registry layer sample, shared by the export tests (ONNX, PyTorch)."""
from math import prod

import numpy as np

from engine import Graph
from engine.layers import REGISTRY


def sample_graph(type, config, shapes, ints=False, domain=None):
    """Input → the layer; several inputs (or differing shapes) come from one Input through Dense (→ Reshape).
    ints / domain: the input is fed as it is (ids; values inside a function's domain), not standardised."""
    g = Graph()
    if len(shapes) == 1 and REGISTRY[type].n_inputs == 1:
        g.add_node("Input", "in put", {"shape": list(shapes[0]), "standardize": not (ints or domain)})   # 'in put' → in_put
        srcs = ["in put"]
    else:
        g.add_node("Input", "in put", {"shape": [5], "standardize": True})
        srcs = []
        for i, s in enumerate(shapes):
            d = g.chain((f"d{i}", "Dense", {"units": prod(s)}), after="in put")
            srcs.append(g.chain((f"r{i}", "Reshape", {"shape": list(s)}), after=d) if len(s) > 1 else d)
    g.add_node(type, "layer", config)
    for i, s in enumerate(srcs):
        g.connect(s, "layer", i)
    return g


def randomize(model, seed=1):
    """Non-trivial values for every tensor, including standardisation and running statistics."""
    rng = np.random.default_rng(seed)
    w = {k: (rng.uniform(0.5, 1.5, v.shape) if k.endswith(("/std", "/running_var", "/gamma"))
             else rng.normal(0, 0.5, v.shape)) for k, v in model.weights().items()}
    model.set_weights(w)
    return model


def sample_inputs(model, opts, B=4, seed=2):
    """(x, lengths or None) for a sample model: ids for "ints", random lengths ≥ 1 (one full row) for "mask"."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (B,) + model.input_shape).astype(np.float32)
    if "ints" in opts:
        x = rng.integers(0, opts["ints"], x.shape).astype(np.float32)
    if opts.get("domain"):
        x = rng.uniform(*opts["domain"], x.shape).astype(np.float32)
    lengths = None
    if opts.get("mask"):
        T = model.input_shape[0]
        lengths = rng.integers(1, T + 1, B).astype(np.int32)
        lengths[0] = T
    return x, lengths
