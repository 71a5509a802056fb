"""Elementwise, merge and group-normalisation layers against their formulas (the registry-wide checks —
gradients, PyTorch parity, ONNX, PyTorch export — run in test_gradcheck, test_torch_parity, test_enrolment,
test_torch_export); shape errors, masks, and a LogSoftmax head trained with cross-entropy."""
import math

import numpy as np
import pytest

from engine import Graph
from engine.data import Dataset
from engine.errors import ConfigError, ShapeError
from engine.layers import REGISTRY, create
from engine.model import Model
from engine.project import training_config
from engine.trainer import Trainer
from gradcheck import build, cases, inputs, run

X = np.array([[-30.0, -2.5, -1.0, -1e-3, 0.0, 1e-3, 0.7, 2.0, 25.0]])


def _sig(v):
    return 1 / (1 + math.exp(-v))


SELU_L, SELU_A = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
FORMULAS = [   # (type, config, y(x) written from the definition, dy/dx written from the definition)
    ("LeakyReLU", {"negative_slope": 0.2}, lambda v: v if v > 0 else 0.2 * v, lambda v: 1.0 if v > 0 else 0.2),
    ("ELU", {"alpha": 0.5}, lambda v: v if v > 0 else 0.5 * (math.exp(v) - 1), lambda v: 1.0 if v > 0 else 0.5 * math.exp(v)),
    ("SELU", {}, lambda v: SELU_L * (v if v > 0 else SELU_A * (math.exp(v) - 1)),
     lambda v: SELU_L * (1.0 if v > 0 else SELU_A * math.exp(v))),
    ("SiLU", {}, lambda v: v * _sig(v), lambda v: _sig(v) * (1 + v * (1 - _sig(v)))),
    ("Softplus", {"beta": 2.0, "threshold": 3.0}, lambda v: v if 2 * v > 3 else math.log1p(math.exp(2 * v)) / 2,
     lambda v: 1.0 if 2 * v > 3 else _sig(2 * v)),
    ("Mish", {}, lambda v: v * math.tanh(math.log1p(math.exp(v))),
     lambda v: math.tanh(math.log1p(math.exp(v))) + v * _sig(v) * (1 - math.tanh(math.log1p(math.exp(v))) ** 2)),
    ("GELU", {}, lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
     lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi)),
    ("GELU", {"approximate": "tanh"}, lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))),
     None),
    ("Clip", {"min": -1.0, "max": 0.7}, lambda v: min(max(v, -1.0), 0.7), lambda v: 1.0 if -1 <= v <= 0.7 else 0.0),
    ("CELU", {"alpha": 0.5}, lambda v: max(0, v) + min(0, 0.5 * (math.exp(v / 0.5) - 1)),
     lambda v: 1.0 if v > 0 else math.exp(v / 0.5)),
    ("Softsign", {}, lambda v: v / (1 + abs(v)), lambda v: 1 / (1 + abs(v)) ** 2),
    ("HardSigmoid", {"alpha": 0.2, "beta": 0.4}, lambda v: max(0, min(1, 0.2 * v + 0.4)),
     lambda v: 0.2 if 0 < 0.2 * v + 0.4 < 1 else 0.0),
    ("Hardswish", {}, lambda v: v * max(0, min(1, v / 6 + 0.5)),
     lambda v: 0.0 if v <= -3 else 1.0 if v >= 3 else (2 * v + 3) / 6),
    ("ThresholdedReLU", {"threshold": 0.5}, lambda v: v if v > 0.5 else 0.0, lambda v: 1.0 if v > 0.5 else 0.0),
    ("Hardshrink", {"lambd": 0.8}, lambda v: v if abs(v) > 0.8 else 0.0, lambda v: 1.0 if abs(v) > 0.8 else 0.0),
    ("Softshrink", {"lambd": 0.8}, lambda v: v - 0.8 if v > 0.8 else v + 0.8 if v < -0.8 else 0.0,
     lambda v: 1.0 if abs(v) > 0.8 else 0.0),
]


@pytest.mark.parametrize("type,config,f,df", FORMULAS, ids=[f"{t}-{i}" for i, (t, *_) in enumerate(FORMULAS)])
def test_activation_is_its_formula(type, config, f, df):
    layer = build(type, config, [X.shape[1:]])
    y = run(layer, [X.copy()])
    np.testing.assert_allclose(y[0], [f(v) for v in X[0]], rtol=1e-13, atol=1e-300)
    if df is not None:
        np.testing.assert_allclose(layer.backward(np.ones_like(y))[0][0], [df(v) for v in X[0]], rtol=1e-12, atol=1e-15)


