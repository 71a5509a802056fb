"""Workloads h and h-infer (issue 26): a ResNet-8-style CNN on 3×32×32, batch 128, one step each, engine and PyTorch.

conv 3×3 16 - BN - ReLU, then three residual stages of one basic block each (16, 32, 64 channels; the 32 and 64
stages start with stride 2 and a 1×1 stride-2 projection + BN on the shortcut, as torchvision's ResNet does):
    block: conv 3×3 (stride) - BN - ReLU - conv 3×3 - BN, + shortcut, ReLU
then global average pool, Dense 10, softmax cross-entropy, Adam lr 1e-3. Convolutions have no bias (BN follows).
The engine and PyTorch are built by separate functions, each run in its own process by bench.py.
"""
import numpy as np
import wl_cnn

B, CLASSES = 128, 10
STAGES = ((16, 1), (32, 2), (64, 2))               # (channels, stride of the first conv)
FLOP_TRAIN, FLOP_INFER = 9.488e9, 3.200e9           # per step, torch.utils.flop_counter (see flops() below)


def resnet_graph():
    """The engine graph: c0, bn0, r0; per stage i: s{i}c1 s{i}bn1 s{i}r1 s{i}c2 s{i}bn2, projection s{i}p s{i}pb,
    s{i}add, s{i}r; then gap, fc, sm."""
    from engine import Graph
    g = Graph()

    def conv(name, filters, stride=1, k=3):
        pad = {"padding": "explicit", "pad": [1]} if k == 3 else {"padding": "valid"}
        return (name, "Conv2D", {"filters": filters, "kernel_size": [k], "stride": [stride], "use_bias": False, **pad})
    prev = g.chain(("x", "Input", {"shape": [3, 32, 32]}), conv("c0", 16), ("bn0", "BatchNorm", {}),
                   ("r0", "ReLU", {}))
    cin = 16
    for i, (c, s) in enumerate(STAGES, 1):
        main = g.chain(conv(f"s{i}c1", c, s), (f"s{i}bn1", "BatchNorm", {}), (f"s{i}r1", "ReLU", {}),
                       conv(f"s{i}c2", c), (f"s{i}bn2", "BatchNorm", {}), after=prev)
        short = prev if (s == 1 and cin == c) else g.chain(conv(f"s{i}p", c, s, k=1), (f"s{i}pb", "BatchNorm", {}),
                                                             after=prev)
        g.add_node("Add", f"s{i}add")
        g.connect(main, f"s{i}add")
        g.connect(short, f"s{i}add")
        prev = g.chain((f"s{i}r", "ReLU", {}), after=f"s{i}add")
        cin = c
    g.chain(("gap", "GlobalAveragePool", {}), ("fc", "Dense", {"units": CLASSES}), ("sm", "Softmax", {}), after=prev)
    return g


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (B, 3, 32, 32)).astype(np.float32), rng.integers(0, CLASSES, B)


def engine_callables():
    """(train step, inference forward) on the engine: Trainer.train_step, the code real training runs."""
    return wl_cnn.engine_callables(resnet_graph, batch, "workload h")


def torch_net():
    import torch
    nn = torch.nn
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin, c, s):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, c, 3, s, 1, bias=False), nn.BatchNorm2d(c)
            self.c2, self.b2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
            self.proj = None if (s == 1 and cin == c) else nn.Sequential(nn.Conv2d(cin, c, 1, s, bias=False),
                                                                          nn.BatchNorm2d(c))

        def forward(self, x):
            h = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(h + (x if self.proj is None else self.proj(x)))

    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for c, s in STAGES:
        layers.append(Block(cin, c, s))
        cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, CLASSES)]
    return nn.Sequential(*layers)


def torch_step():
    return wl_cnn.torch_step(torch_net, batch)


def torch_infer():
    return wl_cnn.torch_infer(torch_net, batch)


def flops():
    """(train step, inference) FLOP as torch's flop counter counts them (how FLOP_TRAIN / FLOP_INFER were made)."""
    from torch.utils.flop_counter import FlopCounterMode
    out = []
    for fn in (torch_step(), torch_infer()):
        with FlopCounterMode(display=False) as fc:
            fn()
        out.append(fc.get_total_flops())
    return tuple(out)


WORKLOADS = {"h": (lambda: engine_callables()[0], torch_step, FLOP_TRAIN, B),
             "h-infer": (lambda: engine_callables()[1], torch_infer, FLOP_INFER, B)}

if __name__ == "__main__":
    print(flops())
