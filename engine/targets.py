"""Statistics of a dataset's regression targets, read a block of samples at a time (never a copy of all targets)."""
import numpy as np

CHUNK = 1 << 20          # target values read at a time


def _blocks(ds, chunk=CHUNK):
    """(valid targets (m, k) float64) per block of samples; per-step targets: the valid steps only."""
    y = ds.y
    per = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    step = max(1, chunk // max(per, 1))
    for i in range(0, len(y), step):
        b = np.asarray(y[i:i + step])
        if ds.per_step:
            b = b[ds.mask(slice(i, i + step))]                  # (valid steps, …)
        yield b.reshape(len(b), -1).astype(np.float64)          # (m, k)


def _shape(ds):
    return ds.y.shape[2:] if ds.per_step else ds.y.shape[1:]


def moments(ds, chunk=CHUNK):
    """(count, mean (k,), sum of squared deviations (k,)) over every valid target, merged block by block
    (Chan et al.'s pairwise update: no cancellation of a large mean)."""
    n, mean, m2 = 0, None, None
    for b in _blocks(ds, chunk):
        if not len(b):
            continue
        bm = b.mean(axis=0)
        bm2 = ((b - bm) ** 2).sum(axis=0)
        if mean is None:
            n, mean, m2 = len(b), bm, bm2
            continue
        tot = n + len(b)
        d = bm - mean
        mean = mean + d * len(b) / tot
        m2 = m2 + bm2 + d * d * n * len(b) / tot
        n = tot
    return n, mean, m2


def target_stats(ds, chunk=CHUNK):
    """(mean, std) per target component over the samples (valid steps of per-step targets); std of a constant
    is 1."""
    n, mean, m2 = moments(ds, chunk)
    shape = _shape(ds)
    if not n:
        return np.zeros(shape), np.ones(shape)
    sd = np.sqrt(m2 / n)
    sd[sd < 1e-8] = 1.0
    return mean.reshape(shape), sd.reshape(shape)


def target_mean(ds, shape, chunk=CHUNK):
    """The mean target (shape `shape`) over the valid targets, or 0.0 when there are none."""
    n, mean, _ = moments(ds, chunk)
    return mean.reshape(shape) if n else 0.0