def test_softplus_follows_torch_at_the_threshold_and_for_large_inputs():
    torch = pytest.importorskip("torch")
    x = np.array([[-800.0, -40.0, 9.99, 10.0, 10.01, 40.0, 800.0]])
    layer = build("Softplus", {"beta": 2.0, "threshold": 20.0}, [(7,)])
    want = torch.nn.functional.softplus(torch.tensor(x), 2.0, 20.0).numpy()
    y = run(layer, [x])
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(layer.backward(np.ones_like(y))[0]))
    np.testing.assert_allclose(y, want, rtol=1e-14, atol=0)


def test_formulas_on_hover_carry_the_nodes_numbers():
    assert create("ELU", "e", {"alpha": 0.5}).formulas([(3,)])["shape"].startswith(
        "y = x for x > 0, 0.5·(eˣ − 1) otherwise per value")
    assert "0.2·x otherwise" in create("LeakyReLU", "l", {"negative_slope": 0.2}).formulas([(3,)])["shape"]
    assert "ln(1 + e^(2·x))/2, and y = x where 2·x > 5" in create(
        "Softplus", "s", {"beta": 2.0, "threshold": 5.0}).formulas([(3,)])["shape"]
    assert "min(max(x, 0), 6)" in create("Clip", "c", {"min": 0.0, "max": 6.0}).formulas([(3,)])["shape"]
    assert "tanh(√(2/π)(x + 0.044715x³))" in create("GELU", "g", {"approximate": "tanh"}).formulas([(3,)])["shape"]
    f = create("GroupNorm", "g", {"groups": 4}).formulas([(8, 5, 5)])
    assert "C/G = 8/4 = 2 channels (50 values)" in f["shape"] and f["params"].endswith("2·C = 2·8 = 16")
    assert "(1 + 0.0001/3·Σ x_{c′}² over c′ = c − 1 … c + 1)^0.75" in create(
        "LocalResponseNorm", "n", {"size": 3}).formulas([(4, 2, 2)])["shape"]
    assert create("PReLU", "p", {"per_channel": True}).formulas([(6, 4, 4)])["params"].endswith("C = 6")
    add = create("Add", "a").formulas([(4, 3), (3,)])
    assert "(4, 3), (3,) broadcast" in add["shape"] and add["shape"].endswith("→ (4, 3)")


def test_prelu_learns_one_slope_per_channel():
    x = np.random.default_rng(0).normal(0, 1, (3, 2, 4, 4))                   # (B, C, H, W)
    layer = build("PReLU", {"per_channel": True}, [(2, 4, 4)])
    layer.p["a"][:] = [0.1, -0.5]
    y = run(layer, [x])
    a = np.array([0.1, -0.5])[None, :, None, None]
    np.testing.assert_allclose(y, np.where(x > 0, x, a * x))
    dy = np.random.default_rng(1).normal(0, 1, x.shape)
    (dx,) = layer.backward(dy)
    np.testing.assert_allclose(dx, np.where(x > 0, dy, a * dy))
    np.testing.assert_allclose(layer.g["a"], [(dy * x)[:, c][x[:, c] <= 0].sum() for c in range(2)])


def test_clip_refuses_min_above_max():
    with pytest.raises(ConfigError, match=r"Clip 'c': min = 2 is above max = 1"):
        create("Clip", "c", {"min": 2.0, "max": 1.0})


# ---- merging with broadcasting ----
def test_add_broadcasts_per_sample_and_sums_gradients_over_broadcast_axes():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 4, 1))
    layer = build("Add", {}, [(4, 3), (3,), (4, 1)])
    y = run(layer, [a, b, c])
    np.testing.assert_allclose(y, a + b[:, None, :] + c)
    dy = rng.normal(size=y.shape)
    da, db, dc = layer.backward(dy)
    np.testing.assert_allclose(da, dy)
    np.testing.assert_allclose(db, dy.sum(axis=1))                         # over the T steps (3,) was stretched
    np.testing.assert_allclose(dc, dy.sum(axis=2, keepdims=True))          # over the F features (4, 1) was stretched


