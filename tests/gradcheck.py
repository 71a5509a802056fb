"""Shared helpers: build a layer on float64 arrays and compare analytic with central-difference gradients."""
import numpy as np

from engine.initializers import initialize
from engine.layers import create


def build(type, config, in_shapes, seed=0, dtype=np.float64):
    """A layer with its parameters allocated and initialised (not through a Model)."""
    layer = create(type, "t", config)
    layer.build(in_shapes)
    rng = np.random.default_rng(seed)
    for k, p in layer.params(layer.in_shapes).items():
        layer.p[k] = initialize(p.init, p.shape, rng, dtype)
        if isinstance(p.init, str) and p.init in ("zeros", "ones"):
            layer.p[k] += rng.normal(0, 0.3, p.shape)        # avoid symmetric starting points
        layer.g[k] = np.zeros(p.shape, dtype)
    return layer


def run(layer, xs, training=True, seed=1):
    layer.rng = np.random.default_rng(seed)                 # same dropout mask on every call
    return layer.forward(*xs, training=training)


def numeric(f, a, eps=1e-6):
    """Central differences of scalar f() with respect to every element of array a (in place)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        hi = f()
        a[i] = old - eps
        lo = f()
        a[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


def check_layer(type, config, in_shapes, batch=3, seed=0, training=True):
    """Assert dL/dx and dL/dθ match finite differences for L = Σ y⊙u with random upstream u."""
    rng = np.random.default_rng(seed)
    layer = build(type, config, in_shapes, seed)
    xs = [rng.normal(0, 1, (batch,) + tuple(s)) for s in in_shapes]
    y = run(layer, xs, training)
    u = rng.normal(0, 1, y.shape)
    dxs = layer.backward(u.copy())
    loss = lambda: float(np.sum(run(layer, xs, training) * u))
    for i, x in enumerate(xs):
        np.testing.assert_allclose(dxs[i], numeric(loss, x), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{type} {config}: input {i} gradient")
    for k in layer.g:
        np.testing.assert_allclose(layer.g[k], numeric(loss, layer.p[k]), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{type} {config}: parameter {k} gradient")
    return layer
