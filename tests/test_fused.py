"""The fused training kernel (engine/fused.py) against the per-layer reference path, op by op."""
import numpy as np
import pytest

from engine import Graph, fused, losses, optimizers
from engine.data import Dataset
from engine.errors import TrainingError
from engine.model import Model
from engine.project import training_config
from engine.trainer import Trainer

TOL = {np.float64: dict(rtol=1e-9, atol=1e-12), np.float32: dict(rtol=2e-3, atol=2e-5)}


def chain(input_shape, layers, standardize=False):
    """Input → layers; a layer is (type, config) or (type, config, [extra source names])."""
    g = Graph()
    g.add_node("Input", "in", {"shape": list(input_shape), "standardize": standardize})
    prev = "in"
    for i, spec in enumerate(layers):
        t, c = spec[0], spec[1]
        g.add_node(t, f"n{i}", c)
        for s in [prev] + list(spec[2] if len(spec) > 2 else []):
            g.connect(s, f"n{i}")
        prev = f"n{i}"
    return g


def dataset(n, shape, task, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n,) + tuple(shape)).astype(np.float32)
    if task == "regression":
        return Dataset(x, rng.normal(0, 1, (n, classes)), task, "t")
    return Dataset(x, rng.integers(0, classes, n), task, "t", [str(i) for i in range(classes)])


def trainer(graph, cfg, ds, dtype, fast):
    m = Model(graph, dtype=dtype, seed=3)
    for n in m.inputs:
        m.layers[n].adapt(ds.x)
    tr = Trainer(m, training_config(cfg), ds)
    if fast:
        assert tr.fast is not None, "this graph should run on the fused kernel"
    else:
        tr.fast = None
    return m, tr


def steps(graph, cfg, ds, dtype, fast, n=6, batch=16):
    """Losses, gradient norms and outputs of n train steps, and the final weights."""
    m, tr = trainer(graph, cfg, ds, dtype, fast)
    rec = []
    for i in range(n):
        j = slice((i * batch) % len(ds), (i * batch) % len(ds) + batch)
        loss, out, gn = tr.train_step(ds.x[j], ds.y[j])
        rec.append((loss, gn, np.array(out, np.float64)))
    return rec, m.theta.astype(np.float64), tr


