"""Shared layer checks (as PyTorch's OpInfo / Keras' run_layer_test): every registered layer's samples, float64
central differences in training and evaluation mode, non-contiguous, read-only and float32 inputs, backward twice,
output shape and config round-trip.

A sample is (config, in_shapes) or (config, in_shapes, opts); opts may hold
  "mask": True  input 0 is a (T, F) sequence: random lengths ≥ 1 per batch row set layer.in_masks, the loss
                counts valid output steps only and dx must be exactly 0 at padded input steps;
  "masks": True every (T, F) input gets its own random lengths (e.g. CrossAttention's queries and keys);
  "ints": V     input 0 holds integer ids in [0, V), given as floats: it gets no dx check;
  "domain": (lo, hi)  every input is drawn uniformly from [lo, hi] (a function's domain: Math's log, asin, …);
  "per_layer": True  the fused path declines this configuration (test_fused checks that it falls back).
"""
import json

import numpy as np

from engine.initializers import initialize
from engine.layers import REGISTRY, Layer, create


# Shared checks a layer type is exempted from, with the reason; the test named there checks what it does instead.
EXEMPT = {
    ("OnnxNode", "gradient"): "it runs in onnxruntime and has no gradient: the Model freezes the layers before it "
                              "(tests/test_onnx_opaque.py::test_training_updates_only_the_layers_after_the_kept_node)",
    ("OnnxNode", "torch"): "it runs only in onnxruntime: PyTorch code export refuses it with one line naming the "
                           "node (tests/test_onnx_opaque.py::test_cli_reports_kept_nodes_pytorch_code_export_refuses"
                           "_and_strict_refuses)",
}


def exempt(type, check):
    """The reason `type` is exempted from a shared check ("gradient", "torch"), or None."""
    return EXEMPT.get((type, check))


def declares_samples(cls):
    """True when cls or a family base class below Layer defines samples() (not Layer's default)."""
    return any("samples" in c.__dict__ for c in cls.__mro__ if issubclass(c, Layer) and c is not Layer)


def cases():
    """(type, config, in_shapes, opts) for every sample of every registered layer."""
    out = []
    for t, cls in sorted(REGISTRY.items()):
        for c, s, *o in cls.samples():
            out.append((t, c, [tuple(x) for x in s], dict(o[0]) if o else {}))
    return out


def build(type, config, in_shapes, seed=0, dtype=np.float64):
    """A layer with its parameters allocated and initialised (not through a Model)."""
    layer = create(type, "t", config)
    layer.build(in_shapes)
    rng = np.random.default_rng(seed)
    for k, p in layer.params(layer.in_shapes).items():
        v = initialize(p.init, p.shape, rng, np.float64)
        if isinstance(p.init, str) and p.init == "zeros":
            v += rng.normal(0, 0.3, p.shape)                   # avoid symmetric starting points
        elif isinstance(p.init, str) and p.init == "ones":
            v += rng.uniform(-0.3, 0.3, p.shape)               # stays positive (a running variance, a scale)
        layer.p[k] = v.astype(dtype)
        if p.trainable:
            layer.g[k] = np.zeros(p.shape, dtype)
    return layer


def copy_to(layer, dtype):
    """A second layer of the same type and config holding layer's parameters cast to dtype."""
    other = create(layer.type, layer.name, layer.get_config())
    other.build(layer.in_shapes)
    other.p = {k: v.astype(dtype) for k, v in layer.p.items()}
    other.g = {k: np.zeros(v.shape, dtype) for k, v in layer.g.items()}
    return other


