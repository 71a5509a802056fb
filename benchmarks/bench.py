"""Fair training-step benchmark: the engine and PyTorch each timed in their own process, alternating.

    python benchmarks/bench.py [--reps 3] [--quick] [--only a,b,c] [--json] [--no-torch]

Each repetition runs one fresh process per side in turn: engine on all cores, PyTorch at its default
threads, engine on one core, PyTorch on one thread (then the next workload). The machine's float32
GEMM peak (numpy, one thread and all threads) is measured in the same run, also in its own processes.
Workloads come from every benchmarks/wl_*.py module (see README.md for the interface).
"""
import argparse
import glob
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORES = os.cpu_count() or 1


# ---- worker side (a fresh process per measurement) ----
def _limits(threads):
    """numpy's BLAS on `threads` threads for the whole worker, as Trainer.run does."""
    import numpy  # noqa: F401  (threadpoolctl limits only the BLAS already loaded: without this the GEMM ran on 2)
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads, user_api="blas")


def _time(fn, quick):
    """Median ms per call over blocks of ~0.1 s after warm-up."""
    fn()
    t0, warm = time.perf_counter(), 0
    while warm < 5 or time.perf_counter() - t0 < (0.1 if quick else 0.4):
        fn()
        warm += 1
    reps = max(1, int((0.05 if quick else 0.1) / ((time.perf_counter() - t0) / warm)))
    blocks = []
    for _ in range(4 if quick else 9):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        blocks.append((time.perf_counter() - t) / reps * 1e3)
    return statistics.median(blocks)


def _gemm(n=512):
    """One float32 n×n GEMM, the machine's peak kernel."""
    import numpy as np
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b, c = a.copy(), np.empty_like(a)
    return lambda: np.matmul(a, b, out=c), 2.0 * n ** 3


