"""Workloads c and c-infer (shared/reference/benchmark-workloads.md): one step each, engine and PyTorch.

The engine and PyTorch are built by separate functions, each run in its own process by bench.py."""
import numpy as np

B = 64
FLOP_TRAIN, FLOP_INFER = 120.7e6, 42.6e6        # torch's flop counter (benchmark-workloads.md)


def cnn_graph():
    """Conv(1→8,3×3,pad 1)-BN-ReLU-MaxPool2 - Conv(8→16,3×3,pad 1)-BN-ReLU-MaxPool2 - Flatten - Dense 64 - Dense 10."""
    from engine import Graph
    g = Graph()
    specs = [("x", "Input", {"shape": [1, 28, 28]}),
             ("c1", "Conv2D", {"filters": 8, "padding": "explicit", "pad": [1]}), ("bn1", "BatchNorm", {}),
             ("r1", "ReLU", {}), ("p1", "MaxPool2D", {}),
             ("c2", "Conv2D", {"filters": 16, "padding": "explicit", "pad": [1]}), ("bn2", "BatchNorm", {}),
             ("r2", "ReLU", {}), ("p2", "MaxPool2D", {}),
             ("f", "Flatten", {}), ("d1", "Dense", {"units": 64}), ("r3", "ReLU", {}),
             ("d2", "Dense", {"units": 10}), ("sm", "Softmax", {})]
    g.chain(*specs)
    return g


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (B, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, B)


def engine_callables(graph=cnn_graph, make_batch=batch, name="workload c"):
    """(train step, inference forward) on the engine: Trainer.train_step, the code real training runs."""
    from engine.data import Dataset
    from engine.model import Model
    from steps import adam_step
    m = Model(graph(), dtype=np.float32, seed=0)
    x, y = make_batch()
    data = Dataset(x, y, "multiclass", name, [str(i) for i in range(10)])
    return adam_step(m, data, "cce", len(x), (x, y)), (lambda: m.forward(x))


def torch_net():
    import torch
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def torch_step(make_net=torch_net, make_batch=batch):
    import torch
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xn, yn = make_batch()
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)

    def step():
        net.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def torch_infer(make_net=torch_net, make_batch=batch):
    import torch
    net = make_net()
    x = torch.from_numpy(make_batch()[0])

    def infer():
        net.eval()
        with torch.no_grad():
            return torch.softmax(net(x), dim=1)
    return infer


WORKLOADS = {"c": (lambda: engine_callables()[0], torch_step, FLOP_TRAIN, B),
             "c-infer": (lambda: engine_callables()[1], torch_infer, FLOP_INFER, B)}
