"""Workload e (shared/reference/benchmark-workloads.md): one transformer encoder block, one training step.

MHSA d_model 64, 4 heads, residual + LayerNorm, FFN 64→128→64 (ReLU), residual + LayerNorm, mean over T,
Dense(64→10); input (32, 64), batch 32, softmax cross-entropy, Adam lr 1e-3.

    python benchmarks/wl_transformer.py --side engine|torch [--threads N] [--blocks 15]

runs one side alone in this process and prints its median ms/step; alternate the two sides in separate
processes (engine, torch, engine, torch, …) for a fair ratio. bench.py discovers WORKLOADS.

Measured 2026-12-02 02:35-03:25 UTC with bench.py --only e on the 2-core EPYC VM (load ≈ 1), eight runs: engine on
2 threads 5.6-7.4 ms/step vs PyTorch at its default 2 threads 9.5-12.6 ms, ratio per run 1.43-2.13× (median 1.58×);
engine on one core 6.9-8.9 ms vs PyTorch 1 thread 11.9-15.3 ms, 1.47-2.21× (median 1.76×). The machine's speed
drifts by ±30% within seconds, so single runs scatter around those medians (benchmarks/README.md).
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

T, D, HEADS, FF, CLASSES, B = 32, 64, 4, 128, 10, 32


def graph():
    """x → MHSA → Add(x, ·) → LayerNorm → Dense 128 → ReLU → Dense 64 → Add → LayerNorm → TimePool → Dense 10 → Softmax."""
    from engine import Graph
    g = Graph()
    g.chain(("x", "Input", {"shape": [T, D]}), ("att", "MultiHeadSelfAttention", {"heads": HEADS}))
    g.add_node("Add", "res1")
    g.connect("x", "res1")
    g.connect("att", "res1")
    g.chain(("ln1", "LayerNorm", {}), ("ff1", "Dense", {"units": FF}), ("relu", "ReLU", {}),
            ("ff2", "Dense", {"units": D}), after="res1")
    g.add_node("Add", "res2")
    g.connect("ln1", "res2")
    g.connect("ff2", "res2")
    g.chain(("ln2", "LayerNorm", {}), ("pool", "TimePool", {"mode": "mean"}), ("out", "Dense", {"units": CLASSES}),
            ("sm", "Softmax", {}), after="res2")
    return g


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (B, T, D)).astype(np.float32), rng.integers(0, CLASSES, B)


def engine_step():
    """Trainer.train_step on a Model built from the graph: the code real training runs."""
    from engine.data import Dataset
    from engine.model import Model
    from steps import adam_step
    x, y = batch()
    m = Model(graph(), dtype=np.float32, seed=0)
    data = Dataset(x, y, "multiclass", "workload e", [str(i) for i in range(CLASSES)])
    return adam_step(m, data, "cce", B, (x, y))


def torch_step():
    try:
        import torch
    except ImportError:
        return None
    nn = torch.nn
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = nn.MultiheadAttention(D, HEADS, batch_first=True)
            self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.ff = nn.Sequential(nn.Linear(D, FF), nn.ReLU(), nn.Linear(FF, D))
            self.out = nn.Linear(D, CLASSES)

        def forward(self, x):
            h = self.ln1(x + self.att(x, x, x, need_weights=False)[0])
            h = self.ln2(h + self.ff(h))
            return self.out(h.mean(1))

    net = Block()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xn, yn = batch()
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return step


FLOP = 176.3e6         # per step, as torch's flop counter counts them (shared/reference/benchmark-workloads.md)
WORKLOADS = {"e": (engine_step, torch_step, FLOP, B)}     # discovered by benchmarks/bench.py


def main(argv=None):
    ap = argparse.ArgumentParser(description="workload e, one side per process")
    ap.add_argument("--side", choices=("engine", "torch"), required=True)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads or engine threads (engine.parallel; 0: default / 1)")
    ap.add_argument("--blocks", type=int, default=15)
    a = ap.parse_args(argv)
    if a.side == "torch":
        import torch
        if a.threads:
            torch.set_num_threads(a.threads)
        fn, threads = torch_step(), torch.get_num_threads()
        ctx = None
    else:
        from engine._malloc import keep_freed_memory
        from engine.parallel import thread_limits
        fn, threads = engine_step(), a.threads or 1
        keep_freed_memory()                            # as Trainer.run and bench.py
        ctx = thread_limits(threads)                   # as Trainer.run: BLAS on one thread, batch chunks on threads
        ctx.__enter__()
    for _ in range(20):
        fn()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.3:
        fn()
        n += 1
    reps = max(1, int(0.1 * n / (time.perf_counter() - t0)))
    times, cpu = [], []
    for _ in range(a.blocks):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t) / reps * 1e3)
        cpu.append((time.process_time() - c) / reps * 1e3)
    if ctx is not None:
        ctx.__exit__(None, None, None)
    ms = statistics.median(times)
    # CPU ms: this process's CPU time per step (all its threads); on a shared machine it is closer to the
    # idle-machine cost than the wall time, which includes waiting for the cores
    print(f"e {a.side} threads={threads} ms/step {ms:.3f} samples/s {B / ms * 1e3:.0f} "
          f"cpu_ms/step {statistics.median(cpu):.3f}", flush=True)


if __name__ == "__main__":
    main()
