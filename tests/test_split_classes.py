"""The stratified split finds its classes with np.bincount (np.unique imports numpy.ma, ~10 ms of a first training
step): the parts are exactly those of the classes np.unique gives, for integer ids with gaps and for float ids."""
import numpy as np

from engine.data import Dataset


def _reference(ds, val_fraction, seed):
    """The split with np.unique's classes (the code before bincount)."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(ds.y):
        idx = rng.permutation(np.flatnonzero(ds.y == c))
        n = int(round(val_fraction * len(idx)))
        va.append(idx[:n])
        tr.append(idx[n:])
    return rng.permutation(np.concatenate(tr)), rng.permutation(np.concatenate(va))


def test_stratified_split_equals_the_split_by_np_unique_classes():
    rng = np.random.default_rng(3)
    for y in (rng.choice([0, 2, 5, 9], size=501),                       # ids with gaps
              rng.integers(0, 3, size=200).astype(np.uint8),
              rng.choice([0.0, 1.0], size=300)):                       # float class ids: np.unique's path
        x = rng.normal(size=(len(y), 3)).astype(np.float32)
        ds = Dataset(x, y, "multiclass", "t", [str(i) for i in range(10)])
        tr, va = ds._split(0.2, 7)
        want_tr, want_va = _reference(ds, 0.2, 7)
        np.testing.assert_array_equal(tr.x, x[want_tr])
        np.testing.assert_array_equal(va.y, y[want_va])
        assert len(tr) + len(va) == len(y)
