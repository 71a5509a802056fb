"""Batch-parallel loops on worker threads: numba kernels (nogil) and numpy GEMMs release the GIL.

Work is split into chunks that depend only on the batch, never on the thread count, and partial sums are
combined in chunk order: one thread and many give bit-for-bit the same result.
"""
import itertools
import os
import threading
import time
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

from . import _jitsync

_state = threading.local()     # threads granted to the calling thread (Trainer.run, `train --threads`)


def threads():
    """Threads the calling thread may use for batch-parallel loops (1 unless granted with `use`)."""
    return getattr(_state, "n", 1)


@contextmanager
def use(n):
    """Within the block, batch-parallel loops of this thread run on up to n threads (the caller included)."""
    old = threads()
    _state.n = max(1, min(int(n), os.cpu_count() or 1))
    try:
        yield
    finally:
        _state.n = old


MIN_SHARE = 0.25        # work below this share of a chunk's target is not split: a loop costs ~35 µs of wake-ups
STREAM = 8 << 20        # bytes per chunk of a memory-bound pass: on the 2-core VM, two threads adding arrays of
                        # 1 MB each were no faster than one (4 MB: 1.5×), and split ReLUs of workload e 3× slower


def chunks(n, per_item, target=1 << 20):
    """Boundaries [(a, b), …] splitting range(n) into runs of about `target` work each, the work of one item
    being per_item (bytes, multiply-adds…); at least two runs when n ≥ 2 and the work is MIN_SHARE·target or more."""
    if n < 2 or n * per_item < MIN_SHARE * target:
        return [(0, n)]
    k = min(n, max(2, -(-n * per_item // target)))
    step = -(-n // k)
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def over_batch(fn, *arrays, item_bytes=None, target=1 << 20):
    """fn(*(a[lo:hi] for a in arrays)) for chunks of the batch (axis 0 of every array), on the granted threads;
    item_bytes: the work per sample (default: the bytes of one sample of every array), target: per chunk."""
    n = len(arrays[0])
    parts = chunks(n, item_bytes or sum(a[0].nbytes for a in arrays) if n else 0, target)
    run(lambda p: fn(*(a[p[0]:p[1]] for a in arrays)), parts)
    return parts


def _items(fn, items, state):
    """fn(item) for the items this thread claims (next(state["next"]): one at a time under the GIL), an error kept
    in state["error"] for the caller; with tracing on (`trace`), (thread, start ns, end ns, index) of each in
    state["t"]."""
    t = state.get("t")
    for i in state["next"]:
        if i >= len(items):
            break
        t0 = t is not None and time.perf_counter_ns()
        try:
            fn(items[i])
        except BaseException as e:          # noqa: BLE001  (re-raised in the caller)
            state["error"] = state["error"] or e
        if t is not None:
            t.append((threading.get_ident(), t0, time.perf_counter_ns(), i))


class _Pool:
    """Persistent daemon workers; run(fn, items) calls fn(item) for every item, the caller taking part."""

    def __init__(self):
        self.lock = threading.Lock()
        self.gos = []            # one lock per worker, released once per job it should join
        self.job = None
        self.loops = 0           # loops that woke a second thread (each costs wake-ups): `loops()`

    def _grow(self, n):
        while len(self.gos) < n:
            go = threading.Lock()                  # held: the worker blocks on it until run() releases it
            go.acquire()
            self.gos.append(go)
            threading.Thread(target=self._work, args=(go,), daemon=True,
                             name=f"layerboard-compute-{len(self.gos)}").start()

    def _work(self, go):
        while True:
            go.acquire()
            self._drain(self.job)

    @staticmethod
    def _drain(job):
        fn, items, state = job
        _items(fn, items, state)
        with state["lock"]:
            state["left"] -= 1
            if state["left"] == 0:
                state["done"].release()

    def run(self, fn, items, n):
        helpers = min(n, len(items)) - 1
        if helpers <= 0:
            for it in items:
                fn(it)
            return
        with self.lock:                          # one parallel loop at a time (other callers wait)
            self._grow(helpers)
            self.loops += 1
            state = self._loop(fn, items, helpers)
            if state["error"] is not None:
                raise state["error"]

    def _loop(self, fn, items, helpers):
        """Runs one loop on the caller and `helpers` workers; its state (with any error)."""
        done = threading.Lock()
        done.acquire()                           # released by the last thread to finish
        state = {"lock": threading.Lock(), "next": itertools.count(), "left": helpers + 1, "error": None,
                 "done": done}
        self.job = (fn, items, state)
        for go in self.gos[:helpers]:
            go.release()
        self._drain(self.job)
        state["done"].acquire()
        return state


class _FutexPool(_Pool):
    """The pool on Linux: threads wait for each other by polling counters natively for a bounded time, then on
    futexes, all without the GIL (engine/_jitsync.py). Measured on the 2-core VM (guest halt-polling off; under
    `chrt -f` as the machine was shared): a two-thread loop of two ~5 µs items 10.8 µs against the lock pool's 24-42
    µs, an empty one 5.5 against 33."""

    def __init__(self):
        super().__init__()
        self.sig = np.zeros(8, np.int64)         # _jitsync's counters
        self.sig[_jitsync.TIMEOUT + 1] = 50_000_000          # a futex wait rechecks every 50 ms: never a hang
        self.gen, self.workers, self.spin = 0, 0, None

    def _grow(self, n):
        if self.spin is None:                    # spins in cycles of the time-stamp counter (0 without one)
            c, t = _jitsync.cycles(), time.perf_counter()
            time.sleep(0.0005)
            rate = (_jitsync.cycles() - c) / (time.perf_counter() - t) / 1e6          # cycles per µs
            self.spin = [int(max(rate, 0) * us) for us in SPIN_US]
        while self.workers < n:
            self.workers += 1
            threading.Thread(target=self._work, args=(self.workers - 1, self.gen), daemon=True,
                             name=f"layerboard-compute-{self.workers}").start()

    def _work(self, w, seen):
        sig, idle = self.sig, self.spin[0]
        _jitsync.next_job(sig, seen, idle)
        while True:
            job = self.job
            seen = job[0]
            if w < job[3]:                       # one of this loop's helpers
                self._drain(job)
                _jitsync.finish(sig, seen, idle)
            else:
                _jitsync.next_job(sig, seen, idle)

    @staticmethod
    def _drain(job):
        _, fn, items, _, state = job
        _items(fn, items, state)

    def _loop(self, fn, items, helpers):
        self.gen += 1
        state = {"next": itertools.count(), "error": None}
        if self.trace is not None:
            state["t"] = []
            t0, asleep = time.perf_counter_ns(), int(self.sig[_jitsync.SLEEPERS])
        self.job = (self.gen, fn, items, helpers, state)
        self.sig[_jitsync.LEFT] = helpers + 1
        _jitsync.start(self.sig, self.gen, self.spin[2], self.spin[3])
        self._drain(self.job)
        if self.trace is not None:
            t1 = time.perf_counter_ns()
        _jitsync.join(self.sig, self.spin[1])
        if self.trace is not None:
            self.trace.append({"start": t0, "own_done": t1, "end": time.perf_counter_ns(), "asleep": asleep,
                               "caller": threading.get_ident(), "items": state.pop("t")})
        return state

    trace = None          # a list: each loop's timestamps (perf_counter_ns) appended to it (`trace()`)


SPIN_US = (30, 200, 20, 3)    # µs a worker polls for the next loop before it sleeps, the caller for the workers'
                                # end of a loop, the caller for a worker to see a new loop, and then to take the GIL


def _spins(text, default=SPIN_US):
    """SPIN_US from LAYERBOARD_SPIN_US="30,200,20,3" (to compare settings on a quiet machine: benchmarks/README.md,
    stepperf session 11); the default when unset or not four non-negative numbers."""
    try:
        v = tuple(float(x) for x in (text or "").split(","))
    except ValueError:
        return default
    return v if len(v) == 4 and min(v) >= 0 else default


SPIN_US = _spins(os.environ.get("LAYERBOARD_SPIN_US"))


def _new_pool():
    """The futex pool where it exists, unless LAYERBOARD_POOL=lock asks for the lock pool (to compare the two)."""
    global _pool
    _pool = _FutexPool() if _jitsync.AVAILABLE and os.environ.get("LAYERBOARD_POOL") != "lock" else _Pool()


_new_pool()
os.register_at_fork(after_in_child=_new_pool)          # a forked child has none of the workers


def run(fn, items):
    """fn(item) for every item, on the threads granted to the caller; returns when all are done.
    A loop started inside another one's fn runs on its own thread (the pool is busy with the outer one)."""
    items = list(items)
    if len(items) < 2 or getattr(_state, "n", 1) < 2 or getattr(_state, "busy", False):   # one thread: here
        for it in items:
            fn(it)
        return
    _state.busy = True
    try:
        _pool.run(fn, items, threads())
    finally:
        _state.busy = False


@contextmanager
def trace():
    """Within the block, each two-thread loop of the futex pool appends {start, own_done (the caller's items done),
    end (all done), asleep (workers asleep at the start), caller, items: [(thread, start, end, index)]} to the list
    yielded (benchmarks/mode_probe.py); nothing with the lock pool."""
    out = []
    old, _pool.trace = _pool.trace if isinstance(_pool, _FutexPool) else None, out
    try:
        yield out
    finally:
        _pool.trace = old


def loops():
    """Batch-parallel loops so far (this process) that dispatched to a second thread; the difference over a step
    counts its wake-ups, deterministic under any load (benchmarks/loops.py)."""
    return _pool.loops


# ---- the threads a run may use ----
@contextmanager
def thread_limits(n=None):
    """Context with BLAS (numpy's, which engine.blas.gemm calls) on one thread and the engine's
    batch-parallel loops (`use`) on n threads; None: all cores but one, which the window keeps for
    itself (headless: `layerboard train --threads N`).

    Training GEMMs are small: OpenBLAS threads spin against the trainer, the window and other processes for the
    same cores (a Dense 784→64 step ran 10-100× slower with 2 BLAS threads on a busy 2-core machine, workload c's
    convolutions 6-35× slower), so threads split the batch instead and each runs its GEMMs on one core.
    """
    n = max(1, int(n or (os.cpu_count() or 1) - 1))
    with threadpool_limits(limits=1, user_api="blas"), use(n):
        yield


def cpu_times(path="/proc/stat"):
    """(jiffies free for us, total jiffies) of all CPUs so far: idle time plus this process's own CPU time (work
    that would otherwise be idle), from /proc/stat; None where there is none (macOS, Windows)."""
    try:
        with open(path) as f:
            v = [int(t) for t in f.readline().split()[1:]]       # user nice system idle iowait irq softirq steal …
    except (OSError, ValueError):
        return None
    t = os.times()
    own = (t.user + t.system) * os.sysconf("SC_CLK_TCK")
    return v[3] + (v[4] if len(v) > 4 else 0) + own, sum(v[:8])


def free_cores(since=None, sample=0.05, times=None):
    """Cores other work leaves free (at least 1): headless training's default.

    Measured as the share of every core's time that was idle or ours, from `since` (a cpu_times() taken earlier,
    e.g. at the command's start) or over `sample` seconds; where /proc/stat is unavailable, cores − the 1-minute
    load average, which also counts jobs that ended up to a minute ago. On a machine shared with other jobs,
    multithreaded BLAS spin-waits against them: measured on a 2-core machine at load 7, two BLAS threads made a
    digits-cnn epoch 24× slower than one."""
    cores, times = os.cpu_count() or 1, times or cpu_times
    a = since or times()
    if a is not None:
        if since is None:
            import time
            time.sleep(sample)
        b = times()
        if b is not None and b[1] > a[1]:
            return max(1, min(cores, int(cores * (b[0] - a[0]) / (b[1] - a[1]) + 0.5)))
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cores, cores - int(load + 0.5)))


def single_threaded_blas():
    """thread_limits(1): BLAS on one thread."""
    return thread_limits(1)
