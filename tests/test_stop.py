"""Stop and Pause answer at every point of a run: between training batches, inside the epoch-end evaluation,
instead of the final pass over the data, between probes, and while the data still loads (issue 21, item 12)."""
import threading

import numpy as np

from engine import session
from engine.data import Dataset
from engine.graph import Graph
from engine.model import Model
from engine.project import Project, training_config
from engine.trainer import Trainer
from gui.training.job import Job
from resources import path


def trainer(n=2000, epochs=3, val=1000):
    """A small MLP on n random 2-D samples, batch 50; the evaluation goes over `val` samples in 512-batches."""
    g = Graph()
    g.chain(("x", "Input", {"shape": [2]}), ("fc", "Dense", {"units": 4}), ("relu", "ReLU", {}),
            ("out", "Dense", {"units": 2}), ("sm", "Softmax", {}))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n + val, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    tr, va = Dataset(x[:n], y[:n], "multiclass", "t", ["a", "b"]), Dataset(x[n:], y[n:], "multiclass", "v", ["a", "b"])
    cfg = training_config({"loss": "cce", "batch_size": 50, "epochs": epochs, "lr": 0.01})
    return Trainer(Model(g), cfg, tr, va)


def count_eval_forwards(t, on_first=None):
    """Count evaluation-mode forward passes of t's model (after `on_first` ran at the first one)."""
    calls, real = [], t.model.forward

    def forward(x, training=False, **k):
        if not training:
            calls.append(len(x))
            if on_first is not None and len(calls) == 1:
                on_first()
        return real(x, training=training, **k)
    t.model.forward = forward
    return calls


def test_stop_pressed_during_the_epoch_end_evaluation_ends_it_at_the_next_batch():
    t = trainer()
    calls = count_eval_forwards(t, on_first=t.stop)        # Stop arrives while the first 512 samples evaluate
    r = t.run()
    assert r["status"] == "stopped" and r["epochs"] == 0
    assert calls == [512]                                  # not the other batches, and no final pass over the data
    assert t.history["val_loss"] == [] and "val_loss" not in r      # no figure from a partial evaluation


def test_after_stop_no_pass_over_the_data_the_last_epochs_figures_are_reported():
    t = trainer()
    stop_at = t.steps_per_epoch + 5                        # in epoch 2
    t.subscribe(lambda ev: ev.kind == "batch_end" and ev.step == stop_at and t.stop())
    calls = count_eval_forwards(t)
    r = t.run()
    assert r["status"] == "stopped" and r["epochs"] == 1 and r["steps"] == stop_at
    eval_samples_epoch1 = 1000                             # the validation set (it is also the divergence check)
    assert sum(calls) == eval_samples_epoch1               # nothing after Stop (the summary used to add 3000)
    assert r["train_loss"] == t.history["train_loss"][-1] and r["val_accuracy"] == t.history["val_accuracy"][-1]
    assert "end of epoch 1" in r["message"]


def test_a_completed_runs_summary_still_evaluates_the_whole_data():
    t = trainer(epochs=1)
    calls = count_eval_forwards(t)
    r = t.run()
    assert r["status"] == "completed" and sum(calls) == 1000 + 2000 + 1000   # epoch end, then summary


def test_pause_holds_the_evaluation_between_batches():
    t = trainer()
    t.pause()
    calls = count_eval_forwards(t)
    out = []
    th = threading.Thread(target=lambda: out.append(t.evaluate(t.val, prefix="val", stoppable=True)))
    th.start()
    th.join(0.3)
    assert th.is_alive() and calls == []                   # waiting at the first batch
    t.stop()                                               # releases the pause; stops without figures
    th.join(10)
    assert out == [None] and calls == []


def test_the_job_checks_stop_between_probes_and_runs_none_after_a_stopped_run():
    p = Project.load(path("examples", "xor.json"))
    p.training["epochs"] = 1_000_000
    ran = []
    job = Job(p, ui_wait=0, probe_interval=0.0)

    def first(model, probe, options):
        ran.append("first")
        job.stop()                                         # Stop pressed while this probe computes
    job.probes = {"first": first, "second": lambda *a: ran.append("second")}
    job.start()
    assert job.join(30)
    assert ran == ["first"]                                # the second probe and the forced final ones skipped
    assert job.results[0]["status"] == "stopped"


def test_pause_pressed_while_the_data_loads_holds_the_run(monkeypatch):
    entered, release, real = threading.Event(), threading.Event(), session.load

    def load(ref, base=None):
        entered.set()
        release.wait(30)
        return real(ref, base)
    monkeypatch.setattr(session, "load", load)
    p = Project.load(path("examples", "xor.json"))
    job = Job(p, ui_wait=0)
    job.start()
    assert entered.wait(10) and job.trainer is None
    job.pause()                                            # no trainer yet: the job remembers it
    assert job.paused
    release.set()
    for _ in range(200):
        if job.trainer is not None and job.trainer.paused:
            break
        threading.Event().wait(0.05)
    assert job.trainer is not None and job.trainer.paused and job.trainer.step == 0
    job.stop()
    assert job.join(30) and job.results[0]["status"] == "stopped" and job.results[0]["steps"] == 0
