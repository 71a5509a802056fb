"""Training sessions from a project: data, split, model, trainer; k-fold; run records (CLI and GUI)."""
import threading
import time

import numpy as np

from . import _jit
from .data import augment, kfold, load
from .data.dataset import fit
from .model import Model
from .seq2seq import teacher_inputs
from .trainer import Trainer


def auto_shapes(graph, ds):
    """The graph with each Input whose shape is "auto" given the dataset's encoded sample shape (a copy
    when one is, else the graph itself)."""
    auto = [n for n, v in graph.nodes.items() if v.type == "Input" and v.config.get("shape") == "auto"]
    if not auto:
        return graph
    g = graph.copy()
    for n in auto:                              # the target Input of an encoder–decoder reads the targets' shape
        src = ds.y if g.nodes[n].config.get("feed") == "target" else ds.x
        g.nodes[n].config["shape"] = [int(d) for d in src.shape[1:]]
    return g


def model_for(project, weights_path):
    """The project's Model for trained weights: an Input whose shape is "auto" takes the shape in the weights'
    saved graph (the dataset's encoded shape at training time)."""
    graph = project.graph
    auto = [n for n, v in graph.nodes.items() if v.type == "Input" and v.config.get("shape") == "auto"]
    if auto:
        from .weights import load
        saved = {n["name"]: n for n in load(weights_path)[1].get("graph", {}).get("nodes", [])}
        graph = graph.copy()
        for n in auto:
            shape = saved.get(n, {}).get("config", {}).get("shape")
            if not isinstance(shape, list):
                from .errors import DataError
                raise DataError(f"{weights_path}: the Input {n!r} has shape \"auto\" and these weights do not "
                                f"say which shape they were trained with")
            graph.nodes[n].config["shape"] = shape
    return Model(graph)


def _setup(project, train, val, cfg, dtype, weights=None):
    _jit.ready()                                # numba and the kernels now, not inside the first step
    model = Model(auto_shapes(project.graph, train), dtype=dtype, seed=cfg["seed"])
    for n in model.inputs:
        model.layers[n].adapt(train.x if model.feeds[n] != "target" else teacher_inputs(train.y))
    if weights is not None:                     # start from loaded weights (Input statistics included)
        model.set_weights(weights, where="the loaded weights")
    describe(model, train)
    trainer = Trainer(model, cfg, train, val)
    if project.dataset.get("augment"):
        trainer.augment = augment.make(project.dataset["augment"])     # training batches only
    return model, trainer


def describe(model, train):
    """Keep what the data needs at prediction time with the model: per-feature statistics of sequences
    (training split only), the vocabulary and text options."""
    if train.standardize_steps:
        model.data["x_mean"], model.data["x_std"] = (v.astype(model.dtype) for v in train.step_standardizer())
    if train.vocab is not None:
        model.meta["vocab"] = list(train.vocab)
    if train.text is not None:
        model.meta["text"] = dict(train.text)
    if (train.tokens is not None or train.plan is not None) and train.task != "regression":
        model.meta["classes"] = list(train.classes)
    if train.target_vocab is not None:
        model.meta["target_vocab"] = list(train.target_vocab)
    if train.plan is not None:                  # a table: its column plan, so that predict reads a new file
        from .data.plan import plan_of
        model.meta["table"] = plan_of(train)


def config(project, seed=None):
    cfg = dict(project.training)
    if seed is not None:
        cfg["seed"] = seed
    return cfg


def prepare(project, seed=None, dtype="float32", data=None, weights=None):
    """(model, trainer) ready to run, with the project's dataset split and the Input adapted.

    weights: {'node/param': array} to start from (e.g. engine.weights.load(path)[0]) instead of a fresh init."""
    cfg = config(project, seed)
    ds = data if data is not None else load(project.dataset, project.base)
    train, val, test = split(ds, cfg)
    model, trainer = _setup(project, train, val, cfg, dtype, weights)
    trainer.test = test                         # read only by evaluate_test, after training
    return model, trainer


