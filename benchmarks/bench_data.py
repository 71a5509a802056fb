"""The data layer at real size, each side in its own process (same file, same run):

  read    a rows × 11 numeric CSV: `layerboard`'s table loader (parse + encode + cache) next to
          pyarrow.csv.read_csv alone; wall time and peak memory (VmHWM) of each process
  cache   a second run on the same file: loading from the cache to the end of the first training step
  train   a second `layerboard train` on the same file (a project with Input "shape": "auto", standardised or
          not): the process from its start to the end of its first training step, imports included
  epoch   one epoch of a small MLP (10 → 16 → 1) over a big-rows dataset read from the cache; peak RssAnon
          (memory not backed by files: memory-mapped pages are not counted), sampled every 20 ms
  series  a window-step series window over series-rows rows, an RNN trained a few batches; peak RSS

    python benchmarks/bench_data.py                              # full sizes (needs ~6 GB of disk)
    python benchmarks/bench_data.py --rows 500000 --big-rows 2000000 --series-rows 3000 --window 1000
    python benchmarks/bench_data.py --only read,cache --json

Generated files are kept in --dir (default: the system's temporary folder) for the next run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---- inside a worker process ----
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Peak:
    """Largest RssAnon seen by a sampling thread (the kernel keeps only the peak of the whole RSS)."""

    def __init__(self):
        self.anon, self._stop = _status("RssAnon"), threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.wait(0.02):
            self.anon = max(self.anon, _status("RssAnon"))

    def done(self):
        self._stop.set()
        self.anon = max(self.anon, _status("RssAnon"))
        return {"peak_rss_mb": _status("VmHWM") / 2**20, "peak_anon_mb": self.anon / 2**20}


def _mlp(n_in, ds, epochs=1, batch=1024, stop_after=None, rnn=False, parts=None):
    from engine.graph import Graph
    from engine.model import Model
    from engine.project import training_config
    from engine.trainer import Trainer
    g = Graph()
    if rnn:
        g.chain(("x", "Input", {"shape": list(ds.x.shape[1:])}), ("r", "RNN", {"units": 8}), ("o", "Dense", {"units": 1}))
    else:
        g.chain(("x", "Input", {"shape": [n_in]}), ("h", "Dense", {"units": 16}), ("a", "ReLU", {}),
                ("o", "Dense", {"units": 1}))
    tr_ds, va_ds = parts or ds.split(0.1 if not rnn else 0.2, 0)
    model = Model(g)
    tr = Trainer(model, training_config({"loss": "mse", "batch_size": batch, "epochs": epochs, "patience": 0,
                                         "validation_split": 0.1}), tr_ds, None if stop_after else va_ds)
    tr.threads = 1
    if stop_after:
        tr.subscribe(lambda ev: ev.kind == "batch_end" and ev.data["batch"] >= stop_after and tr.stop())
    return tr


def _project(path, standardize):
    """A project file (beside the data) training a 10 → 16 → 1 MLP on the CSV with Input shape "auto"."""
    nodes = [{"name": "x", "type": "Input", "config": {"shape": "auto", "standardize": standardize}},
             {"name": "h", "type": "Dense", "config": {"units": 16}}, {"name": "a", "type": "ReLU", "config": {}},
             {"name": "o", "type": "Dense", "config": {"units": 1}}]
    edges = [{"src": a, "dst": b} for a, b in (("x", "h"), ("h", "a"), ("a", "o"))]
    p = Path(path).with_name(f"bench-{'std' if standardize else 'raw'}.json")
    p.write_text(json.dumps({"format": "layerboard-project", "version": 1, "graph": {"nodes": nodes, "edges": edges},
                             "training": {"loss": "mse", "batch_size": 1024, "epochs": 1, "validation_split": 0.1},
                             "dataset": {"kind": "csv", "path": Path(path).name, "target": "y"}}))
    return p


T0 = time.perf_counter()                     # the worker process's start (its imports are in the figures)


def worker(which, path, opts):
    t0 = time.perf_counter()
    peak = Peak()
    out = {}
    if which == "arrow":
        import pyarrow.csv as pcsv
        out["rss_before_mb"] = _status("VmRSS") / 2**20
        t1 = time.perf_counter()
        t = pcsv.read_csv(path)
        out.update(rows=t.num_rows, call_s=time.perf_counter() - t1)
    elif which in ("ours", "cache"):
        from engine.data import load
        import engine.model  # noqa: F401  (numba and the layers imported before the clock starts)
        out["rss_before_mb"] = _status("VmRSS") / 2**20
        t1, cpu1 = time.perf_counter(), time.process_time()
        ds = load({"kind": "csv", "path": path, "target": "y"})
        out.update(rows=len(ds), call_s=time.perf_counter() - t1)
        if which == "cache":
            parts = ds.split(0.1, 0)
            out["to_split_s"] = time.perf_counter() - t1
            tr = _mlp(ds.x.shape[1], ds, stop_after=1, parts=parts)
            out["to_trainer_s"] = time.perf_counter() - t1
            first = []
            tr.subscribe(lambda ev: ev.kind == "batch_end" and not first and
                         first.extend((time.perf_counter(), time.process_time())))
            tr.run()                                    # the trainer's own epoch start (order, targets), one step
            out["to_first_step_s"] = first[0] - t1
            out["cpu_s"] = first[1] - cpu1              # CPU seconds of the process from the load call on
    elif which.startswith("train"):          # `layerboard train` (cmd_train's steps) up to its first training step
        from engine.cli import main as cli        # noqa: F401  (what the command imports before it starts)
        from engine.project import Project
        from engine.session import prepare, warm_context
        out["imports_s"] = time.perf_counter() - T0
        warm_context()
        proj = Project.load(_project(path, which == "train-std"))
        model, tr = prepare(proj)
        out["prepared_s"] = time.perf_counter() - T0
        first = []
        tr.subscribe(lambda ev: ev.kind == "batch_end" and (first.extend((time.perf_counter(), time.process_time())),
                                                              tr.stop()))
        tr.threads = 1
        tr.run()
        out["process_to_first_step_s"] = first[0] - T0
        out["cpu_s"] = first[1]                         # CPU seconds of the process (all its threads) until then
        out["after_imports_s"] = first[0] - T0 - out["imports_s"]
    elif which == "epoch":
        from engine.data import load
        ds = load({"kind": "csv", "path": path, "target": "y"})
        tr = _mlp(ds.x.shape[1], ds, batch=opts["batch"])
        t1 = time.perf_counter()
        r = tr.run()
        out.update(rows=len(ds), epoch_s=time.perf_counter() - t1, train_rmse=r.get("train_rmse"),
                   val_rmse=r.get("val_rmse"))
    elif which == "series":
        from engine.data import load
        ds = load({"kind": "series", "path": path, "target": "temp", "window": opts["window"], "horizon": 1})
        tr = _mlp(0, ds, batch=opts["series_batch"], stop_after=opts["series_batches"], rnn=True)
        from engine.session import describe
        describe(tr.model, tr.train)
        t1 = time.perf_counter()
        tr.run()
        out.update(windows=len(ds), x_shape=list(ds.x.shape), train_s=time.perf_counter() - t1)
    out.update(seconds=time.perf_counter() - t0, **peak.done())
    print(json.dumps(out))


# ---- the driver ----
def generate(path, rows, cols=11, seed=0):
    """rows × cols numbers (10 features and a target y, 4 decimals) as CSV, written in blocks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    w = np.linspace(-1, 1, cols - 1)
    tmp = path.with_suffix(".part")
    with pcsv.CSVWriter(str(tmp), pa.schema([(f"f{i}", pa.float64()) for i in range(cols - 1)] +
                                           [("y", pa.float64())])) as out:
        for i in range(0, rows, 1_000_000):
            k = min(1_000_000, rows - i)
            x = np.round(rng.normal(0, 10, (k, cols - 1)), 4)
            y = np.round(x @ w + rng.normal(0, 1, k), 4)
            out.write_table(pa.table({**{f"f{j}": x[:, j] for j in range(cols - 1)}, "y": y}))
    tmp.rename(path)


