"""One training session from a project: data, split, model, trainer (shared by the CLI and the GUI)."""
from .data import load
from .model import Model
from .trainer import Trainer


def prepare(project, seed=None, dtype="float32"):
    """(model, trainer) ready to run, with the project's dataset split and the Input adapted."""
    cfg = dict(project.training)
    if seed is not None:
        cfg["seed"] = seed
    ds = load(project.dataset, project.base)
    train, val = ds.split(cfg["validation_split"], cfg["seed"])
    model = Model(project.graph, dtype=dtype, seed=cfg["seed"])
    for n in model.inputs:
        model.layers[n].adapt(train.x)
    return model, Trainer(model, cfg, train, val)
