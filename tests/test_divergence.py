"""Divergence (issue 8, defect 4): checked before and after each update and in evaluation mode at each epoch end;
the run stops as "diverged" keeping weights that are finite and predict finite values; --json stays valid JSON."""
import json
import subprocess
import sys

import numpy as np

from engine.cli import dumps
from engine.graph import Graph
from engine.project import Project, training_config
from engine.session import prepare


def regression_project(tmp_path, **training):
    """A linear target of scale ~1000 that full-batch gd at lr 10 blows up within a few steps."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (200, 4))
    y = x @ np.array([1.0, -2.0, 3.0, 0.5]) * 100 + 50
    lines = ["a,b,c,d,t"] + [",".join(map(str, r)) + f",{t}" for r, t in zip(x, y)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    g = Graph()
    g.chain(("in", "Input", {"shape": [4]}), ("h", "Dense", {"units": 16}), ("r", "ReLU", {}),
            ("o", "Dense", {"units": 1}))
    cfg = dict(loss="mse", optimizer="gd", lr=10.0, epochs=30, validation_split=0.0)
    cfg.update(training)
    p = Project(g, training_config(cfg), {"kind": "csv", "path": "r.csv", "task": "regression"})
    p.save(tmp_path / "reg.json")
    return tmp_path / "reg.json"


def test_gd_at_lr_10_diverges_and_keeps_weights_with_finite_predictions(tmp_path):
    m, tr = prepare(Project.load(regression_project(tmp_path)))
    res = tr.run()
    assert res["status"] == "diverged" and "smaller learning rate" in res["message"]
    assert np.all(np.isfinite(m.theta))
    assert np.all(np.isfinite(m.predict(tr.train.x)))
    assert np.isfinite(res["train_loss"])


def strict(line):
    def refuse(c):
        raise ValueError(f"not JSON: {c}")
    return json.loads(line, parse_constant=refuse)


def test_cli_train_json_of_a_diverged_run_is_valid_json(tmp_path):
    proj = regression_project(tmp_path)
    w = tmp_path / "w.npz"
    r = subprocess.run([sys.executable, "-m", "engine.cli", "train", str(proj), "--json", "--out", str(w)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    lines = [strict(x) for x in r.stdout.splitlines()]
    assert lines[-1]["status"] == "diverged" and "Traceback" not in r.stderr
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32) * 5)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "predict", str(proj), "--weights", str(w),
                        "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert np.all(np.isfinite(np.load(tmp_path / "y.npy")))


def test_dumps_writes_null_for_non_finite_numbers():
    text = dumps({"a": float("inf"), "b": [np.float32("nan"), np.float64(2.5)], "c": 1, "d": np.array([np.inf, 1.0])})
    assert strict(text) == {"a": None, "b": [None, 2.5], "c": 1, "d": [None, 1.0]}


def test_weights_that_become_infinite_after_an_update_are_not_kept(tmp_path):
    """Loss and gradient finite, the update itself overflows: caught after the update, the step is undone."""
    m, tr = prepare(Project.load(regression_project(tmp_path, lr=1e-4, epochs=3)))
    tr.fast = None                                          # per-layer path, so that the update can be wrapped
    step, before = tr.opt.step, {}

    def overflowing(theta, grad, mask):
        step(theta, grad, mask)
        if tr.step == 1:                                    # during the second update
            before["theta"] = theta.copy()
            theta[3] = np.inf
    tr.opt.step = overflowing
    res = tr.run()
    assert res["status"] == "diverged" and "step 2" in res["message"] and "updated weights" in res["message"]
    assert tr.step == 1 and np.all(np.isfinite(m.theta)) and not np.array_equal(m.theta, before["theta"])
    assert np.all(np.isfinite(m.predict(tr.train.x)))


def test_epoch_end_checks_evaluation_mode_outputs(tmp_path):
    """Weights that go bad on the last step of an epoch are caught at the epoch end, not one step later."""
    m, tr = prepare(Project.load(regression_project(tmp_path, optimizer="sgd", lr=1e-4, epochs=5, batch_size=50)))
    kept = {}

    def poison(ev):
        if ev.kind == "batch_end" and ev.epoch == 2 and ev.data["batch"] == ev.data["batches"]:
            kept["theta"] = m.theta.copy()
            m.layers["o"].p["b"][0] = np.nan
    tr.subscribe(poison)
    res = tr.run()
    assert res["status"] == "diverged" and "end of epoch 2" in res["message"], res["message"]
    assert res["epochs"] == 2 and len(tr.history["train_loss"]) == 1
    assert np.all(np.isfinite(m.theta)) and np.all(np.isfinite(m.predict(tr.train.x)))
    assert res["steps"] == 8 and not np.array_equal(m.theta, kept["theta"])


def test_diverged_digits_mlp_keeps_weights_that_predict_finite_values():
    from resources import path
    p = Project.load(path("examples", "digits-mlp.json"))
    p.training.update(optimizer="sgd", lr=10.0, epochs=2)
    m, tr = prepare(p, seed=1)
    res = tr.run()
    assert res["status"] == "diverged"
    assert np.all(np.isfinite(m.theta)) and np.all(np.isfinite(m.predict(tr.train.x)))
    assert np.isfinite(res["train_loss"]) and np.isfinite(res["val_loss"])
