"""The overfitting diagnosis on recorded curves of healthy and of overfitting runs (tests/data/curves.json)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.diagnosis import overfitting

CURVES = json.loads((Path(__file__).parent / "data" / "curves.json").read_text())


def prefix(h, n):
    return {k: v[:n] for k, v in h.items()}


def findings(h):
    """The finding at every epoch of the recorded run (what the trainer would see), None where healthy."""
    n = len(h["train_loss"])
    return [overfitting(prefix(h, e), "train_accuracy" in h) for e in range(1, n + 1)]


@pytest.mark.parametrize("name", ["healthy_moons", "healthy_csv4", "healthy_regression"])
def test_healthy_runs_get_no_finding_at_any_epoch(name):
    fs = findings(CURVES[name])
    assert not any(fs), next(f.message for f in fs if f)


@pytest.mark.parametrize("name", ["overfit_moons", "overfit_regression"])
def test_overfitting_runs_are_found_with_one_onset(name):
    fs = [f for f in findings(CURVES[name]) if f]
    assert fs, "this run overfits: validation loss rose well above its minimum while training loss fell"
    onsets = {f.details["onset"] for f in fs}
    assert len(onsets) <= 2                           # a new minimum may start a second onset, not one per epoch
    f = fs[-1]
    vl = np.array(CURVES[name]["val_loss"][:f.epoch])
    assert f.details["val_rise"] > 0.10 and f.details["train_change"] < 0
    assert np.argmin(vl) + 1 < f.epoch


def test_message_is_readable_at_any_loss_scale():
    f = [f for f in findings(CURVES["overfit_regression"]) if f][-1]
    assert re.search(r"[+-]\d+ % above its minimum", f.message)
    a, b = re.findall(r"minimum \(([^ ]+) at epoch", f.message)[0], re.findall(r"now ([^)]+)\)", f.message)[0]
    assert a != b                                     # never "from 2.02e+09 to 2.02e+09"


def test_one_noisy_epoch_or_a_flat_curve_is_not_overfitting():
    h = {"train_loss": list(np.linspace(1, 0.1, 20)), "val_loss": [0.5] * 20}
    assert overfitting(h) is None
    h["val_loss"][-1] = 0.9                           # one bad epoch: the 3-epoch mean rises but not for 4 epochs
    assert overfitting(h) is None
    h["val_loss"][-5:] = [0.6, 0.62, 0.65, 0.7, 0.75]  # a sustained rise while training loss falls
    f = overfitting(h)
    assert f is not None and f.details["onset"] <= 16


def test_classification_needs_a_real_accuracy_gap():
    n = 20
    h = {"train_loss": list(np.linspace(1, 0.01, n)), "val_loss": list(np.r_[np.linspace(1, 0.05, 12), [0.08] * 8]),
         "train_accuracy": [1.0] * n, "val_accuracy": [1.0] * n}
    assert overfitting(h, True) is None               # val loss rose but every validation sample is still right
    h["val_accuracy"] = [0.85] * n
    assert overfitting(h, True) is not None
    assert overfitting({k: h[k] for k in ("train_loss", "val_loss")}, False) is not None


def test_training_loss_must_still_fall():
    h = {"train_loss": [1, 0.5, 0.3] + [0.3] * 12, "val_loss": [1, 0.5, 0.3] + [0.5] * 12}
    assert overfitting(h, False) is None


def test_trainer_reports_each_onset_once():
    from engine.trainer import Trainer

    class T(Trainer):                                 # replay a recorded history through the trainer's own call
        def __init__(self, h):
            self.history = {k: [] for k in h}
            self.findings, self.subscribers, self.step, self.classify = [], [], 0, True
    h = CURVES["overfit_moons"]
    t, seen = T(h), []
    t.subscribe(lambda ev: seen.append(ev))
    for e in range(len(h["train_loss"])):
        for k in h:
            t.history[k].append(h[k][e])
        t._diagnose(e + 1)
    assert seen and len(seen) == len({f.details["onset"] for f in t.findings}) <= 2
