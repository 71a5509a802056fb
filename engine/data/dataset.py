"""The Dataset type, splits, standardisation and loading from a project's dataset reference."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

TASKS = ("binary", "multiclass", "regression")


@dataclass
class Dataset:
    """x: (N, *shape) float32; y: (N,) int64 class ids for classification, (N, k) float32 for regression."""

    x: np.ndarray
    y: np.ndarray
    task: str
    name: str = ""
    classes: list = field(default_factory=list)

    def __post_init__(self):
        if self.task not in TASKS:
            raise DataError(f"{self.name}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        self.x = np.ascontiguousarray(self.x, dtype=np.float32)
        if len(self.x) != len(self.y):
            raise DataError(f"{self.name}: {len(self.x)} samples but {len(self.y)} targets")
        if self.task == "regression":
            self.y = np.asarray(self.y, np.float32).reshape(len(self.y), -1)
        else:
            y = np.asarray(self.y)
            if y.ndim != 1 or (y.size and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0)):
                raise DataError(f"{self.name}: class targets must be whole numbers ≥ 0, one per sample")
            self.y = y.astype(np.int64)
            if not self.classes:
                self.classes = [str(i) for i in range(int(y.max()) + 1 if y.size else 0)]
            if self.task == "binary" and y.size and y.max() > 1:
                raise DataError(f"{self.name}: a binary task needs targets 0 or 1, found up to {y.max()}")

    def __len__(self):
        return len(self.x)

    @property
    def n_classes(self):
        return len(self.classes)

    def subset(self, idx):
        return Dataset(self.x[idx], self.y[idx], self.task, self.name, list(self.classes))

    def split(self, val_fraction, seed=0):
        """(train, validation) after a seeded shuffle; stratified by class for classification."""
        if not 0 <= val_fraction < 1:
            raise DataError(f"validation fraction must be in [0, 1), got {val_fraction}")
        rng = np.random.default_rng(seed)
        if val_fraction == 0:
            return self.subset(rng.permutation(len(self))), None
        if self.task == "regression":
            p = rng.permutation(len(self))
            n = max(1, int(round(val_fraction * len(self))))
            return self.subset(p[n:]), self.subset(p[:n])
        tr, va = [], []
        for c in np.unique(self.y):
            idx = rng.permutation(np.flatnonzero(self.y == c))
            n = int(round(val_fraction * len(idx)))
            va.append(idx[:n])
            tr.append(idx[n:])
        return self.subset(rng.permutation(np.concatenate(tr))), self.subset(rng.permutation(np.concatenate(va)))


def kfold(n, k, seed=0):
    """k (train_idx, val_idx) pairs covering range(n) once as validation, after a seeded shuffle."""
    if not 2 <= k <= n:
        raise DataError(f"k-fold needs 2 ≤ k ≤ number of samples ({n}), got k = {k}")
    folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [(np.concatenate(folds[:i] + folds[i + 1:]), folds[i]) for i in range(k)]


def load(ref, base=None):
    """Dataset for a project's dataset reference, e.g. {"kind": "builtin", "name": "xor"}."""
    import inspect
    from .builtin import BUILTINS
    from .files import load_csv, load_npz
    from .images import load_folder, load_idx
    if not isinstance(ref, dict) or "kind" not in ref:
        raise DataError("the dataset reference needs a 'kind' (builtin, csv, npz, npy, idx or folder)")
    opts = {k: v for k, v in ref.items() if k not in ("kind", "name", "path", "standardize", "augment")}
    kind = ref["kind"]
    if kind == "builtin":
        name = ref.get("name")
        if name not in BUILTINS:
            raise DataError(f"unknown built-in dataset {name!r}; choose one of {', '.join(BUILTINS)}")
        return BUILTINS[name](**opts)
    loaders = {"csv": load_csv, "npz": load_npz, "npy": load_npz, "idx": load_idx, "folder": load_folder}
    if kind not in loaders:
        raise DataError(f"unknown dataset kind {kind!r}; use builtin, {', '.join(loaders)}")

    def where(key):
        if key not in ref:
            raise DataError(f"the {kind} dataset needs a '{key}'")
        p = Path(ref[key]).expanduser()
        return Path(base) / p if base is not None and not p.is_absolute() else p

    fn = loaders[kind]
    known = set(inspect.signature(fn).parameters)
    bad = sorted(set(opts) - known)
    if bad:
        raise DataError(f"the {kind} dataset has no option {bad[0]!r}; it takes "
                        f"{', '.join(sorted(known - {'path'}))}")
    if kind == "idx":
        opts.update(images=where("images"), labels=where("labels"))
        return fn(**opts)
    return fn(where("path"), **opts)
