"""Workload d of shared/reference/benchmark-workloads.md: plain tanh RNN (input 8, hidden 64, T = 50), last
state → Dense(64→1), MSE, batch 32, Adam lr 1e-3; one step = zero grads + forward + loss + backward + step.

    python benchmarks/bench.py --only d        # the fair wall-clock comparison (both thread settings)
    python benchmarks/wl_rnn.py [--reps 3] [--baseline ROOT]
        # on a busy machine: CPU time per step on one thread, the engine (and the engine at ROOT, e.g. a
        # `git archive` of main) and PyTorch alternating, each in a fresh process; prints `uptime` with each run
    python benchmarks/wl_rnn.py --side engine|torch [--root ROOT]    # one such process
    python benchmarks/wl_rnn.py --parts [--threads N]
        # where the engine's step goes: thread CPU µs per step of the RNN kernels, the layers' Python around them,
        # Dense, loss, optimizer and the rest, and the batch-parallel loops per step (on N threads, default 1)
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


def parts(threads=1, steps=300):
    """Print thread CPU µs per step of each part of the engine's step (the calling thread: with threads > 1 the
    helpers' share is not counted) and the parallel loops per step."""
    from engine import parallel
    from engine._malloc import keep_freed_memory
    from engine.layers import rnn
    from engine.parallel import thread_limits
    import threading
    fn = engine_step()
    tr, acc, loops, me = fn.trainer, {}, [0], threading.get_ident()
    m = tr.model

    def timed(obj, name, key):
        f = getattr(obj, name)

        def w(*a, **k):
            if threading.get_ident() != me:                              # a helper thread's share: not counted
                return f(*a, **k)
            c = time.thread_time_ns()
            r = f(*a, **k)
            acc[key] = acc.get(key, 0) + time.thread_time_ns() - c
            return r
        setattr(obj, name, w)
    for obj, name, key in ((rnn, "_rnn_forward", "RNN forward kernel"), (rnn, "_rnn_backward", "RNN backward kernel"),
                           (m.layers["rnn"], "forward", "RNN forward"), (m.layers["rnn"], "backward", "RNN backward"),
                           (m.layers["out"], "forward", "Dense forward"), (m.layers["out"], "backward", "Dense backward"),
                           (tr, "loss", "MSE loss"), (tr.opt, "step", "Adam"), (m, "forward", "model.forward"),
                           (m, "backward", "model.backward")):
        timed(obj, name, key)
    run = parallel._pool.run
    parallel._pool.run = lambda f, items, n: (loops.__setitem__(0, loops[0] + (min(n, len(items)) > 1)),
                                              run(f, items, n))[1]
    keep_freed_memory()
    with thread_limits(threads):
        for _ in range(steps):
            fn()
        acc.clear()
        loops[0] = 0
        c = time.thread_time_ns()
        for _ in range(steps):
            fn()
        total = time.thread_time_ns() - c
    us = {k: v / steps / 1e3 for k, v in acc.items()}
    us["RNN forward"] -= us["RNN forward kernel"]                        # the layer's Python around its kernel
    us["RNN backward"] -= us["RNN backward kernel"]
    us["model.forward"] -= us["RNN forward"] + us["RNN forward kernel"] + us["Dense forward"]
    us["model.backward"] -= us["RNN backward"] + us["RNN backward kernel"] + us["Dense backward"]
    us["rest of train_step"] = total / steps / 1e3 - sum(us.values())
    print(f"workload d, {threads} thread(s), load {uptime():.2f}: {total / steps / 1e3:.1f} µs per step (thread CPU "
          f"of the calling thread), {loops[0] / steps:g} parallel loops per step")
    for k, v in us.items():
        print(f"  {k:22s} {v:7.1f} µs" + ("  (Python around the kernel)" if k in ("RNN forward", "RNN backward")
                                         else "  (graph walk)" if k.startswith("model.") else ""))


def uptime():
    return os.getloadavg()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=("engine", "torch"))
    ap.add_argument("--root", help="the engine's root folder (default: this checkout)")
    ap.add_argument("--baseline", help="a second engine root timed alternating with this one")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--parts", action="store_true", help="the per-part breakdown of the engine's step")
    ap.add_argument("--threads", type=int, default=1, help="threads for --parts")
    a = ap.parse_args()
    if a.parts:
        return parts(a.threads)
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