def test_subtract_and_multiply():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 5, 1))
    sub, mul = build("Subtract", {}, [(5, 2), (5, 1)]), build("Multiply", {}, [(5, 2), (5, 1)])
    np.testing.assert_allclose(run(sub, [a, b]), a - b)
    np.testing.assert_allclose(run(mul, [a, b]), a * b)
    dy = rng.normal(size=(3, 5, 2))
    da, db = sub.backward(dy)
    np.testing.assert_allclose(db, -dy.sum(axis=2, keepdims=True))
    da, db = mul.backward(dy)
    np.testing.assert_allclose(da, dy * b)
    np.testing.assert_allclose(db, (dy * a).sum(axis=2, keepdims=True))


@pytest.mark.parametrize("type,shapes,msg", [
    ("Add", [(4, 3), (2,)], r"Add 'm': input 2 \(2,\) does not broadcast with input 1 \(4, 3\)"),
    ("Multiply", [(4, 3), (4, 1), (5, 3)], r"input 3 \(5, 3\) does not broadcast with inputs 1–2 \(4, 3\)"),
    ("Subtract", [(3,), (3,), (3,)], r"Subtract 'm' needs exactly two inputs"),
])
def test_shapes_that_do_not_broadcast_are_named(type, shapes, msg):
    with pytest.raises(ShapeError, match=msg):
        create(type, "m").compute_output_shape(shapes)


def test_a_sequence_plus_a_vector_keeps_the_sequences_mask():
    g = Graph()
    g.add_node("Input", "seq", {"shape": [4, 3], "standardize": False})
    g.chain(("pool", "TimePool", {"mode": "mean"}), ("bias", "Dense", {"units": 3}), after="seq")   # (3,)
    g.add_node("Add", "add")
    g.connect("seq", "add")
    g.connect("bias", "add")
    g.chain(("last", "TimePool", {"mode": "last"}), after="add")
    m = Model(g)
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    junk = x.copy()
    junk[0, 2:] = 99.0                                                       # padded steps must not matter
    y = m.forward(x, mask=mask)
    np.testing.assert_array_equal(m.forward(junk, mask=mask), y)
    b = m.layers["bias"].forward(m.layers["pool"].forward(x[:1, :2]))
    np.testing.assert_allclose(y[0], x[0, 1] + b[0], rtol=1e-6)              # the last valid step, not step 3


