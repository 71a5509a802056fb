"""The template gallery's data (Qt-free): each shipped example with what it teaches and the score it reaches.

A template is one JSON project in resources/examples with a "gallery" object:
{"network": "MLP", "task": "binary", "data": "…", "teaches": "…", "metric": "val_accuracy", "val_r2" or "val_rmse"
 (then also "unit": "°F"), "reaches": 0.95, "quick": {"epochs": 3, "samples": 1000, "min": 0.6}}
"reaches" is what a full run as shipped attains (benchmarks/templates.py checks it; for an error such as RMSE it is
an upper bound, and "quick" has "max" instead of "min"); "quick" bounds the short run of tests/test_templates.py.
Every shipped example has such an entry (tests/test_templates.py checks); adding a template is adding such a file.
"""
import json

import numpy as np

from resources import path

TASK_NAMES = {"binary": "binary classification", "multiclass": "multi-class classification",
              "regression": "regression"}
METRIC_NAMES = {"val_accuracy": "validation accuracy", "train_accuracy": "training accuracy",
                "val_r2": "validation R²", "val_rmse": "validation RMSE",
                "val_exact_match": "validation exact match (greedy decoding)"}
LOWER = {"val_rmse"}                   # errors: lower is better, "reaches" is an upper bound


def meets(entry, value, bound=None):
    """True if value is at least as good as bound (default: the entry's claim), in the metric's direction."""
    bound = entry["reaches"] if bound is None else bound
    return value <= bound if entry["metric"] in LOWER else value >= bound


def examples():
    """(file, project dict) of every shipped example that reads as JSON, sorted by file name."""
    for f in sorted(path("examples").glob("*.json")):
        try:
            yield f, json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue


def gallery():
    """[dict(file, name, description, **gallery)] of the shipped templates that declare a gallery entry."""
    return [dict(d["gallery"], file=f.name, name=d.get("name") or f.stem, description=d.get("description", ""))
            for f, d in examples() if isinstance(d.get("gallery"), dict)]


def reaches_text(entry):
    """"validation accuracy ≥ 0.95" (or "validation RMSE ≤ 1.5 °F") for the gallery card."""
    m = METRIC_NAMES.get(entry["metric"], entry["metric"])
    if entry["metric"] in LOWER:
        return f"{m} ≤ {entry['reaches']:g}{' ' + entry['unit'] if entry.get('unit') else ''}"
    return f"{m} {entry['reaches']:.1f}" if entry["reaches"] >= 1 else f"{m} ≥ {entry['reaches']:g}"


def score(project, metric, epochs=None, samples=None, seed=None):
    """Train a template project (optionally shorter / on `samples` rows picked at random) and return (metric
    value, result). val_r2 is computed from Model.predict on the validation split (original units); val_rmse is
    the trainer's (original units, padded steps excluded)."""
    from engine.data import load
    from engine.session import prepare
    if epochs is not None:
        project.training["epochs"] = epochs
    ds = load(project.dataset, project.base)
    if samples is not None and samples < len(ds):
        pick = np.random.default_rng(0).permutation(len(ds))[:samples]
        ds = ds.subset(np.sort(pick))
    model, trainer = prepare(project, seed=seed, data=ds)
    result = trainer.run()
    if metric == "val_r2":
        val = trainer.val if trainer.val is not None and len(trainer.val) else trainer.train
        pred = np.asarray(model.predict(val.x), float).reshape(len(val), -1)
        y = np.asarray(val.y, float).reshape(len(val), -1)
        sst = float(((y - y.mean(axis=0)) ** 2).sum())
        return 1 - float(((pred - y) ** 2).sum()) / sst, result
    if metric == "val_exact_match" and trainer.val is not None and len(trainer.val):     # every validation pair,
        from engine.text_metrics import evaluate_translation                             # not the trainer's sample
        return float(evaluate_translation(model, trainer.val, limit=None)["exact_match"]), result
    return float(result[metric]), result
