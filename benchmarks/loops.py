"""Batch-parallel loops per step of every workload (engine.parallel.loops: loops that wake a second thread, each
~34 µs of wake-ups on the 2-core VM), and optionally the step's one-thread CPU time; deterministic under load.

    python benchmarks/loops.py [--only c,d] [--steps 20] [--cpu]

Each workload runs in its own process, set up as bench.py's engine worker (all cores, or one thread when the
trainer runs the fused kernel)."""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def worker(wl, steps, cpu):
    """Print {"loops": per step, "cpu_ms": one-thread CPU ms per step or None} for one workload."""
    sys.path[:0] = [str(ROOT), str(HERE)]
    import os

    from bench import discover
    from engine import parallel
    from engine._malloc import keep_freed_memory
    from engine.trainer import thread_limits
    step = discover()[wl][0]()
    keep_freed_memory()
    fast = getattr(getattr(step, "trainer", None), "fast", None)
    with thread_limits(1 if fast is not None else (os.cpu_count() or 1)):
        for _ in range(3):
            step()
        n0 = parallel.loops()
        for _ in range(steps):
            step()
        loops = (parallel.loops() - n0) / steps
    cpu_ms = None
    if cpu:
        with thread_limits(1):
            blocks = []
            for _ in range(5):
                t = time.process_time()
                for _ in range(steps):
                    step()
                blocks.append((time.process_time() - t) / steps * 1e3)
            cpu_ms = sorted(blocks)[len(blocks) // 2]
    print(json.dumps({"loops": loops, "cpu_ms": cpu_ms, "fused_kernel": fast is not None}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated workload ids (default: all)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cpu", action="store_true", help="also the one-thread CPU ms per step (median of 5 blocks)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.steps, a.cpu)
    sys.path[:0] = [str(ROOT), str(HERE)]
    from bench import discover
    ids = [s.strip() for s in a.only.split(",") if s.strip()] or list(discover())
    print(f"{'id':8s} {'loops/step':>10s}" + (f" {'1-thread CPU ms':>16s}" if a.cpu else ""))
    for wl in ids:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", wl, "--steps", str(a.steps)]
        r = subprocess.run(cmd + (["--cpu"] if a.cpu else []), capture_output=True, text=True, cwd=str(ROOT))
        if r.returncode:
            print(f"{wl:8s} failed: {r.stderr.strip().splitlines()[-1:]}")
            continue
        o = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{wl:8s} {o['loops']:10.1f}" + (f" {o['cpu_ms']:16.3f}" if a.cpu else "")
              + ("   (fused kernel, one thread)" if o["fused_kernel"] else ""), flush=True)


if __name__ == "__main__":
    main()
