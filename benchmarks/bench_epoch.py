"""Epoch time of `layerboard train resources/examples/digits-cnn.json` next to a PyTorch epoch of the same
model on the same data (same split, batch 64, Adam, same augmentation function), each side in its own
process, alternating; the engine at its headless default (all cores) and --threads 1, PyTorch at its
default threads and at 1.

    python benchmarks/bench_epoch.py [--epochs 2] [--reps 2] [--json]

An epoch is every training step of the epoch plus the validation pass, as `train --json` reports it
(`elapsed` at each epoch end); the first epoch also pays for loading numba's cached kernels.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "resources" / "examples" / "digits-cnn.json"

TORCH = r"""
import json, sys, time
import numpy as np
import torch
sys.path.insert(0, {root!r})
from engine.data import augment
d = np.load({data!r})
cfg = json.loads({cfg!r})
if {threads}:
    torch.set_num_threads({threads})
nn = torch.nn
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))
decay = [p for n, p in net.named_parameters() if n.endswith("weight") and p.dim() > 1]
rest = [p for n, p in net.named_parameters() if not (n.endswith("weight") and p.dim() > 1)]
opt = torch.optim.Adam([{{"params": decay, "weight_decay": cfg["weight_decay"]}}, {{"params": rest}}], lr=cfg["lr"])
aug = augment.make(cfg["augment"]) if cfg["augment"] else None
xt, yt, xv, yv = d["xt"], d["yt"], torch.from_numpy(d["xv"]), torch.from_numpy(d["yv"])
rng = np.random.default_rng(0)
bs = cfg["batch_size"]
t0 = time.perf_counter()
for epoch in range(1, {epochs} + 1):
    net.train()
    idx = rng.permutation(len(xt))
    for b in range(0, len(xt), bs):
        j = idx[b:b + bs]
        xb = xt[j]
        if aug is not None:
            xb = aug(xb, rng)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(torch.from_numpy(np.ascontiguousarray(xb))), torch.from_numpy(yt[j]))
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc = sum(int((net(xv[i:i + 512]).argmax(1) == yv[i:i + 512]).sum()) for i in range(0, len(xv), 512))
    print(json.dumps({{"epoch": epoch, "elapsed": time.perf_counter() - t0, "val_accuracy": acc / len(xv)}}),
          flush=True)
"""


def split_data(tmp):
    """The project's training/validation split as the engine makes it, saved for the PyTorch process."""
    sys.path.insert(0, str(ROOT))
    from engine.project import Project
    from engine.session import config
    from engine.data import load
    p = Project.load(str(PROJECT))
    cfg = config(p)
    train, val = load(p.dataset, p.base).split(cfg["validation_split"], cfg["seed"])
    path = os.path.join(tmp, "digits.npz")
    np = __import__("numpy")
    np.savez(path, xt=train.x.astype(np.float32), yt=train.y.astype(np.int64), xv=val.x.astype(np.float32),
             yv=val.y.astype(np.int64))
    return path, {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"], "batch_size": cfg["batch_size"],
                  "augment": p.dataset.get("augment")}, len(train), len(val)


def epochs_of(lines):
    """Per-epoch seconds from cumulative `elapsed` values."""
    el = [json.loads(ln)["elapsed"] for ln in lines if ln.startswith("{") and '"epoch"' in ln and '"elapsed"' in ln]
    return [b - a for a, b in zip([0.0] + el, el)]


def run_engine(epochs, threads):
    cmd = [sys.executable, "-m", "engine.cli", "train", str(PROJECT), "--epochs", str(epochs), "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    if r.returncode not in (0, 1):
        raise SystemExit(f"engine run failed: {r.stderr.strip()[-500:]}")
    return epochs_of(r.stdout.splitlines())


def run_torch(epochs, threads, data, cfg):
    code = TORCH.format(root=str(ROOT), data=data, cfg=json.dumps(cfg), threads=threads, epochs=epochs)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    if r.returncode != 0:
        raise SystemExit(f"torch run failed: {r.stderr.strip()[-500:]}")
    return epochs_of(r.stdout.splitlines())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data, cfg, nt, nv = split_data(tmp)
        sides = {"engine": lambda: run_engine(a.epochs, 0), "torch": lambda: run_torch(a.epochs, 0, data, cfg),
                 "engine_1t": lambda: run_engine(a.epochs, 1), "torch_1t": lambda: run_torch(a.epochs, 1, data, cfg)}
        res = {k: [] for k in sides}
        for rep in range(a.reps):
            for k, fn in sides.items():                       # alternating, one fresh process each
                res[k].append(fn())
            print(f"  repetition {rep + 1}/{a.reps} done (load average {os.getloadavg()[0]:.2f})", file=sys.stderr)
    out = {"project": "digits-cnn", "train_samples": nt, "val_samples": nv, "cores": os.cpu_count()}
    for k, runs in res.items():
        first = [r[0] for r in runs if r]
        later = [e for r in runs for e in (r[1:] if len(r) > 1 else r)]   # one epoch only: that one
        out[f"{k}_first_epoch_s"] = statistics.median(first) if first else None
        out[f"{k}_epoch_s"] = statistics.median(later) if later else None
        out[f"{k}_epoch_s_range"] = (min(later), max(later)) if later else None
    if a.json:
        print(json.dumps(out))
        return
    print(f"digits-cnn: {nt} training + {nv} validation samples per epoch, {os.cpu_count()} cores, "
          f"median of {a.reps} alternating runs (epochs after the first; range in brackets)")
    for k, label in (("engine", "engine, all cores (train default)"), ("torch", "PyTorch, default threads"),
                     ("engine_1t", "engine, --threads 1"), ("torch_1t", "PyTorch, 1 thread")):
        e, rg, f = out[f"{k}_epoch_s"], out[f"{k}_epoch_s_range"], out[f"{k}_first_epoch_s"]
        print(f"  {label:36s} {e:7.2f} s/epoch [{rg[0]:.2f}–{rg[1]:.2f}]   first epoch {f:.2f} s")
    print(f"  ratio torch/engine: {out['torch_epoch_s'] / out['engine_epoch_s']:.2f}× (default threads), "
          f"{out['torch_1t_epoch_s'] / out['engine_1t_epoch_s']:.2f}× (1 thread)")


if __name__ == "__main__":
    main()
