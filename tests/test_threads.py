"""Compute threads: the window keeps one core free, `layerboard train --threads N` (default all cores)."""
import os

import pytest
from threadpoolctl import threadpool_info

from engine import cli, parallel
from engine.parallel import thread_limits
from engine.trainer import Trainer
from resources import path


def _blas_threads():
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


@pytest.mark.parametrize("n,want", [(1, 1), (None, max(1, (os.cpu_count() or 1) - 1)), (os.cpu_count(), os.cpu_count())])
def test_thread_limits_grant_batch_threads_and_keep_blas_on_one(n, want):
    with thread_limits(n):
        assert _blas_threads() == {1}
        assert parallel.threads() == want
    assert parallel.threads() == 1


def test_parallel_run_does_every_item_once_and_reraises():
    seen = []
    with parallel.use(2):
        parallel.run(seen.append, range(50))
        assert sorted(seen) == list(range(50))

        def boom(i):
            if i == 3:
                raise ValueError("chunk 3")
        with pytest.raises(ValueError, match="chunk 3"):
            parallel.run(boom, range(8))
        parallel.run(seen.append, [99])                      # the pool still works after an error
        inner = []
        parallel.run(lambda i: parallel.run(inner.append, [i, i]), range(4))   # nested: no deadlock
        assert sorted(inner) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert seen[-1] == 99


@pytest.mark.parametrize("n,size", [(1, 10), (2, 10), (64, 6272), (7, 1 << 20), (64, 16)])
def test_chunks_cover_the_batch_in_order_and_split_it(n, size, monkeypatch):
    if n * size < parallel.MIN_SHARE * (1 << 20):          # too little work to pay for waking a thread
        assert parallel.chunks(n, size) == [(0, n)]
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)
    cs = parallel.chunks(n, size)
    assert [a for a, _ in cs] == sorted(a for a, _ in cs) and cs[0][0] == 0 and cs[-1][1] == n
    assert all(b == c for (_, b), (c, _) in zip(cs, cs[1:])) and all(a < b for a, b in cs)
    assert len(cs) >= min(n, 2)


def _record(monkeypatch):
    seen = []
    real = Trainer.run

    def run(self):
        seen.append(self.threads)
        return real(self)
    monkeypatch.setattr(Trainer, "run", run)
    return seen


def test_headless_train_uses_every_core_by_default_and_threads_when_given(monkeypatch, capsys):
    from engine import parallel
    seen = _record(monkeypatch)

    def cpu(idle):
        """/proc/stat as cpu_times reads it: 100 jiffies pass per call, `idle` of them free for us."""
        n = iter(range(1, 1000))
        return lambda: (lambda k: (idle * k, 100 * k))(next(n))
    monkeypatch.setattr(parallel, "cpu_times", cpu(100))                # an idle machine: every core
    assert cli.main(["train", str(path("examples", "xor.json")), "--epochs", "1"]) == 0
    monkeypatch.setattr(parallel, "cpu_times", cpu(0))                  # busy: one thread, never 0
    assert cli.main(["train", str(path("examples", "xor.json")), "--epochs", "1"]) == 0
    assert cli.main(["train", str(path("examples", "xor.json")), "--epochs", "1", "--threads", "2"]) == 0
    assert seen == [os.cpu_count(), 1, 2]


def test_threads_below_one_is_refused_in_one_line(capsys):
    assert cli.main(["train", str(path("examples", "xor.json")), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "layerboard train: --threads must be at least 1, got 0"


def test_a_trainer_made_for_the_window_keeps_a_core_free():
    from engine.project import Project
    from engine.session import prepare
    _, tr = prepare(Project.load(path("examples", "xor.json")))
    assert tr.threads is None                                  # thread_limits(None): all cores but one