def inputs(in_shapes, opts, batch=3, seed=0, dtype=np.float64):
    """(xs, input masks): random inputs for a sample (ids for "ints", lengths for "mask")."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0, 1, (batch,) + tuple(s)) for s in in_shapes]
    if opts.get("domain"):
        xs = [rng.uniform(*opts["domain"], x.shape) for x in xs]
    if opts.get("ints"):
        xs[0] = rng.integers(0, opts["ints"], xs[0].shape).astype(np.float64)
    masks = [None] * len(xs)
    for i, s in enumerate(in_shapes):
        if (i == 0 and opts.get("mask")) or (opts.get("masks") and len(s) == 2):
            t = s[0]
            lengths = rng.integers(1, t + 1, batch)
            lengths[0] = t                                      # one full row, at least one shorter when T > 1
            if t > 1 and batch > 1:
                lengths[1 + i % (batch - 1)] = min(lengths[1 + i % (batch - 1)], t - 1)
            masks[i] = np.arange(t) < lengths[:, None]         # (B, T)
    return [x.astype(dtype) for x in xs], masks


def run(layer, xs, training=True, seed=1, masks=None):
    """layer.forward on xs with the same random draws (dropout) on every call; a copy of the output.

    masks: the inputs' (B, T) masks; None keeps the layer's in_masks as they are."""
    layer.rng = np.random.default_rng(seed)
    if masks is not None:
        layer.in_masks = list(masks)
    return np.array(layer.forward(*xs, training=training), copy=True)


def out_mask(layer, masks):
    """(B, T) valid output steps, or None when every output value counts."""
    if not any(m is not None for m in masks):
        return None
    return layer.compute_mask(list(masks))


def upstream(layer, y, masks, seed=2):
    """Random dL/dy, zero at padded output steps: L = Σ y⊙u over valid steps only."""
    u = np.random.default_rng(seed).normal(0, 1, y.shape)
    om = out_mask(layer, masks)
    if om is not None:
        u[~om] = 0.0
    return u


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


def backward(layer, u):
    """Copies of dL/dx per input (layers may return scratch buffers that the next call overwrites)."""
    return [None if d is None else np.array(d, copy=True) for d in layer.backward(u.copy())]


def check_layer(type, config, in_shapes, opts=None, batch=3, seed=0, training=True):
    """Assert dL/dx and dL/dθ match float64 central differences for L = Σ y⊙u (forward in the given mode)."""
    opts = opts or {}
    layer = build(type, config, in_shapes, seed)
    xs, masks = inputs(in_shapes, opts, batch, seed)
    if not training:                                         # as in a trained model: a training step came first,
        other, om = inputs(in_shapes, opts, batch, seed + 7)  # so eval must not read what training left behind
        backward(layer, upstream(layer, run(layer, other, True, masks=om), om))
    y = run(layer, xs, training, masks=masks)
    u = upstream(layer, y, masks)
    dxs = backward(layer, u)
    grads = {k: g.copy() for k, g in layer.g.items()}
    mode = "train" if training else "eval"
    loss = lambda: float(np.sum(run(layer, xs, training, masks=masks) * u))
    for i, x in enumerate(xs):
        if i == 0 and opts.get("ints"):
            continue
        np.testing.assert_allclose(dxs[i], numeric(loss, x), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{type} {config} ({mode}): input {i} gradient")
        if masks[i] is not None:
            pad = ~masks[i]
            assert np.all(dxs[i][pad] == 0), f"{type} {config} ({mode}): dx is not 0 at padded steps"
    for k in grads:
        np.testing.assert_allclose(grads[k], numeric(loss, layer.p[k]), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{type} {config} ({mode}): parameter {k} gradient")
    return layer


def strided(x, how):
    """The same values as x in a non-C-contiguous layout: 'F' (Fortran order / transposed) or 'step' (every other)."""
    if how == "F":
        return np.asfortranarray(x)
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    big[..., ::2] = x
    return big[..., ::2]


def check_non_contiguous(type, config, in_shapes, opts=None, batch=3, seed=0):
    """Outputs and gradients for Fortran-ordered and strided inputs equal those for C-contiguous ones."""
    opts = opts or {}
    for how in ("F", "step"):
        layer = build(type, config, in_shapes, seed)
        xs, masks = inputs(in_shapes, opts, batch, seed)
        for training in (True, False):
            y = run(layer, xs, training, masks=masks)
            u = upstream(layer, y, masks)
            dxs = backward(layer, u)
            grads = {k: g.copy() for k, g in layer.g.items()}
            views = [strided(x, how) for x in xs]
            assert all(not v.flags.c_contiguous for v in views if v.ndim > 1 and v.size > 1)
            yv = run(layer, views, training, masks=masks)
            what = f"{type} {config} ({'train' if training else 'eval'}, {how}-ordered input)"
            np.testing.assert_allclose(yv, y, rtol=1e-12, atol=1e-12, err_msg=f"{what}: output")
            for d, dv in zip(dxs, backward(layer, u)):
                if d is not None:
                    np.testing.assert_allclose(dv, d, rtol=1e-12, atol=1e-12, err_msg=f"{what}: input gradient")
            for k, g in layer.g.items():
                np.testing.assert_allclose(g, grads[k], rtol=1e-12, atol=1e-12, err_msg=f"{what}: {k} gradient")


def check_read_only(type, config, in_shapes, opts=None, batch=3, seed=0):
    """Read-only inputs (x.flags.writeable = False, as batches of a memory map) give the outputs and gradients
    of writable ones, in float64 and float32, training and evaluation mode, with and without dx (a first layer)."""
    opts = opts or {}
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        for need_dx in (True, False):
            layer, ref = build(type, config, in_shapes, seed, dtype), build(type, config, in_shapes, seed, dtype)
            layer.need_dx = ref.need_dx = need_dx
            xs, masks = inputs(in_shapes, opts, batch, seed, dtype)
            frozen = [x.copy() for x in xs]
            for x in frozen:
                x.flags.writeable = False
            for training in (True, False):
                what = (f"{type} {config} ({'train' if training else 'eval'}, {np.dtype(dtype).name}, read-only "
                        f"input{'' if need_dx else ', no dx'})")
                y = run(ref, xs, training, masks=masks)
                u = upstream(ref, y, masks).astype(dtype)
                try:
                    yr = run(layer, frozen, training, masks=masks)
                    drs = backward(layer, u)
                except Exception as e:                    # numpy: "read-only"; numba: a typing error
                    raise AssertionError(f"{what}: {e.__class__.__name__}: {str(e).strip().splitlines()[0]}") from e
                np.testing.assert_allclose(yr, y, rtol=tol, atol=tol, err_msg=f"{what}: output")
                for d, dr in zip(backward(ref, u), drs):
                    if need_dx and d is not None:
                        np.testing.assert_allclose(dr, d, rtol=tol, atol=tol, err_msg=f"{what}: input gradient")
                for k, g in layer.g.items():
                    np.testing.assert_allclose(g, ref.g[k], rtol=tol, atol=tol, err_msg=f"{what}: {k} gradient")
            for x, f in zip(xs, frozen):
                np.testing.assert_array_equal(f, x, err_msg=f"{type} {config}: the input changed")


def is_random(type, config, in_shapes, opts=None):
    """True when two training-mode forwards with different random streams differ (dropout, noise)."""
    layer = build(type, config, in_shapes)
    xs, masks = inputs(in_shapes, opts or {})
    return not np.array_equal(run(layer, xs, True, seed=1, masks=masks), run(layer, xs, True, seed=2, masks=masks))


def check_float32(type, config, in_shapes, opts=None, batch=3, seed=0, rtol=2e-4):
    """float32 forward agrees with float64 within float32 rounding in evaluation mode, and forward and backward
    in training mode for deterministic layers (random draws differ between the dtypes)."""
    opts = opts or {}
    modes = [False] + ([] if is_random(type, config, in_shapes, opts) else [True])
    for training in modes:
        l64 = build(type, config, in_shapes, seed)
        l32 = copy_to(l64, np.float32)
        xs, masks = inputs(in_shapes, opts, batch, seed)
        y64 = run(l64, xs, training, masks=masks)
        y32 = run(l32, [x.astype(np.float32) for x in xs], training, masks=masks)
        what = f"{type} {config} ({'train' if training else 'eval'}, float32)"
        assert y32.dtype == np.float32, f"{what}: output is {y32.dtype}"
        scale = max(1.0, float(np.abs(y64).max()))
        np.testing.assert_allclose(y32, y64, rtol=rtol, atol=rtol * scale, err_msg=f"{what}: output")
        if not training:
            continue                                         # eval-mode backward: check_layer(training=False)
        u = upstream(l64, y64, masks)
        for d64, d32 in zip(backward(l64, u), backward(l32, u.astype(np.float32))):
            if d64 is not None:
                assert d32.dtype == np.float32, f"{what}: input gradient is {d32.dtype}"
                s = max(1.0, float(np.abs(d64).max()))
                np.testing.assert_allclose(d32, d64, rtol=rtol, atol=rtol * s, err_msg=f"{what}: input gradient")
        for k in l64.g:
            s = max(1.0, float(np.abs(l64.g[k]).max()))
            np.testing.assert_allclose(l32.g[k], l64.g[k], rtol=rtol, atol=rtol * s, err_msg=f"{what}: {k} gradient")


def check_backward_twice(type, config, in_shapes, opts=None, batch=3, seed=0):
    """A second backward after one training forward gives the same gradients and leaves dL/dy as it was."""
    opts = opts or {}
    for training in (True,):
        layer = build(type, config, in_shapes, seed)
        xs, masks = inputs(in_shapes, opts, batch, seed)
        y = run(layer, xs, training, masks=masks)
        u = upstream(layer, y, masks)
        u0 = u.copy()
        first = [None if d is None else np.array(d, copy=True) for d in layer.backward(u)]
        g1 = {k: g.copy() for k, g in layer.g.items()}
        second = layer.backward(u)
        what = f"{type} {config} ({'train' if training else 'eval'})"
        assert np.array_equal(u, u0), f"{what}: backward changed its dL/dy argument"
        for a, b in zip(first, second):
            if a is not None:
                np.testing.assert_array_equal(b, a, err_msg=f"{what}: second backward, input gradient")
        for k, g in layer.g.items():
            np.testing.assert_array_equal(g, g1[k], err_msg=f"{what}: second backward, {k} gradient")


def check_shapes(type, config, in_shapes, opts=None, batch=3, seed=0):
    """Output shape == compute_output_shape (no arrays) and each dx has its input's shape, in both modes."""
    opts = opts or {}
    want = tuple(create(type, "t", config).compute_output_shape([tuple(s) for s in in_shapes]))
    for training in (True, False):
        layer = build(type, config, in_shapes, seed)
        xs, masks = inputs(in_shapes, opts, batch, seed)
        y = run(layer, xs, training, masks=masks)
        assert y.shape == (batch,) + want, f"{type} {config}: output {y.shape}, compute_output_shape {want}"
        for x, d in zip(xs, backward(layer, upstream(layer, y, masks))):
            assert d is None or d.shape == x.shape, f"{type} {config}: dx {d.shape} for input {x.shape}"


def check_config(type, config):
    """create(type, name, get_config()) — also after a JSON round trip — gives the same config."""
    layer = create(type, "t", config)
    cfg = layer.get_config()
    assert create(type, "u", cfg).get_config() == cfg
    assert create(type, "u", json.loads(json.dumps(cfg))).get_config() == cfg
    assert json.loads(json.dumps(cfg)) == json.loads(json.dumps(create(type, "u", dict(config)).get_config()))
