"""Training: convergence, reproducibility, events, stop/pause, early stopping, divergence, diagnostics."""
import threading

import numpy as np
import pytest

from engine.data import Dataset, kfold
from engine.model import Model
from engine.trainer import Trainer
from engine.project import Project
from engine.session import prepare
from resources import path

XOR = path("examples", "xor.json")


def test_xor_seed_0_converges_and_seeds_0_to_19_mostly_do():
    """The 2-2-1 ReLU net can get stuck (a dead hidden unit); we count honestly."""
    ok = []
    for seed in range(20):
        _, tr = prepare(Project.load(XOR), seed=seed)
        ok.append(tr.run()["train_accuracy"] == 1.0)
    assert ok[0]
    assert sum(ok) >= 10, f"converged for seeds {[i for i, o in enumerate(ok) if o]}"


def test_same_seed_is_bit_identical():
    p = Project.load(path("examples", "digits-mlp.json"))
    p.training["epochs"] = 2
    runs = []
    for _ in range(2):
        m, tr = prepare(p, seed=5)
        runs.append((tr.run()["val_loss"], m.theta.copy()))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    m, tr = prepare(p, seed=6)
    tr.run()
    assert not np.array_equal(m.theta, runs[0][1])


def test_events_and_stop_within_one_batch():
    p = Project.load(path("examples", "digits-mlp.json"))
    _, tr = prepare(p)
    seen = []

    def on(ev):
        seen.append(ev.kind)
        if ev.kind == "batch_end" and ev.step == 10:
            tr.stop()
    tr.subscribe(on)
    res = tr.run()
    assert res["status"] == "stopped" and tr.step == 10
    assert seen.count("batch_end") == 10 and seen[-1] == "finished"


def test_pause_blocks_until_resume():
    p = Project.load(path("examples", "digits-mlp.json"))
    p.training["epochs"] = 1
    _, tr = prepare(p)
    paused = threading.Event()

    def on(ev):
        if ev.kind == "batch_end" and ev.step == 3:
            tr.pause()
            paused.set()
    tr.subscribe(on)
    th = threading.Thread(target=tr.run)
    th.start()
    assert paused.wait(10)
    th.join(0.3)
    assert th.is_alive() and tr.step == 3 and tr.paused
    tr.resume()
    th.join(20)
    assert not th.is_alive() and tr.step > 3


def test_divergence_stops_with_message_and_keeps_last_good_weights():
    p = Project.load(XOR)
    p.training.update(optimizer="sgd", lr=10.0)
    m, tr = prepare(p)
    good = []
    tr.subscribe(lambda ev: ev.kind == "batch_end" and good.append(m.theta.copy()))
    m.layers["hidden"].p["W"][0, 0] = np.inf          # poison: the next gradient is not finite
    res = tr.run()
    assert res["status"] == "diverged" and "step 1" in res["message"] and "learning rate" in res["message"]
    assert tr.step == 0 and not good


def test_early_stopping_restores_best_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (60, 20)).astype(np.float32)
    ds = Dataset(x, rng.integers(0, 2, 60), "binary", "noise")     # random labels: memorise, then overfit
    p = Project.load(XOR)
    p.graph.nodes["input"].config["shape"] = [20]
    p.graph.nodes["hidden"].config["units"] = 64
    p.training.update(patience=3, epochs=200, lr=0.05, batch_size=10)
    m = Model(p.graph)
    tr = Trainer(m, p.training, *ds.split(0.5, 0))
    seen = {}
    tr.subscribe(lambda ev: ev.kind == "epoch_end" and seen.setdefault(ev.epoch, m.theta.copy()))
    res = tr.run()
    best = int(np.argmin(tr.history["val_loss"])) + 1
    assert res["status"] == "early_stopped" and res["epochs"] == best + 3
    assert np.array_equal(m.theta, seen[best])
    assert res["val_loss"] == pytest.approx(min(tr.history["val_loss"]))


