"""Built-in datasets that need no download: XOR, moons, circles, spirals, 8×8 digits, 28×28 MNIST digits."""
import functools

import numpy as np

from ..errors import ConfigError, DataError
from ..hparams import HP
from .dataset import Dataset

N = HP("n", "int", 400, min=4, max=1_000_000, doc="Number of samples")
NOISE = HP("noise", "float", 0.1, min=0.0, max=10.0, doc="Standard deviation of the Gaussian noise")
SEED = HP("seed", "int", 0, min=0, max=2**32 - 1, doc="Seed of the noise")
FLAT = HP("flat", "bool", True, doc="Samples as vectors (true) or as 1-channel images (false)")


def options(*hps):
    """Decorator: the dataset's options checked against their declarations (a DataError names the bad one)."""
    def wrap(fn):
        @functools.wraps(fn)
        def load(**opts):
            known = {h.name: h for h in hps}
            bad = sorted(set(opts) - set(known))
            if bad:
                raise DataError(f"the built-in dataset '{fn.__name__}' has no option {bad[0]!r}; it takes "
                                f"{', '.join(known) or 'none'}")
            try:
                return fn(**{h.name: h.check(opts.get(h.name, h.default), f"built-in dataset '{fn.__name__}'")
                             for h in hps})
            except ConfigError as e:
                raise DataError(str(e)) from None
        load.options = hps
        return load
    return wrap


@options()
def xor():
    """The four XOR points (spec §1's 2-2-1 example)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    return Dataset(x, np.array([0, 1, 1, 0]), "binary", "xor")


@options(N, NOISE, SEED)
def moons(n, noise, seed):
    """Two interleaving half circles."""
    rng = np.random.default_rng(seed)
    a, b = n // 2, n - n // 2
    t0, t1 = np.linspace(0, np.pi, a), np.linspace(0, np.pi, b)
    x = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], np.c_[1 - np.cos(t1), 0.5 - np.sin(t1)]])
    x += rng.normal(0, noise, x.shape)
    return Dataset(x, np.r_[np.zeros(a), np.ones(b)], "binary", "moons")


@options(N, HP("noise", "float", 0.05, min=0.0, max=10.0, doc=NOISE.doc),
         HP("factor", "float", 0.5, min=0.0, max=1.0, doc="Radius of the inner circle"), SEED)
def circles(n, noise, factor, seed):
    """A small circle inside a large one."""
    rng = np.random.default_rng(seed)
    a, b = n // 2, n - n // 2
    t0, t1 = np.linspace(0, 2 * np.pi, a, endpoint=False), np.linspace(0, 2 * np.pi, b, endpoint=False)
    x = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], factor * np.c_[np.cos(t1), np.sin(t1)]])
    x += rng.normal(0, noise, x.shape)
    return Dataset(x, np.r_[np.zeros(a), np.ones(b)], "binary", "circles")


@options(HP("n", "int", 600, min=4, max=1_000_000, doc=N.doc),
         HP("classes", "int", 3, min=2, max=100, doc="Number of arms, one class each"),
         HP("noise", "float", 0.2, min=0.0, max=10.0, doc=NOISE.doc), SEED)
def spirals(n, classes, noise, seed):
    """Interleaved spiral arms, one class per arm."""
    if n < 2 * classes:
        raise DataError(f"the built-in dataset 'spirals' needs n ≥ 2 per class: n = {n} for {classes} classes")
    rng = np.random.default_rng(seed)
    per = n // classes
    r = np.tile(np.linspace(0.0, 1.0, per), classes)
    c = np.repeat(np.arange(classes), per)
    t = c * 2 * np.pi / classes + r * 4.0 + rng.normal(0, noise, per * classes)
    return Dataset(np.c_[r * np.sin(t), r * np.cos(t)], c, "multiclass", "spirals")


@options(FLAT)
def digits(flat):
    """1,797 real handwritten digits, 8×8 pixels scaled to [0, 1] (UCI, CC BY 4.0)."""
    from resources import path
    with np.load(path("data", "digits8x8.npz"), allow_pickle=False) as f:
        x, y = f["x"].astype(np.float32) / 16.0, f["y"].astype(np.int64)
    x = x.reshape(len(x), 64) if flat else x[:, None]       # (N, 64) or (N, 1, 8, 8)
    return Dataset(x, y, "multiclass", "digits")


@options(HP("flat", "bool", False, doc=FLAT.doc))
def mnist(flat):
    """10,000 real MNIST handwritten digits, 28×28 pixels scaled to [0, 1] (CC BY-SA 3.0)."""
    from resources import path
    with np.load(path("data", "mnist10k.npz"), allow_pickle=False) as f:
        x, y = f["x"].astype(np.float32), f["y"].astype(np.int64)
    x /= 255.0                                              # in place: one 31 MB array, not two
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
