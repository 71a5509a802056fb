"""engine.parallel's pool: workers that poll, then sleep (engine/_jitsync.py on Linux), never lose or repeat an item,
wake from sleep, skip loops they are not needed for, and a forked child gets a pool of its own."""
import os
import threading
import time

import pytest

from engine import _jitsync, parallel


def _within(seconds, body):
    """body() on a thread; fails (instead of hanging the suite) when it does not return in time."""
    out = {}

    def go():
        try:
            body()
            out["ok"] = True
        except BaseException as e:          # noqa: BLE001  (reported below)
            out["error"] = e
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"parallel loops did not finish within {seconds} s (a lost wake-up?)"
    if "error" in out:
        raise out["error"]


@pytest.mark.parametrize("pause", [0.0, 0.002], ids=["back-to-back", "workers-asleep-between"])
def test_loops_do_every_item_once_and_use_the_second_thread(pause):
    caller, others = [], []

    def body():
        me = threading.get_ident()
        with parallel.use(2):
            for k in range(40):
                seen = []

                def item(i):
                    (caller if threading.get_ident() == me else others).append(i)
                    seen.append(i)
                    time.sleep(0.002)                  # releases the GIL: the other thread takes the other item
                parallel.run(item, range(k % 5 + 2))
                assert sorted(seen) == list(range(k % 5 + 2))
                time.sleep(pause)                      # longer than the workers' polling: they sleep on the futex
    _within(120, body)
    if (os.cpu_count() or 1) > 1:
        assert others, "no item ran on a worker thread"


def test_workers_not_needed_by_a_loop_skip_it():
    """More workers than a later loop needs (4 threads, then 2): the extra ones must neither run nor count out."""
    def body():
        for n_items in (5, 2, 7, 2, 3, 2):
            seen = []
            parallel._pool.run(seen.append, list(range(n_items)), 4)
            assert sorted(seen) == list(range(n_items))
            time.sleep(0.001)
    _within(120, body)


def test_errors_are_reraised_and_the_pool_keeps_working():
    def body():
        with parallel.use(2):
            for _ in range(5):
                with pytest.raises(ZeroDivisionError):
                    parallel.run(lambda i: 1 / (i - 1), range(3))
            seen = []
            parallel.run(seen.append, range(6))
            assert sorted(seen) == list(range(6))
    _within(120, body)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_a_pool_of_its_own():
    with parallel.use(2):
        parallel.run(lambda i: None, range(4))                 # the parent's workers exist
    pid = os.fork()
    if pid == 0:                                               # the child: none of the parent's threads
        code = 1
        try:
            seen = []
            with parallel.use(2):
                parallel.run(seen.append, range(6))
            code = 0 if sorted(seen) == list(range(6)) else 2
        finally:
            os._exit(code)
    deadline = time.time() + 60
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child's parallel loop did not finish")


def test_the_futex_pool_is_the_one_used_where_available(monkeypatch):
    assert isinstance(parallel._pool, parallel._FutexPool) == _jitsync.AVAILABLE
    monkeypatch.setenv("LAYERBOARD_POOL", "lock")              # the lock pool on request (to compare the two)
    monkeypatch.setattr(parallel, "_pool", parallel._pool)     # restored after the test
    parallel._new_pool()
    assert type(parallel._pool) is parallel._Pool


def test_the_lock_pool_of_other_platforms_does_every_item_once():
    pool = parallel._Pool()

    def body():
        for n_items in (2, 5, 3):
            seen = []
            pool.run(seen.append, list(range(n_items)), 2)
            assert sorted(seen) == list(range(n_items))
        with pytest.raises(ZeroDivisionError):
            pool.run(lambda i: 1 / (i - 1), range(3), 2)
    _within(120, body)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: no two-thread loop")
def test_trace_records_each_loop_and_every_item_once():
    """parallel.trace(): one record per two-thread loop, times in order, each item once with its index and thread."""
    if not isinstance(parallel._pool, parallel._FutexPool):
        pytest.skip("the lock pool (LAYERBOARD_POOL=lock) has no trace")

    def body():
        with parallel.use(2), parallel.trace() as loops:
            for k in range(3):
                parallel.run(lambda i: time.sleep(0.001), range(k + 2))
            parallel.run(lambda i: None, range(1))              # one item: no second thread, no record
        assert [sorted(it[3] for it in lp["items"]) for lp in loops] == [[0, 1], [0, 1, 2], [0, 1, 2, 3]]
        for lp in loops:
            assert lp["start"] <= lp["own_done"] <= lp["end"]
            assert all(lp["start"] <= a <= b <= lp["end"] for _, a, b, _ in lp["items"])
        assert parallel._pool.trace is None                      # off again after the block
    _within(120, body)


def test_spin_budgets_from_the_environment_only_when_well_formed():
    assert parallel._spins("300,200,20,20") == (300.0, 200.0, 20.0, 20.0)
    for bad in (None, "", "1,2,3", "a,b,c,d", "1,2,3,-4"):
        assert parallel._spins(bad) == (30, 200, 20, 3)
