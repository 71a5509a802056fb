"""One process of a workload's two-thread step, described so that a "fast/slow mode" shows even under load.

    python benchmarks/mode_probe.py [--wl e] [--steps 400] [--threads 2]

Prints one JSON line: per-step wall-time percentiles (the low ones are what a quiet machine sees), the
one-thread CPU time per step (compute alone: alignment, plan), per-thread CPU time, context switches per step
(voluntary = futex sleeps or yields; involuntary = preemptions), the vCPU each thread ran on, loops per step,
the page offsets of the step's big buffers, the number of OS threads, and a digest of the fusion plan.
Run it as many short processes (benchmarks/README.md, "stepperf: the fast/slow mode") and compare the fields
between the fast and the slow ones.
"""
import argparse
import hashlib
import json
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from modediag import describe, pair_speed, per_thread, task_stats

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


def steal():
    """Jiffies the hypervisor ran something else on our vCPUs (/proc/stat, all CPUs)."""
    return int(open("/proc/stat").readline().split()[8])


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wl", default="e")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pin", default="", help="vCPUs for the main thread and the pool worker, e.g. 0,1 (default: the "
                    "scheduler's choice)")
    ap.add_argument("--no-cpu1", action="store_true", help="skip the one-thread phase (bench.py's worker has none)")
    ap.add_argument("--idle-spin", type=float, help="µs a worker polls for the next loop before it sleeps "
                    "(parallel.SPIN_US[0])")
    ap.add_argument("--extra-spin", type=float, help="µs the caller polls after a worker saw a loop, while the worker "
                    "takes the GIL (parallel.SPIN_US[3])")
    a = ap.parse_args(argv)
    from bench import discover
    from engine import parallel
    if a.idle_spin is not None:
        parallel.SPIN_US = (a.idle_spin,) + tuple(parallel.SPIN_US[1:])
    if a.extra_spin is not None:
        parallel.SPIN_US = tuple(parallel.SPIN_US[:3]) + (a.extra_spin,)
    from engine._malloc import keep_freed_memory
    from engine.trainer import thread_limits
    step = discover()[a.wl][0]()
    keep_freed_memory()
    tr = step.trainer
    m = tr.model
    cpu1 = None
    if not a.no_cpu1:
        with thread_limits(1):                        # one-thread CPU per step: compute alone
            for _ in range(10):
                step()
            c = time.process_time()
            for _ in range(a.steps // 2):
                step()
            cpu1 = round((time.process_time() - c) / (a.steps // 2) * 1e6, 1)
    with thread_limits(a.threads):
        for _ in range(20):
            step()
        if a.pin:
            cpus = [int(c) for c in a.pin.split(",")]
            workers = [t.native_id for t in threading.enumerate() if t.name.startswith("layerboard-compute")]
            for tid, c in zip([threading.get_native_id()] + workers, cpus):
                os.sched_setaffinity(tid, {c})
        n0, s0, t0 = parallel.loops(), task_stats(), time.process_time()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times, refs = [], []
        ga = np.random.default_rng(0).random((256, 256), dtype=np.float32)
        gc = np.empty_like(ga)
        steal0 = steal()
        for i in range(a.steps):
            if i % 25 == 0:               # the machine's speed now: a one-thread 256×256 GEMM between steps
                t = time.perf_counter_ns()
                np.matmul(ga, ga, out=gc)
                refs.append((time.perf_counter_ns() - t) / 1e3)
            t = time.perf_counter_ns()
            step()
            times.append((time.perf_counter_ns() - t) / 1e3)
        steal1 = steal()
        cpu2 = (time.process_time() - t0) / a.steps * 1e6
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / a.steps
        s1, loops = task_stats(), (parallel.loops() - n0) / a.steps
        with parallel.trace() as tr_loops:            # each loop's timestamps, a further 100 steps
            for _ in range(100):
                step()
    loops_desc = describe(tr_loops, int(round(loops)) or 1)
    per = per_thread(s0, s1, a.steps)
    bufs = {"theta": m.theta, "grad": m.grad}
    bufs.update({f"act:{k}": v for k, v in list(m.acts.items())[:12] if hasattr(v, "ctypes")})
    offs = {k: v.ctypes.data % 4096 for k, v in bufs.items()}
    plan = hashlib.md5(repr([(k, [type(g).__name__] + list(g.nodes)) for k, g in m.groups.items()]).encode())
    pool = getattr(parallel, "_pool")
    print(json.dumps({
        "pid": os.getpid(), "hashseed": os.environ.get("PYTHONHASHSEED"), "wl": a.wl,
        "p05_us": round(pct(times, 0.05), 1), "p25_us": round(pct(times, 0.25), 1),
        "p50_us": round(statistics.median(times), 1), "min_us": round(min(times), 1),
        "blocks_us": [round(statistics.median(times[i:i + 50]), 1) for i in range(0, len(times), 50)],
        "cpu1_us": cpu1, "gemm256_us": round(statistics.median(refs), 1), "steal_jiffies": steal1 - steal0,
        "cpu2_us": round(cpu2, 1), "loops": loops, "page_faults": faults, "threads_os": len(s1), "per_loop": loops_desc, "vcpus": pair_speed(),
        "spin": getattr(pool, "spin", None), "per_thread": per, "offsets": offs, "plan": plan.hexdigest()[:8],
        "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