def test_kfold_covers_every_sample_once():
    folds = kfold(10, 3, seed=1)
    vals = np.concatenate([v for _, v in folds])
    assert sorted(vals) == list(range(10)) and len(folds) == 3
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == 10


def test_digits_mlp_reaches_96_percent():
    _, tr = prepare(Project.load(path("examples", "digits-mlp.json")))
    assert tr.run()["val_accuracy"] >= 0.96


def test_mismatched_data_is_a_clear_error():
    p = Project.load(XOR)
    p.dataset = {"kind": "builtin", "name": "digits"}
    with pytest.raises(Exception, match="shape"):
        prepare(p)


def test_kfold_session_and_run_record():
    from engine.session import fold_summary, folds, record
    p = Project.load(XOR)
    p.dataset = {"kind": "builtin", "name": "moons", "n": 60}
    p.training.update(epochs=3, batch_size=16)
    results, accs = [], []
    for i, m, tr in folds(p, 3):
        assert len(tr.train) == 40 and len(tr.val) == 20
        results.append(tr.run())
        hits = [(float(o[0]) > 0.5) == bool(t) for o, t in zip(m.predict(tr.val.x), tr.val.y)]
        accs.append(sum(hits) / len(hits))                 # each fold's accuracy, recomputed from its predictions
    mean, std = fold_summary(results)
    want = sum(accs) / 3
    assert mean == pytest.approx(want, abs=1e-12)
    assert std == pytest.approx((sum((a - want) ** 2 for a in accs) / 3) ** 0.5, abs=1e-12)
    rec = record(tr, results[-1], "fold 3")
    assert rec["seed"] == 0 and len(rec["history"]["train_loss"]) == 3 and rec["result"]["epochs"] == 3
    import json
    json.dumps(rec)


def test_augment_hook_applies_to_training_batches_only():
    p = Project.load(XOR)
    p.training["epochs"] = 2
    _, tr = prepare(p)
    calls = []
    tr.augment = lambda xb, rng: calls.append(len(xb)) or xb
    tr.run()
    assert calls == [4, 4]


@pytest.mark.parametrize("loss,head,fix", [("cce", "Dense", "add a Softmax after 'out' or use mse"),
                                           ("bce", "ReLU", "add a Sigmoid after 'out' or use mse"),
                                           ("cce", "Sigmoid", "add a Softmax after 'out' or use mse")])
def test_cross_entropy_on_a_head_without_its_activation_is_refused(loss, head, fix):
    from engine.errors import TrainingError
    from engine.graph import Graph
    g = Graph()
    g.chain(("in", "Input", {"shape": [2]}), ("h", "Dense", {"units": 2 if loss == "cce" else 1}), ("out", head, {}))
    task = "multiclass" if loss == "cce" else "binary"
    ds = Dataset(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), task, "d", ["a", "b"])
    with pytest.raises(TrainingError, match=fix):
        Trainer(Model(g), Project().training | {"loss": loss}, ds)


def test_an_empty_training_set_is_a_clear_error():
    from engine.errors import TrainingError
    p = Project.load(XOR)
    p.training["validation_split"] = 0.9                  # 4 samples, 2 per class: round(0.9·2) = 2 held out
    with pytest.raises(TrainingError, match="training set of 'xor' is empty"):
        prepare(p)


def test_kfold_of_many_rows_orders_without_a_permutation_and_keeps_folds_disjoint(monkeypatch):
    import engine.data.order as order
    monkeypatch.setattr(order, "LARGE", 50)                    # "many rows" = more than 50 here
    folds = kfold(203, 4, seed=3)
    assert isinstance(folds.perm, order.Shuffled) and len(folds) == 4
    vals = [v for _, v in folds]
    assert sorted(np.concatenate(vals)) == list(range(203)) and [len(v) for v in vals] == [51, 51, 51, 50]
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == 203
    small = kfold(10, 3, seed=1)                               # few rows: numpy's permutation, as before
    want = np.array_split(np.random.default_rng(1).permutation(10), 3)
    assert all(np.array_equal(v, w) for (_, v), w in zip(small, want))
