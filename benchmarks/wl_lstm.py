"""Workload f (issue 22): LSTM (input 32, hidden 128, T = 64), last state → Dense(128→1), MSE, batch 64, Adam lr 1e-3;
one step = zero grads + forward + loss + backward + step. Timed by bench.py:

    python benchmarks/bench.py --only f
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

T, D, H, B = 64, 32, 128, 64
# per step, counted by hand (torch's flop counter does not see aten::lstm): forward 2·T·B·4H·(D+H) = 671 MFLOP,
# backward twice that (∂x, ∂h_{t−1}, ∂W_ih, ∂W_hh), the head and Adam negligible
FLOP = 3 * 2 * T * B * 4 * H * (D + H)


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (B, T, D)).astype(np.float32), rng.normal(0, 1, (B, 1)).astype(np.float32)


def engine_step():
    """Trainer.train_step on a Model built from a Graph (every step full length: no mask)."""
    from engine import Graph
    from engine.data import Dataset
    from engine.model import Model
    from engine.project import training_config
    from engine.trainer import Trainer
    x, y = batch()
    g = Graph()
    g.chain(("x", "Input", {"shape": [T, D]}), ("lstm", "LSTM", {"units": H}), ("out", "Dense", {"units": 1}))
    m = Model(g, dtype=np.float32, seed=0)
    tr = Trainer(m, training_config({"loss": "mse", "optimizer": "adam", "lr": 1e-3, "batch_size": B}),
                 Dataset(x, y, "regression", "workload f"))
    step = lambda: tr.train_step(x, y)
    step.trainer = tr                                  # bench.py applies the trainer's thread choice
    return step


def torch_step():
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    nn = torch.nn
    lstm, head = nn.LSTM(D, H, batch_first=True), nn.Linear(H, 1)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-3)
    xn, yn = batch()
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)
    lossf = nn.MSELoss()

    def step():
        opt.zero_grad()
        _, (hn, _) = lstm(x)
        lossf(head(hn[0]), y).backward()
        opt.step()
    return step


WORKLOADS = {"f": (engine_step, torch_step, FLOP, B)}     # discovered by benchmarks/bench.py
