"""Workload d of shared/reference/benchmark-workloads.md: plain tanh RNN (input 8, hidden 64, T = 50), last
state → Dense(64→1), MSE, batch 32, Adam lr 1e-3; one step = zero grads + forward + loss + backward + step.

    python benchmarks/wl_rnn.py               # alternate engine / torch (default threads) / torch (1 thread),
                                              # each in its own process, and print the medians and ratios
    python benchmarks/wl_rnn.py engine|torch [threads]   # one side in this process: ms/step of one block set
"""
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import Graph  # noqa: E402
from engine.data import Dataset  # noqa: E402
from engine.model import Model  # noqa: E402
from engine.project import training_config  # noqa: E402
from engine.trainer import Trainer, single_threaded_blas  # noqa: E402

T, D, H, B = 50, 8, 64, 32


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (B, T, D)).astype(np.float32), rng.normal(0, 1, (B, 1)).astype(np.float32)


def engine_step():
    """Trainer.train_step on a Model built from a Graph (every step full length: no mask)."""
    x, y = batch()
    g = Graph()
    g.chain(("x", "Input", {"shape": [T, D]}), ("rnn", "RNN", {"units": H}), ("out", "Dense", {"units": 1}))
    m = Model(g, dtype=np.float32, seed=0)
    tr = Trainer(m, training_config({"loss": "mse", "optimizer": "adam", "lr": 1e-3, "batch_size": B}),
                 Dataset(x, y, "regression", "workload d"))
    return lambda: tr.train_step(x, y)


def torch_step():
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    nn = torch.nn
    rnn, head = nn.RNN(D, H, batch_first=True), nn.Linear(H, 1)
    opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=1e-3)
    xn, yn = batch()
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)
    lossf = nn.MSELoss()

    def step():
        opt.zero_grad()
        _, hn = rnn(x)
        lossf(head(hn[0]), y).backward()
        opt.step()
    return step


def workloads():
    return {"d": (engine_step(), torch_step())}


def time_side(side, threads=None, blocks=15, block=0.2):
    """Median ms/step over blocks of about `block` seconds, after warm-up, in this process."""
    if side == "torch":
        import torch
        if threads:
            torch.set_num_threads(threads)
        fn = torch_step()
        ctx = None
    else:
        fn = engine_step()
        ctx = single_threaded_blas()
        ctx.__enter__()
    for _ in range(20):
        fn()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.3:
        fn()
        n += 1
    per = max(1, int(block / ((time.perf_counter() - t0) / n)))
    meds = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(per):
            fn()
        meds.append((time.perf_counter() - t0) / per * 1e3)
    return statistics.median(meds)


def main():
    if len(sys.argv) > 1:
        print(f"{time_side(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None):.4f}")
        return
    runs = {"engine": [], "torch": [], "torch-1": []}
    for _ in range(3):                                   # alternate, each side in a fresh process
        for key, args in (("engine", ["engine"]), ("torch", ["torch"]), ("torch-1", ["torch", "1"])):
            out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
            runs[key].append(float(out.stdout.split()[-1]))
    med = {k: statistics.median(v) for k, v in runs.items()}
    flop = 42.4e6
    for k, v in med.items():
        print(f"d {k:8s} {v:7.3f} ms/step  {B / v * 1e3:8.0f} samples/s  {flop / v / 1e6:5.1f} GFLOP/s   runs {runs[k]}")
    print(f"ratio torch/engine: {med['torch'] / med['engine']:.2f}× (default threads), "
          f"{med['torch-1'] / med['engine']:.2f}× (1 thread)")


if __name__ == "__main__":
    main()
