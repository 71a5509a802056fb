"""Training-step speed of the engine side by side with PyTorch CPU in the same run.

    python benchmarks/bench.py [--quick] [--only a,b] [--torch-threads 2]

Workloads come from benchmarks/wl_*.py modules (each `workloads() -> {id: (engine_step, torch_step)}`,
zero-argument callables doing one step; torch_step None without torch), as defined in
shared/reference/benchmark-workloads.md. Reports the median over repeated blocks after warm-up.
"""
import argparse
import importlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine.trainer import single_threaded_blas  # noqa: E402

MODULES = ("wl_dense", "wl_cnn", "wl_transformer")


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch):
    """Lines describing the machine and library versions."""
    import numba
    import numpy as np
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except Exception:                                         # older numpy: no dict mode
        pass
    lines = [f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} (1 min)",
             f"python {platform.python_version()}, numpy {np.__version__} (BLAS {blas}), numba {numba.__version__}, "
             + (f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else "torch not installed")]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            lines.append(f"note: {var}={os.environ[var]} is set in the environment (BLAS kernel/thread choice)")
    return lines


def collect(only):
    """{id: (engine_step, torch_step)} from every workload module present."""
    out = {}
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError as e:
            print(f"skip {name}: {e}")
            continue
        for wl, fns in mod.workloads().items():
            if not only or wl in only:
                out[wl] = fns
    return out


def calibrate(fn, quick):
    """Warm up fn and return how many calls fill one timed block (about 0.1 s, 0.03 s with --quick)."""
    fn()
    t0 = time.perf_counter()
    warm = 0
    while warm < 5 or time.perf_counter() - t0 < (0.05 if quick else 0.3):
        fn()
        warm += 1
    return max(1, int((0.03 if quick else 0.1) / ((time.perf_counter() - t0) / warm)))


def block(fn, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def ms_per_step(fns, quick):
    """Median ms/step of each callable over repeated blocks, interleaved so that all see the same load."""
    reps = [calibrate(f, quick) for f in fns]
    times = [[] for _ in fns]
    for _ in range(5 if quick else 15):
        for f, r, t in zip(fns, reps, times):
            t.append(block(f, r))
    return [statistics.median(t) for t in times]


BATCH = {"a": 4, "b": 64, "c": 64, "c-infer": 64, "d": 32, "e": 32}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter blocks")
    ap.add_argument("--only", default="", help="comma-separated workload ids, e.g. a,b")
    ap.add_argument("--torch-threads", type=int, default=2,
                    help="PyTorch intra-op threads (2 as in the reference figures; 1 is fairer on a busy machine)")
    args = ap.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(args.torch_threads)
    except ImportError:
        torch = None
    for line in machine_info(torch):
        print(line)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    wls = collect(only)
    print(f"\n{'id':8s} {'engine ms':>10s} {'samples/s':>10s} {'torch ms':>10s} {'samples/s':>10s} {'speed ratio':>12s}")
    print("  (ratio = engine speed / PyTorch speed = torch ms / engine ms; > 1 means the engine is faster)")
    print("  (the engine's BLAS runs on one thread, as in Trainer.run; PyTorch's own threads are not affected)")
    with single_threaded_blas():
        for wl, (es, ts) in wls.items():
            b = BATCH.get(wl, 1)
            me, mt = ms_per_step([es, ts] if ts else [es], args.quick) + ([] if ts else [None])
            tcol = f"{mt:10.4f} {b / mt * 1e3:10.0f} {mt / me:11.2f}×" if mt else f"{'—':>10s} {'—':>10s} {'—':>12s}"
            print(f"{wl:8s} {me:10.4f} {b / me * 1e3:10.0f} {tcol}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
