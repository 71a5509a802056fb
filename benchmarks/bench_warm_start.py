"""Warm start: seconds from a new process to the end of its first training step, JIT cache present.

Each example runs in fresh interpreters (the first run fills numba's cache if it is cold and is not
reported); the table splits the time into importing the engine, building model and data, and the
first step itself (target: first step under 1 s).

    python benchmarks/bench_warm_start.py [--runs 3]
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("xor.json", "digits-mlp.json", "digits-cnn.json")

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from engine.project import Project
from engine.session import prepare
from engine.parallel import single_threaded_blas
from resources import path
t1 = time.perf_counter()
model, tr = prepare(Project.load(path("examples", sys.argv[1])))
ds, bs = tr.train, tr.batch_size
t2 = time.perf_counter()
with single_threaded_blas():
    tr.train_step(ds.x[:bs], ds.y[:bs])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "prepare": t2 - t1, "first_step": t3 - t2, "total": t3 - t0}))
"""


def once(example):
    r = subprocess.run([sys.executable, "-c", CHILD, example], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    print(f"{'example':18s} {'import s':>9s} {'prepare s':>10s} {'first step s':>13s} {'total s':>8s}  (median of {a.runs})")
    for ex in EXAMPLES:
        once(ex)                                              # fills the cache if it was cold
        runs = [once(ex) for _ in range(a.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{ex:18s} {med['import']:9.2f} {med['prepare']:10.2f} {med['first_step']:13.2f} {med['total']:8.2f}")


if __name__ == "__main__":
    main()