CASES = {
    # id: (input shape, layers, loss, task/classes, optimizer settings)
    "dense-small-relu-sigmoid-bce": ((2,), [("Dense", {"units": 3}), ("ReLU", {}), ("Dense", {"units": 1}),
                                            ("Sigmoid", {})], "bce", ("binary", 2), {"optimizer": "adam"}),
    "dense-blas-tanh-dropout-softmax-cce": (
        (40,), [("Dense", {"units": 130}), ("Tanh", {}), ("Dropout", {"rate": 0.3}), ("Dense", {"units": 70}),
                ("ReLU", {}), ("Dense", {"units": 5}), ("Softmax", {})], "cce", ("multiclass", 5),
        {"optimizer": "adam", "weight_decay": 0.01}),
    "residual-add3-sigmoid-mse": (
        (6,), [("Dense", {"units": 6}), ("ReLU", {}), ("Dense", {"units": 6}),
               ("Add", {}, ["n0", "in"]), ("Sigmoid", {}), ("Dense", {"units": 2, "use_bias": False})],
        "mse", ("regression", 2), {"optimizer": "momentum", "lr": 0.05}),
    "reshape-seq-dense-flatten-softmax-mid": (
        (12,), [("Reshape", {"shape": [3, 4]}), ("Dense", {"units": 5}), ("Softmax", {}), ("Flatten", {}),
                ("Dropout", {"rate": 0.0}), ("Dense", {"units": 3}), ("Softmax", {})], "cce",
        ("multiclass", 3), {"optimizer": "rmsprop", "lr": 0.01}),
    "branch-accumulate-adagrad": (
        (5,), [("Dense", {"units": 4}), ("Tanh", {}), ("Dense", {"units": 4}), ("Add", {}, ["n1"]),
               ("Dropout", {"rate": 0.5}), ("Dense", {"units": 1}), ("Sigmoid", {})], "bce", ("binary", 2),
        {"optimizer": "adagrad", "lr": 0.1}),
    "standardize-sgd": ((3,), [("Dense", {"units": 4}), ("ReLU", {}), ("Dense", {"units": 3}), ("Softmax", {})],
                        "cce", ("multiclass", 3), {"optimizer": "sgd", "lr": 0.2, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_step_matches_per_layer_path(case, dtype):
    shape, layers, loss, (task, k), opt = CASES[case]
    g = chain(shape, layers, standardize=case.startswith("standardize"))
    ds = dataset(64, shape, task, k)
    cfg = dict(opt, loss=loss, batch_size=16)
    a, theta_a, _ = steps(g, cfg, ds, dtype, fast=True)
    b, theta_b, _ = steps(g, cfg, ds, dtype, fast=False)
    for (la, ga, oa), (lb, gb, ob) in zip(a, b):
        np.testing.assert_allclose(la, lb, **TOL[dtype])
        np.testing.assert_allclose(ga, gb, **TOL[dtype])
        np.testing.assert_allclose(oa, ob, **TOL[dtype])
    np.testing.assert_allclose(theta_a, theta_b, **TOL[dtype])
    assert not np.array_equal(theta_a, Model(g, dtype=dtype, seed=3).theta)        # it did train


def test_whole_run_with_dropout_matches_per_layer_path():
    g = chain((4,), [("Dense", {"units": 16}), ("ReLU", {}), ("Dropout", {"rate": 0.2}), ("Dense", {"units": 1}),
                     ("Sigmoid", {})])
    ds = dataset(90, (4,), "binary")
    res = []
    for fast in (True, False):
        m, tr = trainer(g, {"loss": "bce", "batch_size": 20, "epochs": 3, "lr": 0.01}, ds, np.float64, fast)
        res.append((tr.run(), tr.batch_loss, m.theta.copy()))
    (ra, la, ta), (rb, lb, tb) = res
    assert ra["steps"] == rb["steps"] == 15
    np.testing.assert_allclose(la, lb, rtol=1e-9)
    np.testing.assert_allclose(ta, tb, rtol=1e-9, atol=1e-12)


def test_last_smaller_batch_and_divergence_like_per_layer():
    g = chain((2,), [("Dense", {"units": 2}), ("ReLU", {}), ("Dense", {"units": 1}), ("Sigmoid", {})])
    ds = dataset(10, (2,), "binary")
    m, tr = trainer(g, {"loss": "bce", "batch_size": 4, "optimizer": "sgd", "lr": 0.1}, ds, np.float32, True)
    for nb in (4, 2, 8, 3):
        loss, out, gn = tr.train_step(ds.x[:nb], ds.y[:nb])
        assert out.shape == (nb, 1) and np.isfinite(loss)
    m.layers["n0"].p["W"][0, 0] = np.inf
    before = m.theta.copy()
    loss, out, gn = tr.train_step(ds.x[:4], ds.y[:4])
    assert not np.isfinite(gn) or not np.isfinite(loss)
    assert np.array_equal(m.theta, before, equal_nan=True) and tr.opt.k == 4      # no step was taken


def test_unsupported_graphs_and_losses_fall_back():
    conv = Graph()
    conv.add_node("Input", "in", {"shape": [1, 6, 6]})
    conv.add_node("Conv2D", "c", {"filters": 2})
    conv.add_node("Flatten", "f")
    conv.add_node("Dense", "d", {"units": 2})
    conv.add_node("Softmax", "s")
    for a, b in (("in", "c"), ("c", "f"), ("f", "d"), ("d", "s")):
        conv.connect(a, b)
    ds = dataset(8, (1, 6, 6), "multiclass")
    _, tr = trainer(conv, {"loss": "cce"}, ds, np.float32, fast=False)
    assert fused.compile(tr.model, tr.loss, tr.fused, tr.opt) is None
    loss, out, gn = tr.train_step(ds.x[:4], ds.y[:4])
    assert np.isfinite(loss) and out.shape == (4, 2)
    linear = chain((3,), [("Dense", {"units": 2})])           # cce on a linear head: not the fused loss
    m = Model(linear)
    with pytest.raises(TrainingError, match="add a Softmax after 'n0' or use mse"):      # and the trainer refuses it
        Trainer(m, training_config({"loss": "cce"}), dataset(8, (3,), "multiclass"))
    assert fused.compile(m, losses.get("cce"), False, optimizers.get("adam")) is None


def test_bad_label_gives_the_per_layer_error():
    g = chain((3,), [("Dense", {"units": 2}), ("Softmax", {})])
    ds = dataset(8, (3,), "multiclass")
    _, tr = trainer(g, {"loss": "cce"}, ds, np.float32, fast=True)
    with pytest.raises(TrainingError, match="class labels must lie in 0…1"):
        tr.train_step(ds.x[:4], np.array([0, 1, 2, 0]))


# ---- enrolment: every registered layer declares how the fused path runs it; equality on every sample ----
from engine.layers import REGISTRY  # noqa: E402


def test_every_layer_declares_its_fused_support():
    """In its own class body (a default inherited from the base class does not count)."""
    missing = sorted(t for t, cls in REGISTRY.items() if "fused" not in cls.__dict__)
    assert missing == [], f"declare `fused` (a method fused(self, b), or None) in: {missing}"
    for t, cls in REGISTRY.items():
        assert cls.__dict__["fused"] is None or callable(cls.__dict__["fused"]), t


def _sample_graph(type, config, shapes):
    """Input → (parallel Dense feeds for extra inputs) → layer → Flatten → Dense(3): a tiny trainable model."""
    g = Graph()
    g.add_node("Input", "in", {"shape": list(shapes[0])})
    srcs = ["in"]
    for i, s in enumerate(shapes[1:], 1):
        assert tuple(s[:-1]) == tuple(shapes[0][:-1]), "extra inputs must differ from input 0 on the last axis only"
        g.add_node("Dense", f"feed{i}", {"units": s[-1]})
        g.connect("in", f"feed{i}")
        srcs.append(f"feed{i}")
    g.add_node(type, "layer", config)
    for s in srcs:
        g.connect(s, "layer")
    g.add_node("Flatten", "flat")
    g.add_node("Dense", "head", {"units": 3})
    g.connect("layer", "flat")
    g.connect("flat", "head")
    return g


SAMPLES = [(t, c, s) for t, cls in sorted(REGISTRY.items()) if cls.__dict__.get("fused") is not None
           for c, s, *o in cls.samples() if not (o and o[0])     # masked / integer-id samples: per-layer only
           and all(tuple(x[:-1]) == tuple(s[0][:-1]) for x in s)]  # broadcasting inputs: per-layer only


DECLINED = [(t, c, s) for t, cls in sorted(REGISTRY.items()) if cls.__dict__.get("fused") is not None
            for c, s, *o in cls.samples() if o and o[0].get("per_layer")]


@pytest.mark.parametrize("type,config,shapes", DECLINED, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(DECLINED)])
def test_a_sample_the_fused_path_declines_trains_on_the_per_layer_path(type, config, shapes):
    g = _sample_graph(type, config, shapes)
    ds = dataset(16, shapes[0], "regression", 3, seed=1)
    cfg = {"loss": "mse", "optimizer": "adam", "lr": 0.01, "batch_size": 8}
    assert Trainer(Model(g, dtype=np.float64, seed=3), training_config(cfg), ds).fast is None
    losses, _, _ = steps(g, cfg, ds, np.float64, fast=False, n=2, batch=8)
    assert all(np.isfinite(v[0]) for v in losses)


@pytest.mark.parametrize("type,config,shapes", SAMPLES, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(SAMPLES)])
def test_fused_equals_per_layer_on_every_registry_sample(type, config, shapes):
    g = _sample_graph(type, config, shapes)
    ds = dataset(16, shapes[0], "regression", 3, seed=1)
    cfg = {"loss": "mse", "optimizer": "adam", "lr": 0.01, "batch_size": 8}
    m = Model(g, dtype=np.float64, seed=3)
    assert Trainer(m, training_config(cfg), ds).fast is not None, f"{type} {config}: the fused path did not compile"
    a, theta_a, _ = steps(g, cfg, ds, np.float64, fast=True, n=2, batch=8)
    b, theta_b, _ = steps(g, cfg, ds, np.float64, fast=False, n=2, batch=8)
    for (la, ga, oa), (lb, gb, ob) in zip(a, b):
        np.testing.assert_allclose(la, lb, rtol=1e-6)
        np.testing.assert_allclose(ga, gb, rtol=1e-6)
        np.testing.assert_allclose(oa, ob, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(theta_a, theta_b, rtol=1e-6, atol=1e-9)


def test_an_unsupported_configuration_falls_back_to_the_per_layer_path(monkeypatch):
    from engine.layers.core import Dense

    def refuse(self, b):
        raise fused.Unsupported("not this configuration")
    g = chain((3,), [("Dense", {"units": 2}), ("Softmax", {})])
    ds = dataset(8, (3,), "multiclass")
    monkeypatch.setattr(Dense, "fused", refuse)
    m = Model(g)
    tr = Trainer(m, training_config({"loss": "cce"}), ds)
    assert tr.fast is None
    loss, out, gn = tr.train_step(ds.x[:4], ds.y[:4])
    assert np.isfinite(loss) and out.shape == (4, 2)
