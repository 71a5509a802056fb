"""The training epoch's data path: batches made one step ahead (engine/data/ahead.py), augmentation's draws, and
the same weights on one thread and two (digits-cnn's own graph, augmented)."""
import threading

import numpy as np
import pytest

from engine.data import augment
from engine.data.ahead import Ahead, InTurn
from engine.project import Project
from engine.session import prepare
from resources import path


@pytest.mark.parametrize("kind", [Ahead, InTurn])
def test_batches_come_in_order_once_each_with_the_same_draws(kind):
    rng, calls = np.random.default_rng(0), []

    def make(b):
        calls.append((b, threading.current_thread() is threading.main_thread()))
        return b, rng.random(3)
    got = kind(make, 5)
    out = [got.take(b) for b in range(5)]
    got.close()
    ref = np.random.default_rng(0)
    assert [b for b, _ in out] == list(range(5)) and [c[0] for c in calls] == list(range(5))
    assert all(np.array_equal(v, ref.random(3)) for _, v in out)
    assert all(main == (kind is InTurn) for _, main in calls)         # Ahead: on its helper thread


def test_ahead_reraises_refuses_disorder_and_closes_mid_epoch():
    def make(b):
        if b == 2:
            raise ValueError("bad batch 2")
        return b
    got = Ahead(make, 4)
    assert got.take(0) == 0 and got.take(1) == 1
    with pytest.raises(IndexError, match="out of order"):
        got.take(3)
    with pytest.raises(ValueError, match="bad batch 2"):
        got.take(2)
    got.close()
    assert got.thread is None
    made = []
    early = Ahead(made.append, 10)
    early.take(0)
    early.close()                                        # stopped after the first step: batch 1 was made, no more
    assert made == [0, 1]
    Ahead(made.append, 0).close()
    assert made == [0, 1]


def test_augmentation_keeps_its_draws():
    """Each sample's transform is drawn as documented (angle uniform in ±rotate, whole-pixel shifts in ±shift, flips
    with probability ½, in that order) and warped alone; made on the helper thread it gives the same bits."""
    x = np.random.default_rng(1).random((64, 1, 28, 28), dtype=np.float32)
    fn = augment.make({"shift": 2, "rotate": 10, "flip": True})
    one = fn(x, np.random.default_rng(7))
    ahead = Ahead(lambda b: fn(x, np.random.default_rng(7)), 1)
    two = ahead.take(0)
    ahead.close()
    rng = np.random.default_rng(7)
    a = np.deg2rad(rng.uniform(-10, 10, 64))
    d = rng.integers(-2, 3, (2, 64)).astype(np.float64)
    f = rng.random(64) < 0.5
    ref = np.empty_like(x)
    augment.warp(x, np.cos(a), np.sin(a), d[0], d[1], f, ref)
    assert np.array_equal(one, ref) and np.array_equal(two, ref)
    assert 16 < f.sum() < 48 and np.abs(a).max() <= np.deg2rad(10) and set(d.ravel()) == {-2, -1, 0, 1, 2}


def test_digits_cnn_trains_to_the_same_weights_on_one_thread_and_two():
    """Augmented batches made ahead on a helper thread (two threads) and in turn (one): the same draws, the same
    conv_gemm blocks and chunk sums, so the same bits."""
    p = Project.load(str(path("examples", "digits-cnn.json")))
    runs = []
    for threads in (1, 2):
        model, tr = prepare(p, data=None)
        tr.train = tr.train.subset(np.arange(200))
        tr.val = tr.val.subset(np.arange(100))
        tr.cfg = dict(tr.cfg, epochs=2, patience=0)
        tr.threads = threads
        r = tr.run()
        runs.append((model.theta.copy(), r["val_loss"], tr.history["train_loss"]))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1:] == runs[1][1:]
