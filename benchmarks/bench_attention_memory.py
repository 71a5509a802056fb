"""Peak memory of self-attention training at long T, each case in a fresh process (issue 26).

    python benchmarks/bench_attention_memory.py [--cases long,many,mid] [--root SOURCE_TREE] [--threads 2]
                                                [--eval-batch N]

Model: x (T, 64) → MultiHeadSelfAttention (4 heads) → Add(x, ·) → LayerNorm → TimePool mean → Dense 10 → Softmax,
float32, Adam, softmax cross-entropy, on random data; the cross case puts CrossAttention (4 heads; queries x, keys and
values e = Dense 64(x), so S = T) in the attention's place. Cases:
  long  T = 8,192, batch 8: one training step (target: under 1 GB peak)
  many  T = 2,048, 640 samples: one epoch in batches of 32, then Trainer.evaluate on all 640 (target: under 2 GB)
  mid   T = 2,048, batch 8: one training step (small enough to compare with the T×T engine via --root)
  cross T = S = 8,192, batch 8: one training step of the CrossAttention model
Peak memory is the process's VmHWM (peak resident set, libraries included); "base" is VmRSS after the imports,
before any array is made. --root runs another source tree's engine (e.g. a `git archive` of main).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {"long": (8192, 8, 8, False), "many": (2048, 640, 32, True), "mid": (2048, 8, 8, False),   # T, N, batch,
         "cross": (8192, 8, 8, False)}                                                             # eval

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
T, N, bs, ev, threads, ebs = (int(a) for a in sys.argv[2:8])
cross = sys.argv[8] == "cross"

def status(key):
    for ln in open("/proc/self/status"):
        if ln.startswith(key + ":"):
            return int(ln.split()[1]) / 1024                       # MB
import numpy as np
from engine import Graph
from engine.data import Dataset
from engine.model import Model
from engine.parallel import thread_limits
from engine.project import training_config
from engine.trainer import Trainer
base = status("VmRSS")
g = Graph()
if cross:                                                          # queries x, keys and values Dense 64(x)
    g.chain(("x", "Input", {"shape": [T, 64]}), ("enc", "Dense", {"units": 64}))
    g.add_node("CrossAttention", "att", {"heads": 4})
    g.connect("x", "att")
    g.connect("enc", "att", 1)
else:
    g.chain(("x", "Input", {"shape": [T, 64]}), ("att", "MultiHeadSelfAttention", {"heads": 4}))
g.add_node("Add", "res")
g.connect("x", "res")
g.connect("att", "res")
g.chain(("ln", "LayerNorm", {}), ("pool", "TimePool", {"mode": "mean"}), ("out", "Dense", {"units": 10}),
        ("sm", "Softmax", {}), after="res")
rng = np.random.default_rng(0)
x = rng.normal(0, 1, (N, T, 64)).astype(np.float32)
y = rng.integers(0, 10, N)
m = Model(g, dtype=np.float32, seed=0)
data = Dataset(x, y, "multiclass", "attention memory", [str(i) for i in range(10)])
tr = Trainer(m, training_config({"loss": "cce", "optimizer": "adam", "lr": 1e-3, "batch_size": bs}), data)
out = {"layer": type(m.layers["att"]).__name__, "T": T, "samples": N, "batch": bs, "threads": threads, "base_mb": base}
with thread_limits(threads):
    t = time.perf_counter()
    for i in range(0, N, bs):
        tr.train_step(x[i:i + bs], y[i:i + bs])
    out["train_s"] = time.perf_counter() - t
    out["train_peak_mb"] = status("VmHWM")
    if ev:
        t = time.perf_counter()
        loss, acc = tr.evaluate(data, **({"batch_size": ebs} if ebs else {}))
        out["eval_s"] = time.perf_counter() - t
        out["eval_loss"] = float(loss)
        out["eval_batch"] = ebs or "Trainer.evaluate's default"
out["peak_mb"] = status("VmHWM")
out["rss_anon_mb"] = status("RssAnon")
print(json.dumps(out))
"""


def run(case, root, threads, eval_batch=0):
    T, N, bs, ev = CASES[case]
    r = subprocess.run([sys.executable, "-c", CHILD, str(root), str(T), str(N), str(bs), str(int(ev)), str(threads),
                        str(eval_batch), case],
                       cwd=str(root), capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return {"case": case, "failed": f"{tail} (exit status {r.returncode})"}
    return {"case": case, **json.loads(r.stdout.strip().splitlines()[-1])}


def main(argv=None):
    import os
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="long,many")
    ap.add_argument("--root", default=str(ROOT), help="source tree whose engine runs (default: this one)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--eval-batch", type=int, default=0, help="batch size of the evaluation (default: the trainer's)")
    a = ap.parse_args(argv)
    print(f"engine {a.root}; load average {os.getloadavg()[0]:.2f}")
    for case in a.cases.split(","):
        r = run(case.strip(), Path(a.root), a.threads, a.eval_batch)
        print(json.dumps(r), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
