"""Built-in datasets that need no download: XOR, moons, circles, spirals, 8×8 digits, 28×28 MNIST digits."""
import numpy as np

from .dataset import Dataset


def xor(**_):
    """The four XOR points (spec §1's 2-2-1 example)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    return Dataset(x, np.array([0, 1, 1, 0]), "binary", "xor")


def moons(n=400, noise=0.1, seed=0):
    """Two interleaving half circles."""
    rng = np.random.default_rng(seed)
    a, b = n // 2, n - n // 2
    t0, t1 = np.linspace(0, np.pi, a), np.linspace(0, np.pi, b)
    x = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], np.c_[1 - np.cos(t1), 0.5 - np.sin(t1)]])
    x += rng.normal(0, noise, x.shape)
    return Dataset(x, np.r_[np.zeros(a), np.ones(b)], "binary", "moons")


def circles(n=400, noise=0.05, factor=0.5, seed=0):
    """A small circle inside a large one."""
    rng = np.random.default_rng(seed)
    a, b = n // 2, n - n // 2
    t0, t1 = np.linspace(0, 2 * np.pi, a, endpoint=False), np.linspace(0, 2 * np.pi, b, endpoint=False)
    x = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], factor * np.c_[np.cos(t1), np.sin(t1)]])
    x += rng.normal(0, noise, x.shape)
    return Dataset(x, np.r_[np.zeros(a), np.ones(b)], "binary", "circles")


def spirals(n=600, classes=3, noise=0.2, seed=0):
    """Interleaved spiral arms, one class per arm."""
    rng = np.random.default_rng(seed)
    per = n // classes
    r = np.tile(np.linspace(0.0, 1.0, per), classes)
    c = np.repeat(np.arange(classes), per)
    t = c * 2 * np.pi / classes + r * 4.0 + rng.normal(0, noise, per * classes)
    return Dataset(np.c_[r * np.sin(t), r * np.cos(t)], c, "multiclass", "spirals")


def digits(flat=True, **_):
    """1,797 real handwritten digits, 8×8 pixels scaled to [0, 1] (UCI, CC BY 4.0)."""
    from resources import path
    with np.load(path("data", "digits8x8.npz"), allow_pickle=False) as f:
        x, y = f["x"].astype(np.float32) / 16.0, f["y"].astype(np.int64)
    x = x.reshape(len(x), 64) if flat else x[:, None]       # (N, 64) or (N, 1, 8, 8)
    return Dataset(x, y, "multiclass", "digits")


def mnist(flat=False, **_):
    """10,000 real MNIST handwritten digits, 28×28 pixels scaled to [0, 1] (CC BY-SA 3.0)."""
    from resources import path
    with np.load(path("data", "mnist10k.npz"), allow_pickle=False) as f:
        x, y = f["x"].astype(np.float32) / 255.0, f["y"].astype(np.int64)
    x = x.reshape(len(x), 784) if flat else x[:, None]      # (N, 784) or (N, 1, 28, 28)
    return Dataset(x, y, "multiclass", "mnist")


BUILTINS = {"xor": xor, "moons": moons, "circles": circles, "spirals": spirals, "digits": digits, "mnist": mnist}


def reverse(n=4000, symbols=10, max_len=10, min_len=3, seed=0):
    """Toy translation: a sequence of symbol tokens → the same tokens reversed, lengths varying in [min_len, max_len].

    x (n, max_len) token ids (0 = padding, 1 = <unk> unused, symbols 2 … symbols+1), lengths (n,),
    y (n, max_len) per-step targets: y[i, t] = x[i, L_i − 1 − t] for t < L_i."""
    if not 1 <= min_len <= max_len:
        from ..errors import DataError
        raise DataError(f"reverse: need 1 ≤ min_len ≤ max_len, got min_len {min_len}, max_len {max_len}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, n)
    steps = np.arange(max_len)[None, :]
    valid = steps < lengths[:, None]                                          # (n, T)
    x = np.where(valid, rng.integers(2, symbols + 2, (n, max_len)), 0)        # (n, T)
    src = np.clip(lengths[:, None] - 1 - steps, 0, max_len - 1)               # L − 1 − t
    y = np.where(valid, np.take_along_axis(x, src, axis=1), 0)
    vocab = ["<pad>", "<unk>"] + [chr(ord("a") + i) if i < 26 else f"s{i}" for i in range(symbols)]
    return Dataset(x.astype(np.float32), y, "multiclass", "reverse", list(vocab), lengths=lengths, vocab=vocab)


BUILTINS["reverse"] = reverse
