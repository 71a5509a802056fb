"""Workload d of shared/reference/benchmark-workloads.md: plain tanh RNN (input 8, hidden 64, T = 50), last
state → Dense(64→1), MSE, batch 32, Adam lr 1e-3; one step = zero grads + forward + loss + backward + step.

    python benchmarks/bench.py --only d        # the fair wall-clock comparison (both thread settings)
    python benchmarks/wl_rnn.py [--reps 3] [--baseline ROOT]
        # on a busy machine: CPU time per step on one thread, the engine (and the engine at ROOT, e.g. a
        # `git archive` of main) and PyTorch alternating, each in a fresh process; prints `uptime` with each run
    python benchmarks/wl_rnn.py --side engine|torch [--root ROOT]    # one such process
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from recurrent import recurrent  # noqa: E402  (benchmarks/ is on the path: the script's folder, or bench.py's)

T, D, H, B = 50, 8, 64, 32
FLOP = 42.4e6          # per step, as torch's flop counter counts them (shared/reference/benchmark-workloads.md)

batch, engine_step, torch_step = recurrent("RNN", T, D, H, B, "d")

WORKLOADS = {"d": (engine_step, torch_step, FLOP, B)}     # discovered by benchmarks/bench.py


def cpu_ms(side, root=None, blocks=7, steps=60):
    """(CPU ms, wall ms) per step on one thread in this process: medians of blocks of `steps` steps after warm-up."""
    if side == "torch":
        import torch
        torch.set_num_threads(1)
        fn = torch_step()
    else:
        if root:                                            # another engine (a baseline) first on the path
            sys.path.insert(0, str(root))
            for k in [k for k in sys.modules if k == "engine" or k.startswith("engine.")]:
                del sys.modules[k]
        from engine._malloc import keep_freed_memory
        from engine.parallel import thread_limits
        fn = engine_step()
        keep_freed_memory()                                 # as Trainer.run
        limits = thread_limits(1)                           # kept referenced: collecting it would end the limits
        limits.__enter__()
    for _ in range(3 * steps):
        fn()
    cpu, wall = [], []
    for _ in range(blocks):
        c, w = time.process_time(), time.perf_counter()
        for _ in range(steps):
            fn()
        cpu.append((time.process_time() - c) / steps * 1e3)
        wall.append((time.perf_counter() - w) / steps * 1e3)
    return statistics.median(cpu), statistics.median(wall)


def uptime():
    return os.getloadavg()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=("engine", "torch"))
    ap.add_argument("--root", help="the engine's root folder (default: this checkout)")
    ap.add_argument("--baseline", help="a second engine root timed alternating with this one")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    if a.side:
        print("%.4f %.4f" % cpu_ms(a.side, a.root))
        return
    sides = [("engine", ["--side", "engine"])] + ([("baseline", ["--side", "engine", "--root", a.baseline])]
                                                   if a.baseline else []) + [("torch", ["--side", "torch"])]
    runs = {k: [] for k, _ in sides}
    for r in range(a.reps):
        for key, args in sides:
            load = uptime()
            out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
            cpu, wall = map(float, out.stdout.split()[-2:])
            runs[key].append(cpu)
            print(f"  rep {r + 1} {key:8s} cpu {cpu:.3f} ms/step (wall {wall:.3f})  load {load:.2f} → {uptime():.2f}",
                  flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in med.items():
        print(f"d {k:8s} {v:.3f} CPU ms/step on one thread (median of {runs[k]})")
    for k in med:
        if k != "torch":
            print(f"ratio torch / {k}: {med['torch'] / med[k]:.2f}×")


if __name__ == "__main__":
    main()