def split(ds, cfg):
    """(train, validation, test or None): the test fraction is held out first (the last samples of data in
    time order), then validation from the rest; text re-encoded with the training split's vocabulary."""
    test = None
    if cfg.get("test_split"):
        ds, test = ds.split(cfg["test_split"], cfg["seed"] + 7919)
    train, val = ds.split(cfg["validation_split"], cfg["seed"])
    if test is not None and (train.tokens is not None or train.target_vocab is not None):
        train, val, test = fit(train, val, test)
    return train, val, test


def evaluate_test(trainer):
    """{"test_loss", "test_accuracy" | "test_rmse", …} of the trained model on the held-out test split ({} when
    the project keeps none). Training and early stopping never read this split."""
    test = getattr(trainer, "test", None)
    if test is None or not len(test):
        return {}
    loss, acc, metrics = trainer.evaluate(test, prefix="test")
    out = {"test_loss": float(loss), "test_samples": len(test), **metrics}
    if acc is not None:
        out["test_accuracy"] = float(acc)
    return out


def folds(project, k, seed=None, dtype="float32", data=None, weights=None):
    """Yield (fold index, model, trainer) for k-fold cross-validation over the whole dataset."""
    cfg = config(project, seed)
    ds = data if data is not None else load(project.dataset, project.base)
    for i, (tr, va) in enumerate(kfold(len(ds), k, cfg["seed"])):
        train, val = fit(ds.subset(tr), ds.subset(va))      # vocabulary, fill values: training folds only
        yield (i,) + _setup(project, train, val, cfg, dtype, weights)


def fold_summary(results, key="val_accuracy"):
    """(mean, std) of a metric over fold results."""
    v = np.array([r[key] for r in results if key in r], float)
    return float(v.mean()), float(v.std())


def record(trainer, result, label=""):
    """A JSON-able run record (configuration, seed, curves, final metrics) to keep in project.runs."""
    return {"label": label or time.strftime("%Y-%m-%d %H:%M:%S"), "config": dict(trainer.cfg),
            "seed": trainer.cfg["seed"], "steps_per_epoch": trainer.steps_per_epoch,
            "history": {k: list(v) for k, v in trainer.history.items()},
            "result": {k: v for k, v in result.items() if k != "findings"}, "findings": result.get("findings", [])}


def warm_context():
    """Start numba's one-time set-up (importing it, its runtime) in a background thread, so that it overlaps
    reading the data; the first kernel then finds it done. Returns the thread."""
    def run():
        _jit.ready()                                       # numba imported (kernels are made on first use)
        from ._jitload import warm
        warm()
    t = threading.Thread(target=run, name="numba set-up", daemon=True)
    t.start()
    return t


def warm_up():
    """One tiny dense and one tiny conv training step, so numba loads its context and cached kernels now.

    The first kernel a process loads costs about a second (numba's typing context); a GUI calls this
    in a background thread at start so that pressing Train does not pay for it."""
    from .data import Dataset
    from .graph import Graph
    from .project import training_config
    rng = np.random.default_rng(0)
    for shape, layers in (((2,), [("Dense", {"units": 2}), ("ReLU", {}), ("Dense", {"units": 2})]),
                          ((1, 6, 6), [("Conv2D", {"filters": 2}), ("BatchNorm", {}), ("ReLU", {}),
                                       ("MaxPool2D", {}), ("Flatten", {}), ("Dense", {"units": 2})])):
        g = Graph()
        g.chain(("x", "Input", {"shape": list(shape)}),
                *((f"l{i}", t, c) for i, (t, c) in enumerate(layers + [("Softmax", {})])))
        x, y = rng.normal(size=(4,) + shape).astype(np.float32), np.array([0, 1, 0, 1])
        data = Dataset(x, y, "multiclass", "warm-up", ["a", "b"])
        tr = Trainer(Model(g), training_config({"loss": "cce", "batch_size": 4}), data)
        tr.train_step(x, y)
        tr.model.forward(x)