def generate_series(path, rows, seed=0):
    import numpy as np
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    h = np.arange(rows)
    temp = 50 + 15 * np.sin(2 * np.pi * h / 24) + np.cumsum(rng.normal(0, 0.3, rows))
    hum = 60 + 20 * np.cos(2 * np.pi * h / 24) + rng.normal(0, 2, rows)
    stamps = (np.datetime64("2013-01-01T00:00") + h.astype("timedelta64[h]")).astype(str)
    with open(path, "w") as f:
        f.write("time,temp,hum\n")
        f.writelines(f"{s.replace('T', ' ')},{t:.2f},{u:.2f}\n" for s, t, u in zip(stamps, temp, hum))


def run(which, path, opts, cache):
    env = dict(os.environ, LAYERBOARD_CACHE=str(cache), PYTHONPATH=str(ROOT))
    env.pop("PYTHONDONTWRITEBYTECODE", None)                 # .pyc files as an installed package has them
    r = subprocess.run([sys.executable, __file__, "--worker", which, str(path), json.dumps(opts)], env=env,
                       capture_output=True, text=True, cwd=str(ROOT))
    if r.returncode:
        raise SystemExit(f"{which} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--big-rows", type=int, default=20_000_000)
    ap.add_argument("--series-rows", type=int, default=30_000)
    ap.add_argument("--window", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1024, help="epoch: batch size")
    ap.add_argument("--series-batch", type=int, default=16)
    ap.add_argument("--series-batches", type=int, default=3)
    ap.add_argument("--only", default="read,cache,train,epoch,series")
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "layerboard-bench-data"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker[0], a.worker[1], json.loads(a.worker[2]))
    import shutil
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    opts = vars(a)
    only = a.only.split(",")
    res = {"load": os.getloadavg()[0]}
    def runs(f, cache, *which):
        """The workers in order on file f with a fresh cache folder (removed afterwards)."""
        shutil.rmtree(cache, ignore_errors=True)
        out = [run(w, f, opts, cache) for w in which]
        shutil.rmtree(cache, ignore_errors=True)
        return out

    if "read" in only or "cache" in only or "train" in only:
        f = d / f"numeric-{a.rows}.csv"
        generate(f, a.rows)
        res["file_mb"] = f.stat().st_size / 2**20
        later = [w for w in ("cache", "train-raw", "train-std") if w.split("-")[0] in only]
        out = runs(f, d / "cache-read", "arrow", "ours", *later)
        res.update(zip(["arrow", "ours"] + later, out))
    if "epoch" in only:
        f = d / f"numeric-{a.big_rows}.csv"
        generate(f, a.big_rows)
        res["big_file_mb"] = f.stat().st_size / 2**20
        res["big_parse"], res["epoch"] = runs(f, d / "cache-epoch", "ours", "epoch")
    if "series" in only:
        f = d / f"series-{a.series_rows}.csv"
        generate_series(f, a.series_rows)
        (res["series"],) = runs(f, d / "cache-series", "series")
    if a.json:
        print(json.dumps(res))
        return
    print(f"load average at start {res['load']:.2f}")
    if "ours" in res:
        o, p = res["ours"], res["arrow"]
        grow = o["peak_rss_mb"] - o["rss_before_mb"]
        print(f"read {a.rows:,} x 11 CSV ({res['file_mb']:.0f} MB): layerboard load {o['call_s']:.2f} s "
              f"(process {o['seconds']:.2f} s), peak RSS {o['peak_rss_mb']:.0f} MB, of which {grow:.0f} MB during "
              f"the load | pyarrow.csv.read_csv {p['call_s']:.2f} s (process {p['seconds']:.2f} s), peak "
              f"{p['peak_rss_mb']:.0f} MB | time ratio {o['call_s'] / p['call_s']:.2f}x (target <= 1.5), "
              f"peak / file {o['peak_rss_mb'] / res['file_mb']:.2f}x, growth / file {grow / res['file_mb']:.2f}x "
              f"(target <= 2)")
    if "cache" in res:
        c = res["cache"]
        print(f"second run from the cache: load {c['call_s']:.3f} s, + split {c['to_split_s']:.3f} s, + model and "
              f"trainer {c['to_trainer_s']:.3f} s, + first training step {c['to_first_step_s']:.3f} s (target < 1; "
              f"CPU {c['cpu_s']:.2f} s), "
              f"process total {c['seconds']:.2f} s, peak RssAnon {c['peak_anon_mb']:.0f} MB")
    for w in ("train-raw", "train-std"):
        if w in res:
            c = res[w]
            print(f"second `layerboard train` ({'Input standardised' if w == 'train-std' else 'raw Input'}): process "
                  f"start to first step done {c['process_to_first_step_s']:.2f} s (CPU {c['cpu_s']:.2f} s), of which "
                  f"imports {c['imports_s']:.2f} s and data, split, model and first step {c['after_imports_s']:.2f} s "
                  f"(target < 1), peak RssAnon {c['peak_anon_mb']:.0f} MB")
    if "epoch" in res:
        b, e = res["big_parse"], res["epoch"]
        print(f"{a.big_rows:,}-row CSV ({res['big_file_mb']:.0f} MB): first read and cache {b['seconds']:.1f} s, "
              f"peak RssAnon {b['peak_anon_mb']:.0f} MB, VmHWM {b['peak_rss_mb']:.0f} MB; one epoch (batch {a.batch}) {e['epoch_s']:.1f} s, "
              f"peak RssAnon {e['peak_anon_mb']:.0f} MB (target < 1024), peak RSS with mapped pages "
              f"{e['peak_rss_mb']:.0f} MB")
    if "series" in res:
        s = res["series"]
        print(f"series window {a.window:,} over {a.series_rows:,} rows ({s['windows']:,} windows of {s['x_shape'][1:]}):"
              f" {a.series_batches} batches of {a.series_batch} in {s['train_s']:.1f} s, peak RSS "
              f"{s['peak_rss_mb']:.0f} MB (target < 400)")


if __name__ == "__main__":
    main()