def _diagnosed(step, quick):
    """(_time(step), what the threads did meanwhile): sleeps, CPU and vCPUs per thread and loops per step over the
    timed steps, then each loop's wake-up, gap and items over 30 more (benchmarks/modediag.py): the fields that tell
    a fast process from a slow one (the fast/slow mode) in the same run."""
    try:
        from engine import parallel
        from modediag import describe, pair_speed, per_thread, task_stats
        trace = parallel.trace
    except (ImportError, AttributeError):                             # an older engine (--baseline)
        return _time(step, quick), None
    n = [0]

    def counted():
        n[0] += 1
        step()
    step()                                                             # the pool's threads exist from here on
    s0, l0 = task_stats(), parallel.loops()
    ms = _time(counted, quick)
    s1, loops = task_stats(), (parallel.loops() - l0) / max(n[0], 1)
    with trace() as t:
        for _ in range(30):
            step()
    per = round(loops) or 1
    return ms, {"threads": per_thread(s0, s1, max(n[0], 1)), "loops": loops,
                "per_loop": describe(t[:len(t) // per * per], per), "vcpus": pair_speed()}


def worker(side, wl, threads, quick, root=None):
    """Print {"ms": …} for one side of one workload (or {"gflops": …} for the GEMM peak)."""
    sys.path[:0] = [str(root or ROOT), str(HERE)]
    if side == "engine":
        import engine
        assert Path(engine.__file__).resolve().parent.parent == Path(root or ROOT).resolve(), engine.__file__
    if side == "gemm":
        with _limits(threads):
            fn, flop = _gemm()
            ms = _time(fn, quick)
        print(json.dumps({"gflops": flop / ms / 1e6}))
        return
    build = discover()[wl][0 if side == "engine" else 1]
    if side == "engine":
        try:
            from engine.trainer import thread_limits
        except ImportError:                                            # an older engine (--baseline)
            from engine.trainer import single_threaded_blas
            thread_limits = lambda n: single_threaded_blas()               # noqa: E731  (it always used one)
        step = build()
        try:
            from engine._malloc import keep_freed_memory                # as Trainer.run sets it
            keep_freed_memory()
        except ImportError:                                            # an older engine sets it on import
            pass
        fast = getattr(getattr(step, "trainer", None), "fast", None)
        with thread_limits(1 if fast is not None else threads):       # as Trainer.run chooses
            if threads > 1 and fast is None:
                ms, diag = _diagnosed(step, quick)
                print(json.dumps({"ms": ms, "diag": diag}))
                return
            ms = _time(step, quick)
    else:
        import torch
        if threads:
            torch.set_num_threads(threads)
        fn = build()
        ms = _time(fn, quick)
    print(json.dumps({"ms": ms}))


# ---- workloads ----
def discover():
    """{id: (build engine step, build torch step, FLOP per step, batch)} from every benchmarks/wl_*.py."""
    if str(HERE) not in sys.path:
        sys.path[:0] = [str(ROOT), str(HERE)]                           # a worker has put its engine root first
    out = {}
    for f in sorted(glob.glob(str(HERE / "wl_*.py"))):
        mod = importlib.import_module(Path(f).stem)
        for wl, spec in getattr(mod, "WORKLOADS", {}).items():
            out[wl] = tuple(spec)
    return out


def measure(side, wl, threads, quick, root=None):
    """Run one worker process; the result, or None when it failed (the error is printed)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--wl", wl or "-",
           "--threads", str(threads)] + (["--quick"] if quick else []) + (["--root", str(root)] if root else [])
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None) if side == "torch" and not threads else None
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(root or ROOT))
    if r.returncode != 0:
        print(f"  {side} {wl} ({threads or 'default'} threads) failed: {r.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def torch_info():
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__, torch.get_num_threads())"],
                       capture_output=True, text=True)
    return r.stdout.split() if r.returncode == 0 else None


def machine_info(tinfo):
    import numba
    import numpy as np
    blas = "?"
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except Exception:                                         # older numpy: no dict mode
        pass
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"CPU: {cpu}, {CORES} cores; load average {os.getloadavg()[0]:.2f} (1 min)",
             f"python {platform.python_version()}, numpy {np.__version__} (BLAS {blas}), numba {numba.__version__}, "
             + (f"torch {tinfo[0]} (default {tinfo[1]} threads)" if tinfo else "torch not measured")]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            lines.append(f"note: {var}={os.environ[var]} is set in the environment (BLAS kernel/thread choice)")
    return lines


def rng(v):
    v = [x for x in v if x is not None]
    return (min(v), max(v)) if v else None


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions per side (default 3)")
    ap.add_argument("--quick", action="store_true", help="shorter timing blocks")
    ap.add_argument("--only", default="", help="comma-separated workload ids, e.g. a,b")
    ap.add_argument("--json", action="store_true", help="one JSON object per workload on stdout")
    ap.add_argument("--no-torch", action="store_true", help="time the engine alone")
    ap.add_argument("--diag", action="store_true", help="after the table, one line per engine all-core process: its "
                    "time, sleeps per step of each thread, loop wake-ups and item times, and a 256² GEMM on each vCPU "
                    "alone and on both at once (the fast/slow mode, benchmarks/README.md)")
    ap.add_argument("--baseline", help="also time the engine of another source tree (e.g. an export of main), "
                    "alternating with the others")
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--wl", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.wl, a.threads, a.quick, a.root)
    wls = discover()
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    ids = [w for w in (only or wls) if w in wls]
    tinfo = None if a.no_torch else torch_info()
    say = (lambda *x: print(*x, file=sys.stderr)) if a.json else print
    for line in machine_info(tinfo):
        say(line)
    peak = {1: [], CORES: []}
    res = {w: {k: [] for k in ("engine", "engine_1t", "torch", "torch_1t", "baseline")} for w in ids}
    diags = {w: [] for w in ids}
    sides = [("engine", "engine", CORES), ("engine_1t", "engine", 1)]
    if tinfo:
        sides = [sides[0], ("torch", "torch", 0), sides[1], ("torch_1t", "torch", 1)]
    for rep in range(a.reps):
        for t in peak:
            g = measure("gemm", None, t, a.quick)
            peak[t].append(g and g["gflops"])
        for w in ids:
            for key, side, t in sides + ([("baseline", "engine", CORES)] if a.baseline else []):
                r = measure(side, w, t, a.quick, a.baseline if key == "baseline" else None)
                res[w][key].append(r and r["ms"])
                if key == "engine" and r and r.get("diag"):
                    diags[w].append((r["ms"], r["diag"]))
        say(f"  repetition {rep + 1}/{a.reps} done (load average {os.getloadavg()[0]:.2f})")
    p1, pn = med(peak[1]), med(peak[CORES])
    say(f"float32 GEMM peak (numpy 512×512): {p1:.0f} GFLOP/s on 1 thread (range {rng(peak[1])[0]:.0f}–"
        f"{rng(peak[1])[1]:.0f}), {pn:.0f} on {CORES} (range {rng(peak[CORES])[0]:.0f}–{rng(peak[CORES])[1]:.0f})")
    if not a.json:
        print(f"\nmedian of {a.reps} alternating process runs (range in brackets); ratio = torch ms / engine ms "
              "(> 1: the engine is faster)")
        print(f"{'id':8s} {'engine ms':>22s} {'torch ms':>22s} {'ratio':>6s} {'engine 1-core ms':>22s} "
              f"{'torch 1-thr ms':>22s} {'ratio':>6s} {'samples/s':>9s} {'GFLOP/s':>7s} {'% peak':>6s} {'1-core %':>8s}")
    for w in ids:
        _, _, flop, b = wls[w]
        r = {k: med(v) for k, v in res[w].items()}
        e, e1, t, t1, base = r["engine"], r["engine_1t"], r["torch"], r["torch_1t"], r["baseline"]
        out = {"id": w, "batch": b, "flop_per_step": flop, "engine_ms": e, "engine_1t_ms": e1, "torch_ms": t,
               "torch_1t_ms": t1, "engine_ms_range": rng(res[w]["engine"]), "engine_1t_ms_range":
               rng(res[w]["engine_1t"]), "torch_ms_range": rng(res[w]["torch"]),
               "torch_1t_ms_range": rng(res[w]["torch_1t"]),
               "samples_per_s": b / e * 1e3 if e else None, "torch_samples_per_s": b / t * 1e3 if t else None,
               "gflops": flop / e / 1e6 if e else None, "gflops_1t": flop / e1 / 1e6 if e1 else None,
               "torch_gflops": flop / t / 1e6 if t else None,
               "pct_peak": 100 * flop / e / 1e6 / pn if e and pn else None,
               "pct_peak_1t": 100 * flop / e1 / 1e6 / p1 if e1 and p1 else None,
               "ratio": t / e if t and e else None, "ratio_1t": t1 / e1 if t1 and e1 else None,
               "peak_gflops": pn, "peak_gflops_1t": p1, "cores": CORES}
        if a.baseline:
            out.update(baseline_ms=base, baseline_ms_range=rng(res[w]["baseline"]))
        if diags[w]:
            out["engine_diag"] = [dict(ms=ms, **d) for ms, d in diags[w]]
        if a.json:
            print(json.dumps(out), flush=True)
            continue

        def cell(key):
            m, rg = r[key], rng(res[w][key])
            return f"{m:8.3f} [{rg[0]:.3f}–{rg[1]:.3f}]" if m else f"{'—':>22s}"
        ratio = lambda x: f"{x:5.2f}×" if x else f"{'—':>6s}"
        print(f"{w:8s} {cell('engine'):>22s} {cell('torch'):>22s} {ratio(out['ratio'])} {cell('engine_1t'):>22s} "
              f"{cell('torch_1t'):>22s} {ratio(out['ratio_1t'])} {out['samples_per_s'] or 0:9.0f} "
              f"{out['gflops'] or 0:7.2f} {out['pct_peak'] or 0:5.1f}% {out['pct_peak_1t'] or 0:7.1f}%"
              + (f"   baseline {cell('baseline')} ({base / e:.2f}× the engine's time)" if base and e else ""))
    if a.diag and not a.json:
        print("\nper engine all-core process: ms; sleeps per step (futex or GIL waits) and vCPU of each thread; per "
              "loop: µs from publish to the other thread's first item (wake), whether it slept at publish")
        for w in ids:
            for i, (ms, d) in enumerate(diags[w]):
                th = ", ".join(f"{k} {v['sleeps']:.2f} (vCPU {v['vcpu']})" for k, v in d["threads"].items())
                lp = ", ".join(f"wake {x['wake']} asleep {x['asleep']:.0%} items {x['item_us']}" for x in d["per_loop"])
                v = d.get("vcpus") or {}
                print(f"{w:8s} run {i + 1}: {ms:.3f} ms; sleeps {th}; loops {d['loops']:.1f}: {lp}; GEMM µs on vCPUs "
                      f"{v.get('cpus')} alone {v.get('alone_us')}, together {v.get('together_us')}")
    say(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
