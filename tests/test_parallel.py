"""Batch-parallel loops (engine.parallel): every registry sample gives bit-for-bit the same forward and
gradients on one thread and on several, and the big layers of workload c really split their batch."""
import numpy as np
import pytest
from gradcheck import backward, build, cases, inputs, run, upstream

from engine import parallel

BATCH = 64                 # large enough for the chunked layers to split it


def _step(type, config, in_shapes, opts, threads, training):
    layer = build(type, config, in_shapes, seed=0, dtype=np.float32)
    xs, masks = inputs(in_shapes, opts, BATCH, seed=0, dtype=np.float32)
    with parallel.use(threads):
        y = run(layer, xs, training, masks=masks)
        dxs = backward(layer, upstream(layer, y, masks).astype(np.float32))
    return layer, y, dxs, {k: g.copy() for k, g in layer.g.items()}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", cases(), ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_two_threads_equal_one_bit_for_bit(case, training, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_SHARE", 0)          # split even the registry's small samples
    one = _step(*case, threads=1, training=training)
    two = _step(*case, threads=2, training=training)
    assert np.array_equal(one[1], two[1]), "forward differs"
    for a, b in zip(one[2], two[2]):
        assert (a is None and b is None) or np.array_equal(a, b), "dx differs"
    for k in one[3]:
        assert np.array_equal(one[3][k], two[3][k]), f"d{k} differs"
    for k in one[0].p:                                   # running statistics too
        assert np.array_equal(one[0].p[k], two[0].p[k]), f"{k} differs"


@pytest.mark.parametrize("type,config,shape", [
    ("Conv2D", {"filters": 8, "padding": "explicit", "pad": [1]}, (1, 28, 28)),
    ("Conv2D", {"filters": 16, "padding": "explicit", "pad": [1]}, (8, 14, 14)),
    ("BatchNorm", {}, (8, 28, 28)),
    ("BatchNorm", {}, (16, 14, 14)),
    ("ReLU", {}, (8, 28, 28)),
    ("MaxPool2D", {}, (8, 28, 28)),
])
def test_workload_c_layers_split_the_batch(type, config, shape, monkeypatch):
    seen = []
    real = parallel.run
    monkeypatch.setattr(parallel, "run", lambda fn, items: (seen.append(list(items)), real(fn, seen[-1])))
    _step(type, config, [shape], {}, threads=2, training=True)
    assert seen and all(len(s) > 1 for s in seen)           # every parallel loop of the step is split


def test_free_cores_counts_the_idle_share_now_not_the_load_average(monkeypatch):
    """Idle (or our own) jiffies since a start decide; the 1-minute load average (jobs that ended) only without them."""
    from engine import parallel
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (3.9, 3.0, 2.0))

    def times_of(*pairs):
        it = iter(pairs)
        return lambda: next(it)

    assert parallel.free_cores(None, 0, times_of((0, 0), (400, 400))) == 4     # all idle, though the load says 3.9
    assert parallel.free_cores(None, 0, times_of((0, 0), (100, 400))) == 1     # one core's worth idle
    assert parallel.free_cores(None, 0, times_of((0, 0), (250, 400))) == 3     # 2.5 cores idle: rounded
    assert parallel.free_cores(None, 0, times_of((0, 0), (0, 400))) == 1       # busy: still one thread
    assert parallel.free_cores((100, 1000), 0, times_of((500, 1400))) == 4     # since a snapshot: no sleep
    assert parallel.free_cores(None, 0, lambda: None) == 1                     # no /proc/stat: 4 − 3.9 → 1 (at least)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    assert parallel.free_cores(None, 0, lambda: None) == 3


def test_cpu_times_reads_the_aggregate_line(tmp_path):
    from engine.parallel import cpu_times
    p = tmp_path / "stat"
    p.write_text("cpu  10 1 5 100 4 0 2 0 0 0\ncpu0 5 0 2 50 2 0 1 0 0 0\n")
    free, total = cpu_times(str(p))
    assert total == 122 and free >= 104                                   # idle + iowait, plus our own CPU time
    assert cpu_times(str(tmp_path / "missing")) is None
