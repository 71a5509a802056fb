"""Workloads a (XOR 2-2-1) and b (MLP 64-128-64-10) of shared/reference/benchmark-workloads.md: one step each.

The engine and PyTorch are built by separate functions, each run in its own process by bench.py."""
import numpy as np

# id -> (layers after the Input as (type, config), input features, batch, loss)
SPECS = {
    "a": ([("Dense", {"units": 2}), ("ReLU", {}), ("Dense", {"units": 1}), ("Sigmoid", {})], 2, 4, "bce"),
    "b": ([("Dense", {"units": 128}), ("ReLU", {}), ("Dense", {"units": 64}), ("ReLU", {}),
           ("Dense", {"units": 10}), ("Softmax", {})], 64, 64, "cce"),
}


def graph(layers, features):
    """A chain Input → layers."""
    from engine import Graph
    g = Graph()
    g.chain(("x", "Input", {"shape": [features]}), *((f"l{i}", t, c) for i, (t, c) in enumerate(layers)))
    return g


def batch(wl, seed=0):
    layers, f, b, loss = SPECS[wl]
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (b, f)).astype(np.float32)
    return x, rng.integers(0, 2 if loss == "bce" else 10, b)       # int64 class ids, as a Dataset holds them


def flop(wl):
    """FLOP per training step as torch's flop counter counts them: 2·MACs of every matmul, forward and backward
    (dx is not needed for the first layer)."""
    layers, f, b, _ = SPECS[wl]
    total, prev, first = 0, f, True
    for t, c in layers:
        if t == "Dense":
            macs = b * prev * c["units"]
            total += 2 * macs * (2 if first else 3)
            prev, first = c["units"], False
    return total


def engine_step(wl):
    """Trainer.train_step on a Model built from a Graph: the code real training runs."""
    from engine.data import Dataset
    from engine.model import Model
    from steps import adam_step
    layers, f, b, loss = SPECS[wl]
    x, y = batch(wl)
    m = Model(graph(layers, f), dtype=np.float32, seed=0)
    data = Dataset(x, y, "binary" if loss == "bce" else "multiclass", f"workload {wl}",
                   [str(i) for i in range(2 if loss == "bce" else 10)])
    return adam_step(m, data, loss, b, (x, y))


def torch_step(wl):
    import torch
    nn = torch.nn
    torch.manual_seed(0)
    layers, f, b, loss = SPECS[wl]
    mods, prev = [], f
    for t, c in layers[:-1]:                              # the head activation is fused into the loss
        if t == "Dense":
            mods.append(nn.Linear(prev, c["units"]))
            prev = c["units"]
        else:
            mods.append(nn.ReLU())
    net = nn.Sequential(*mods)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xn, yn = batch(wl)
    x = torch.from_numpy(xn)
    y = torch.from_numpy(yn.astype(np.float32).reshape(-1, 1)) if loss == "bce" else torch.from_numpy(yn)
    lossf = nn.BCEWithLogitsLoss() if loss == "bce" else nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        lossf(net(x), y).backward()
        opt.step()
    return step


WORKLOADS = {wl: (lambda wl=wl: engine_step(wl), lambda wl=wl: torch_step(wl), flop(wl), SPECS[wl][2])
             for wl in SPECS}
