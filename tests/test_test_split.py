"""A held-out test split: kept out of training, validation and early stopping, read only by Evaluate."""
import json

import numpy as np
import pytest

from engine import session
from engine.cli import main as cli
from engine.project import Project
from engine.trainer import Trainer
from resources import path

MOONS = str(path("examples", "moons-mlp.json"))


def test_test_split_is_disjoint_and_never_read_while_training(monkeypatch):
    p = Project.load(MOONS)
    p.training.update(epochs=3, test_split=0.25, patience=1)
    model, tr = session.prepare(p)
    ds = session.load(p.dataset, p.base)
    assert len(tr.test) == round(0.25 * len(ds))
    rows = lambda d: {tuple(r) for r in np.asarray(d.x).round(6)}
    assert not rows(tr.test) & rows(tr.train) and not rows(tr.test) & rows(tr.val)
    assert len(tr.train) + len(tr.val) + len(tr.test) == len(ds)
    seen = []
    real = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate", lambda self, d, *a, **k: seen.append(d) or real(self, d, *a, **k))
    tr.run()
    assert all(d is not tr.test for d in seen)                        # early stopping read val, never test
    res = session.evaluate_test(tr)
    assert seen[-1] is tr.test and set(res) >= {"test_loss", "test_accuracy"} and res["test_samples"] == len(tr.test)


def test_cli_train_reports_and_evaluate_recomputes_test_metrics(tmp_path, capsys):
    p = Project.load(MOONS)
    p.training.update(epochs=3, test_split=0.2)
    p.save(tmp_path / "m.json")
    assert cli(["train", str(tmp_path / "m.json"), "--out", str(tmp_path / "w.npz"), "--json"]) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert 0 <= final["test_accuracy"] <= 1
    assert cli(["evaluate", str(tmp_path / "m.json"), "--weights", str(tmp_path / "w.npz"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_accuracy"] == pytest.approx(final["test_accuracy"]) and again["test_samples"] == final["test_samples"] > 0


def test_evaluate_without_a_test_split_is_one_line(tmp_path, capsys):
    assert cli(["evaluate", MOONS, "--weights", str(tmp_path / "none.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "keeps no test split" in err and "\n" not in err