# ---- group normalisation ----
def test_groupnorm_is_its_formula_and_instancenorm_is_one_channel_per_group():
    """A (T, F) sequence is F = 6 features in 3 groups of 2, each group's statistics over its 2·T values."""
    rng = np.random.default_rng(2)
    x = rng.normal(1, 3, (2, 5, 6))                                             # (B, T, F)
    g = build("GroupNorm", {"groups": 3}, [(5, 6)])
    y = run(g, [x])
    xs = x.reshape(2, 5, 3, 2)                                                  # (B, T, group, 2 features)
    mu, var = xs.mean(axis=(1, 3), keepdims=True), xs.var(axis=(1, 3), keepdims=True)
    want = ((xs - mu) / np.sqrt(var + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(y, want * g.p["gamma"] + g.p["beta"], rtol=1e-12)
    inst = build("InstanceNorm", {}, [(5, 6)])
    per = build("GroupNorm", {"groups": 6, "affine": False}, [(5, 6)])
    np.testing.assert_allclose(run(inst, [x]), run(per, [x]), rtol=1e-14)
    np.testing.assert_allclose(run(inst, [x]), (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5),
                               rtol=1e-12)                                      # each feature over its steps
    assert inst.p == {}


def test_groups_that_do_not_divide_the_channels_offer_a_fix():
    with pytest.raises(ShapeError, match=r"C = 6 channels .* do not split into groups = 4 equal groups: "
                                         r"set groups to 3") as e:
        create("GroupNorm", "g", {"groups": 4}).compute_output_shape([(6, 8, 8)])
    assert e.value.fix.config == (("groups", 3),)


@pytest.mark.parametrize("type,config", [("GroupNorm", {"groups": 2}), ("InstanceNorm", {"affine": True})])
def test_group_and_instance_norm_of_a_padded_sequence_use_its_valid_steps_only(type, config):
    """Each sequence normalised alone over its valid steps; padded steps change nothing and output 0."""
    layer = build(type, config, [(4, 2)])
    rng = np.random.default_rng(5)
    x = rng.normal(2, 3, (2, 4, 2))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    y = run(layer, [x], masks=[mask])
    junk = x.copy()
    junk[0, 2:] = 1e6                                                         # padded steps of sequence 0
    np.testing.assert_array_equal(run(layer, [junk], masks=[mask]), y)
    assert not y[0, 2:].any()
    alone = build(type, config, [(2, 2)])
    alone.p = layer.p
    np.testing.assert_allclose(y[0, :2], run(alone, [x[:1, :2]])[0], rtol=1e-12)   # sequence 0 as a (2, 2) sample
    layer.in_masks = [np.ones((2, 4), bool)]                                  # every step valid: the unmasked path
    np.testing.assert_allclose(run(layer, [x], masks=[np.ones((2, 4), bool)])[1], y[1], rtol=1e-12)


def test_lrn_window_is_pytorchs_for_even_sizes():
    """size 2: the window of channel c is c − 1 … c (torch pads ⌊n/2⌋ before, ⌊(n − 1)/2⌋ after)."""
    x = np.random.default_rng(3).normal(size=(1, 2, 3))                            # (B, T, F): F = 3 channels
    layer = build("LocalResponseNorm", {"size": 2, "alpha": 0.8, "beta": 0.5, "k": 1.5}, [(2, 3)])
    y = run(layer, [x])
    sq = np.concatenate([np.zeros((1, 2, 1)), x * x], axis=2)                      # feature −1 is 0
    want = x / (1.5 + 0.8 / 2 * (sq[:, :, :-1] + sq[:, :, 1:])) ** 0.5
    np.testing.assert_allclose(y, want, rtol=1e-13)


# ---- LogSoftmax as the output layer ----
def _blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(0, 0.7, (n, 2)) + np.array([[2, 0], [-1, 2], [-1, -2]])[y]).astype(np.float32)
    return Dataset(x, y, "multiclass", "blobs", ["a", "b", "c"])


@pytest.mark.parametrize("fast", [True, False])
def test_logsoftmax_head_trains_with_cross_entropy_as_a_softmax_head_does(fast):
    """cce reads a LogSoftmax head's input as logits: the same loss, gradients and steps as with Softmax."""
    ds = _blobs()
    cfg = training_config({"loss": "cce", "optimizer": "adam", "lr": 0.05, "batch_size": 32})
    runs = {}
    for head in ("Softmax", "LogSoftmax"):
        g = Graph()
        g.chain(("in", "Input", {"shape": [2]}), ("h", "Dense", {"units": 8}), ("r", "ReLU", {}),
                ("z", "Dense", {"units": 3}), ("p", head, {}))
        m = Model(g, seed=1)
        m.layers["in"].adapt(ds.x)
        tr = Trainer(m, cfg, ds)
        assert tr.fused and (tr.fast is not None) == True                    # noqa: E712 (the fused kernel)
        if not fast:
            tr.fast = None
        runs[head] = [tr.train_step(ds.x[i:i + 32], ds.y[i:i + 32])[0] for i in (0, 32, 64) * 10]
        runs[head + "/acc"] = tr.evaluate(ds)[1]
    np.testing.assert_allclose(runs["LogSoftmax"], runs["Softmax"], rtol=1e-6)
    assert runs["LogSoftmax"][-1] < 0.5 * runs["LogSoftmax"][0] and runs["LogSoftmax/acc"] > 0.9


def test_logsoftmax_output_is_log_probabilities():
    x = np.array([[0.0, 1000.0, -5.0], [1.0, 2.0, 3.0]])
    layer = build("LogSoftmax", {}, [(3,)])
    y = run(layer, [x])
    assert np.all(np.isfinite(y)) and y[0, 0] == pytest.approx(-1000.0)   # e^(−1000) underflows; its log does not
    np.testing.assert_allclose(np.exp(y[1]), np.exp(x[1]) / np.exp(x[1]).sum(), rtol=1e-14)


def test_layernorm_over_the_last_axes():
    """axes = 2 on (C, L): μ, σ² over each sample's C·L values; γ, β of shape (C, L) (PyTorch's normalized_shape)."""
    x = np.random.default_rng(4).normal(2, 3, (2, 3, 4))
    layer = build("LayerNorm", {"axes": 2}, [(3, 4)])
    assert layer.p["gamma"].shape == (3, 4)
    mu, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(run(layer, [x]), (x - mu) / np.sqrt(var + 1e-5) * layer.p["gamma"] + layer.p["beta"],
                               rtol=1e-12)
    with pytest.raises(ShapeError, match=r"last axes = 3 axes but its input \(3, 4\) has 2") as e:
        create("LayerNorm", "n", {"axes": 3}).compute_output_shape([(3, 4)])
    assert e.value.fix.config == (("axes", 2),)
    layer.in_masks = [np.array([[1, 1, 0], [1, 1, 1]], bool)]
    with pytest.raises(ShapeError, match="padded steps would change the valid ones: set axes to 1"):
        layer.forward(x, training=True)


def test_rmsnorm_is_its_formula():
    """y = γ·x/√(mean(x²) + ε) over the last axes, no centring."""
    x = np.random.default_rng(5).normal(1, 2, (3, 4, 5))
    for axes in (1, 2):
        layer = build("RMSNorm", {"axes": axes, "eps": 1e-3}, [(4, 5)])
        ax = (2,) if axes == 1 else (1, 2)
        want = x / np.sqrt((x * x).mean(axis=ax, keepdims=True) + 1e-3) * layer.p["gamma"]
        np.testing.assert_allclose(run(layer, [x]), want, rtol=1e-12)


def test_maximum_minimum_average_route_their_gradients():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 3))
    dy = rng.normal(size=(2, 4, 3))
    for type, want in (("Maximum", np.maximum), ("Minimum", np.minimum)):
        layer = build(type, {}, [(4, 3), (3,)])
        np.testing.assert_array_equal(run(layer, [a, b]), want(a, b[:, None]))
        da, db = layer.backward(dy)
        wins = want(a, b[:, None]) == a                                   # where input 1 is picked
        np.testing.assert_array_equal(da, np.where(wins, dy, 0))
        np.testing.assert_allclose(db, np.where(wins, 0, dy).sum(axis=1))
    avg = build("Average", {}, [(4, 3), (3,)])
    np.testing.assert_allclose(run(avg, [a, b]), (a + b[:, None]) / 2)
    np.testing.assert_allclose(avg.backward(dy)[1], dy.sum(axis=1) / 2)
    assert create("Maximum", "m").formulas([(3,), (3,), (3,)])["shape"].startswith("y = max(x1, x2, x3) per value")


