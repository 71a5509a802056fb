"""Divergence (issue 8, defect 4): checked before and after each update and in evaluation mode at each epoch end;
the run stops as "diverged" keeping weights that are finite and predict finite values; --json stays valid JSON."""
import json
import subprocess
import sys

import numpy as np
import pytest

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


def poison_after_epoch_2(m, tr):
    """Makes the output bias NaN right after epoch 2's last step; {"theta": the weights just before}."""
    kept = {}

    def poison(ev):
        if ev.kind == "batch_end" and ev.epoch == 2 and ev.data["batch"] == ev.data["batches"]:
            kept["theta"] = m.theta.copy()
            m.layers["o"].p["b"][0] = np.nan
    tr.subscribe(poison)
    return kept


def test_epoch_end_checks_evaluation_mode_outputs(tmp_path):
    """Weights that go bad on the last step of an epoch are caught at the epoch end, not one step later."""
    m, tr = prepare(Project.load(regression_project(tmp_path, optimizer="sgd", lr=1e-4, epochs=5, batch_size=50)))
    kept = poison_after_epoch_2(m, tr)
    res = tr.run()
    assert res["status"] == "diverged" and "end of epoch 2" in res["message"], res["message"]
    assert res["epochs"] == 2 and len(tr.history["train_loss"]) == 1
    assert np.all(np.isfinite(m.theta)) and np.all(np.isfinite(m.predict(tr.train.x)))
    assert res["steps"] == 8 and not np.array_equal(m.theta, kept["theta"])


def test_epoch_end_check_without_extra_forwards_when_validation_ran(tmp_path):
    """With a validation split the epoch end's evaluation pass is the evaluation-mode check (no forwards on
    training samples); weights poisoned after the last step are still caught there and not kept."""
    m, tr = prepare(Project.load(regression_project(tmp_path, optimizer="sgd", lr=1e-4, epochs=5, batch_size=50,
                                                   validation_split=0.2)))
    calls, real = [], m.forward

    def forward(x, training=False, **k):
        if not training:
            calls.append((tr.step, len(x)))
        return real(x, training=training, **k)
    m.forward = forward
    kept = poison_after_epoch_2(m, tr)
    res = tr.run()
    assert res["status"] == "diverged" and "end of epoch 2" in res["message"], res["message"]
    first = [n for s, n in calls if s == tr.steps_per_epoch]
    assert first == [len(tr.val)]                           # epoch 1's end: the validation pass only
    assert np.all(np.isfinite(m.theta)) and np.all(np.isfinite(m.predict(tr.train.x)))
    assert not np.array_equal(m.theta, kept["theta"]) and "step before the last" in res["message"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_finite_copies_and_finds_any_nan_or_infinity(dtype):
    from engine.divergence import copy_finite
    src = np.linspace(-3e4, 3e4, 1001).astype(dtype)
    dst = np.zeros_like(src)
    assert copy_finite(src, dst) and np.array_equal(src, dst)
    for bad in (np.nan, np.inf, -np.inf):
        for at in (0, 500, 1000):
            s = src.copy()
            s[at] = bad
            assert not copy_finite(s, dst) and np.array_equal(s, dst, equal_nan=True)
    tiny = np.array([np.finfo(dtype).max, np.finfo(dtype).tiny, -0.0], dtype)
    assert copy_finite(tiny, np.empty_like(tiny))


def test_diverged_digits_mlp_keeps_weights_that_predict_finite_values():
    from resources import path
    p = Project.load(path("examples", "digits-mlp.json"))
    p.training.update(optimizer="sgd", lr=10.0, epochs=2)
    m, tr = prepare(p, seed=1)
    res = tr.run()
    assert res["status"] == "diverged"
    assert np.all(np.isfinite(m.theta)) and np.all(np.isfinite(m.predict(tr.train.x)))
    assert np.isfinite(res["train_loss"]) and np.isfinite(res["val_loss"])


# ---- a loss that explodes without becoming NaN (issue 21 item 3: Adam at lr 10 with clip_norm 1) ----
def adam_at_lr_10(project, epochs=3):
    """The shipped example at Adam η = 10 with clip_norm 1 (clipping keeps every number finite)."""
    project.training.update(optimizer="adam", lr=10.0, clip_norm=1.0, epochs=epochs, beta1=0.9, beta2=0.999,
                            eps=1e-8, patience=0)
    return project


@pytest.mark.parametrize("example", ["wave-regression", "moons-mlp"])
def test_adam_at_lr_10_with_clipping_stops_as_exploded_and_keeps_sane_weights(example):
    from resources import path
    m, tr = prepare(adam_at_lr_10(Project.load(path("examples", f"{example}.json"))), seed=0)
    res = tr.run()
    assert res["status"] == "diverged" and "exploded" in res["message"], res
    assert "smaller learning rate" in res["message"]
    assert res["train_loss"] <= tr.limit and res.get("val_loss", 0) <= tr.limit      # not the exploded weights
    assert np.all(np.isfinite(m.predict(tr.train.x)))


def test_the_exploded_loss_bound_follows_the_first_step():
    """A slowly rising loss is not divergence below 100 × max(1, the first loss), and is above it."""
    from resources import path
    m, tr = prepare(Project.load(path("examples", "xor.json")), seed=0)
    tr.start, tr.limit = 0.5, 100.0
    assert tr._bad_loss(99.0, "x") is None and "exploded" in tr._bad_loss(101.0, "the loss")
    assert "NaN" in tr._bad_loss(float("nan"), "the loss") and tr._bad_loss(None, "x") is None


def test_baseline_line_never_prints_a_nonsense_percentage():
    from engine.report import baseline_text
    good = {"status": "completed", "val_rmse": 1.0, "baseline_val_rmse": 2.0}
    assert baseline_text(good).endswith("MSE 75.0 % lower")
    worse = baseline_text(dict(good, val_rmse=1306.0))
    assert "worse than" in worse and "%" not in worse
    for bad in ({"status": "diverged"}, {"val_rmse": float("nan")}, {"baseline_val_rmse": 0.0},
                {"baseline_val_rmse": None}):
        assert baseline_text(dict(good, **bad)) == ""


def test_cli_temperature_example_at_adam_lr_10_exits_1_without_a_percentage(tmp_path):
    from resources import path
    d = json.loads(path("examples", "temperature-rnn.json").read_text(encoding="utf-8"))
    d["dataset"]["path"] = str(path("data", "ewr-weather-2013.csv.gz"))
    d["training"].update(optimizer="adam", lr=10.0, clip_norm=1.0, epochs=2)
    (tmp_path / "t.json").write_text(json.dumps(d), encoding="utf-8")
    w = tmp_path / "w.npz"
    r = subprocess.run([sys.executable, "-m", "engine.cli", "train", str(tmp_path / "t.json"), "--out", str(w)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "diverged" in r.stdout and "exploded" in r.stderr and "%" not in r.stdout, r.stdout
    assert w.exists() and "Traceback" not in r.stderr
