"""Warm start: seconds from a new process to the end of its first training step, JIT cache present.

Each example runs in fresh interpreters (the first run fills numba's cache if it is cold and is not reported);
the table splits the time into importing the engine, building model and data, and the first step itself
(issue 26 target: first step within 0.5 s), in wall-clock seconds and in CPU seconds of the process (what the
wall clock would be on an idle core; on a machine shared with other jobs the wall clock also counts waiting
for a core); "main thread" is the main thread's CPU seconds (in `cli` the background set-up is not in it).
Two ways to start:

  plain  the engine used from a script: numba is imported when the session's set-up (prepare) builds the trainer
         (`import engine` alone does not import numba: engine/_jit.py); each kernel is made when it is first used
         and loaded from numba's cache with only numba's runtime set up (engine/_jitload.py), inside the first step
  cli    as `layerboard train` does: engine.session.warm_context() imports numba and sets up its runtime in a
         background thread before the project and data are read, so it overlaps them (the total is what a user
         waits)

Children run with byte-code caching on (as an installed package has .pyc files), whatever
PYTHONDONTWRITEBYTECODE says here.

    python benchmarks/bench_warm_start.py [--runs 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("xor.json", "digits-mlp.json", "digits-cnn.json")

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from engine.session import prepare, warm_context
if sys.argv[2] == "cli":
    warm_context()
from engine.project import Project
from engine.parallel import single_threaded_blas
from resources import path
t1, c1 = time.perf_counter(), time.process_time()
model, tr = prepare(Project.load(path("examples", sys.argv[1])))
ds, bs = tr.train, tr.batch_size
t2, c2 = time.perf_counter(), time.process_time()
with single_threaded_blas():
    tr.train_step(ds.x[:bs], ds.y[:bs])
t3, c3, m3 = time.perf_counter(), time.process_time(), time.thread_time()
print(json.dumps({"import": t1 - t0, "prepare": t2 - t1, "first_step": t3 - t2, "total": t3 - t0,
                  "import_cpu": c1, "prepare_cpu": c2 - c1, "step_cpu": c3 - c2, "cpu": c3, "main_cpu": m3}))
"""


def once(example, mode):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    r = subprocess.run([sys.executable, "-c", CHILD, example, mode], cwd=ROOT, capture_output=True, text=True,
                       check=True, env=env)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; wall-clock seconds, then CPU seconds of the process")
    print(f"{'example':18s} {'start':6s} {'import s':>9s} {'prepare s':>10s} {'first step s':>13s} {'total s':>8s}"
          f" {'import CPU':>10s} {'prepare CPU':>11s} {'step CPU s':>10s} {'total CPU s':>11s} {'main thread':>11s}"
          f"  (median of {a.runs}, alternating)")
    for ex in EXAMPLES:
        once(ex, "plain")                                     # fills the caches if they were cold
        runs = {"plain": [], "cli": []}
        for _ in range(a.runs):
            for mode in runs:
                runs[mode].append(once(ex, mode))
        for mode, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            print(f"{ex:18s} {mode:6s} {med['import']:9.2f} {med['prepare']:10.2f} {med['first_step']:13.2f} "
                  f"{med['total']:8.2f} {med['import_cpu']:10.2f} {med['prepare_cpu']:11.2f} {med['step_cpu']:10.2f} "
                  f"{med['cpu']:11.2f} {med['main_cpu']:11.2f}")


if __name__ == "__main__":
    main()