FILES = ("activations", "activations_more", "pointwise", "merge", "merge_reduce", "normalization", "norm_groups",
         "norm_scale")
MINE = {t for t, cls in REGISTRY.items() if cls.__module__.rsplit(".", 1)[-1] in FILES}   # the layers of these files


@pytest.mark.parametrize("type,config,shapes,opts", [c for c in cases() if c[0] in MINE],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_read_only_inputs_are_read_only(type, config, shapes, opts):
    """Forward and backward on read-only inputs and gradients (memory-mapped data) neither fail nor write."""
    xs, masks = inputs(shapes, opts)
    for x in xs:
        x.flags.writeable = False
    kept = [x.copy() for x in xs]
    layer = build(type, config, shapes)
    for training in (True, False):
        y = run(layer, xs, training, masks=masks)
        dy = np.ones_like(y)
        dy.flags.writeable = False
        layer.backward(dy)
        assert np.all(dy == 1)
    for x, k in zip(xs, kept):
        np.testing.assert_array_equal(x, k)


def test_the_training_form_accepts_a_logsoftmax_head_for_cross_entropy():
    from gui.training.settings import pairing_warnings
    assert pairing_warnings("cce", "LogSoftmax", (3,), "multiclass", 3) == []
    assert pairing_warnings("cce", "Dense", (3,), "multiclass", 3) != []


def test_lp_normalize_gives_unit_norms():
    x = np.random.default_rng(7).normal(size=(3, 4, 5))
    for p, axis, norm in ((2, -1, lambda v, a: np.sqrt((v * v).sum(a, keepdims=True))),
                          (1, 0, lambda v, a: np.abs(v).sum(a, keepdims=True))):
        layer = build("LpNormalize", {"p": p, "axis": axis}, [(4, 5)])
        a = 2 if axis == -1 else 1
        y = run(layer, [x])
        np.testing.assert_allclose(y, x / norm(x, a), rtol=1e-13)
        np.testing.assert_allclose(norm(y, a), 1.0, rtol=1e-13)
    z = build("LpNormalize", {}, [(3,)])
    assert np.all(run(z, [np.zeros((2, 3))]) == 0)                          # ‖0‖ < ε: 0/ε, not NaN
