"""The Dataset type, splits, standardisation and loading from a project's dataset reference."""
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataError
from .order import LARGE, choose

TASKS = ("binary", "multiclass", "regression")


def moments(x, elements=1 << 22):
    """(3, F) float64: count, sum and sum of squares of the non-missing (not NaN) cells of each column of x (n, F),
    a few million cells at a time."""
    out = np.zeros((3, x.shape[1]))
    step = max(1, elements // max(x.shape[1], 1))
    for i in range(0, len(x), step):
        b = np.asarray(x[i:i + step], np.float64)            # (rows, F)
        ok = ~np.isnan(b)
        b[~ok] = 0.0
        out += np.stack([ok.sum(axis=0), b.sum(axis=0), (b * b).sum(axis=0)])
    return out


class Rows:
    """Rows `idx` (None: all) of a (memory-mapped) array, gathered per read; NaN cells read as `fill` (F,).

    Stands in for Dataset.x over a table too large to copy: x[j] returns a float32 C-contiguous copy of only
    the rows asked for."""

    def __init__(self, base, idx=None, fill=None, totals=None):
        self.base, self.idx, self.fill = base, idx, fill
        self.totals = totals            # (3, F): count, sum, sum of squares of base's non-missing cells, or None
        self.shape = (len(base) if idx is None else len(idx),) + tuple(base.shape[1:])
        self.ndim, self.dtype = len(self.shape), np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    def _where(self, k):
        """Rows of base for k (int, slice or index array) of this view."""
        if self.idx is None:
            return k
        return self.idx[k]

    def take(self, k):
        """A view of rows k (slice or index array) of this one."""
        if self.idx is None and isinstance(k, slice):
            return Rows(self.base[k], None, self.fill)
        return Rows(self.base, self._where(k if isinstance(k, slice) else np.asarray(k)), self.fill, self.totals)

    def __getitem__(self, k):
        k, rest = (k[0], k[1:]) if isinstance(k, tuple) else (k, ())
        out = np.array(self.base[self._where(k)], dtype=np.float32)    # a copy: writable, C-contiguous
        if self.fill is not None:
            m = np.isnan(out)
            if m.any():
                out[m] = np.broadcast_to(self.fill, out.shape)[m]
        if rest:
            out = out[(slice(None),) + rest] if out.ndim == self.ndim else out[rest]
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getattr__(self, name):          # other ndarray methods (tolist, mean, …) read every row: small data
        if name.startswith("__") or name in ("base", "idx", "fill", "totals"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)

    def moments(self, chunk=1 << 16):
        """(sum, sum of squares) per feature (F,) float64 over these rows as read (missing cells as `fill`).
        With the base's totals, a subset reads only the rows it leaves out when they are fewer (a training
        split: its validation rows)."""
        n = len(self.base)
        if self.totals is not None and self.idx is None:
            mom = self.totals
        elif self.totals is not None:
            out = np.ones(n, bool)
            out[self.idx] = False
            rest = np.flatnonzero(out)
            mom = self.totals - self._gathered(rest, chunk) if len(rest) < len(self.idx) else \
                self._gathered(self.idx, chunk)
        else:
            mom = self._gathered(self.idx if self.idx is not None else slice(None), chunk)
        cnt, s, ss = mom
        if self.fill is not None:
            f = np.nan_to_num(self.fill.astype(np.float64))
            gaps = len(self) - cnt
            s, ss = s + gaps * f, ss + gaps * f * f
        return s, ss

    def _gathered(self, rows, chunk):
        """(3, F) moments of base[rows] (an index array or slice), read a block of rows at a time."""
        if isinstance(rows, slice):
            return moments(self.base, chunk * self.base.shape[1])
        out = np.zeros((3, self.base.shape[1]))
        for i in range(0, len(rows), chunk):
            out += moments(self.base[rows[i:i + chunk]])
        return out

    def column(self, j, chunk=1 << 20):
        """(N,) float64 of encoded column j, NaN where missing (before filling), read in chunks."""
        out = np.empty(len(self), np.float64)
        for i in range(0, len(self), chunk):
            r = self._where(slice(i, i + chunk))
            out[i:i + chunk] = self.base[r, j]
        return out


@dataclass
class Dataset:
    """x: (N, *shape) float32; y: (N,) int64 class ids for classification, (N, k) float32 for regression.

    Sequences: x (N, T, F) (or (N, T) token ids), `lengths` (N,) valid steps per sample; per-step targets
    y (N, T) class ids or (N, T, k) values. `vocab`: token id -> text (0 "<pad>", 1 "<unk>").
    `chrono`: the samples are in time order; `split` keeps the last fraction for validation.
    `text`: how raw text becomes ids (level, max_len), so that predict works on raw text.
    Sentence pairs (engine.data.pairs): y (N, T) target ids of another length than x, `target_lengths` (N,)
    and `target_vocab`."""

    x: np.ndarray
    y: np.ndarray
    task: str
    name: str = ""
    classes: list = field(default_factory=list)
    lengths: np.ndarray | None = None
    vocab: list | None = None
    chrono: bool = False
    standardize_steps: bool = False     # standardise each feature over time with training statistics
    text: dict | None = None
    gap: int = 0                        # chrono: windows dropped between training and validation
    baseline: np.ndarray | None = None  # a naive forecast per sample (persistence), same shape as y
    tokens: list | None = None          # text: token lists, re-encoded with the training vocabulary
    features: list | None = None        # tables: the name of each encoded feature
    report: list | None = None          # tables: one dict per column (type, role, missing, filled, dropped, …)
    notes: list = field(default_factory=list)   # what loading skipped or left out, one line each (shown to the user)
    impute: dict | None = None          # tables: {feature index: 'median' | 'mean' | constant} of filled columns
    target_lengths: np.ndarray | None = None    # sentence pairs: valid steps of y per sample (<end> included)
    target_vocab: list | None = None            # sentence pairs: target token id -> text
    plan: dict | None = None            # tables: how a new file is encoded (target, time format and zone, …)

    def __post_init__(self):
        if self.task not in TASKS:
            raise DataError(f"{self.name}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        x = self.x                           # read-only float32 (memory maps, series windows) stays a view
        if not isinstance(x, Rows) and not (isinstance(x, np.ndarray) and x.dtype == np.float32
                                            and not x.flags.writeable):
            self.x = np.ascontiguousarray(x, dtype=np.float32)
        if len(self.x) != len(self.y):
            raise DataError(f"{self.name}: {len(self.x)} samples but {len(self.y)} targets")
        if self.lengths is not None:
            lg = np.asarray(self.lengths)
            t = self.x.shape[1] if self.x.ndim >= 2 else 0
            if lg.shape != (len(self.x),) or lg.dtype.kind not in "iu" or (lg.size and (lg.min() < 1 or lg.max() > t)):
                raise DataError(f"{self.name}: lengths must be whole numbers 1…{t} (the padded length), one per sample")
            self.lengths = lg.astype(np.int64)
        steps = self.lengths
        if self.target_lengths is not None:
            tl, t = np.asarray(self.target_lengths), np.shape(self.y)[1] if np.ndim(self.y) >= 2 else 0
            if tl.shape != (len(self.x),) or tl.dtype.kind not in "iu" or (tl.size and (tl.min() < 1 or tl.max() > t)):
                raise DataError(f"{self.name}: target lengths must be whole numbers 1…{t} (the padded target "
                                "length), one per sample")
            self.target_lengths = steps = tl.astype(np.int64)
        per_step = self.lengths is not None and np.ndim(self.y) >= (3 if self.task == "regression" else 2)
        if self.task == "regression":
            y = np.asarray(self.y, np.float32)
            self.y = y if per_step else y.reshape(len(y), -1)
        else:
            y = np.asarray(self.y)
            if per_step:
                y = np.where(np.arange(y.shape[1]) < steps[:, None], y, 0) if y.ndim == 2 else y
            whole = y.dtype.kind in "iu" or np.all(np.equal(np.mod(y, 1), 0))
            if y.ndim != (2 if per_step else 1) or (y.size and (not whole or y.min() < 0)):
                raise DataError(f"{self.name}: class targets must be whole numbers ≥ 0, one per sample "
                               "(or one per step of a sequence with lengths)")
            self.y = y.astype(np.int64, copy=False)
            if not self.classes:
                self.classes = [str(i) for i in range(int(y.max()) + 1 if y.size else 0)]
            if self.task == "binary" and y.size and y.max() > 1:
                raise DataError(f"{self.name}: a binary task needs targets 0 or 1, found up to {y.max()}")

    def __len__(self):
        return len(self.x)

    @property
    def n_classes(self):
        return len(self.classes)

    @property
    def per_step(self):
        """Targets per time step (sequence to sequence)."""
        return self.lengths is not None and self.y.ndim >= (3 if self.task == "regression" else 2)

    def mask(self, idx=slice(None)):
        """(n, T) bool of valid steps for samples idx, or None when the data has no lengths."""
        if self.lengths is None:
            return None
        return np.arange(self.x.shape[1])[None, :] < self.lengths[idx][:, None]

    def subset(self, idx):
        """Samples idx; a run of consecutive samples is a view (no copy), and so is any subset of read-only
        data (a memory-mapped table, series windows): Rows gathers its samples per batch."""
        idx = np.asarray(idx)
        k = slice(int(idx[0]), int(idx[-1]) + 1) if idx.size and idx[-1] - idx[0] + 1 == idx.size and (
            idx.size == 1 or np.all(np.diff(idx) == 1)) else idx
        if isinstance(self.x, Rows):
            x = self.x.take(k)
        elif not self.x.flags.writeable and not isinstance(k, slice):     # memory maps, series windows
            x = Rows(self.x).take(k)
        else:
            x = self.x[k]
        pick = (lambda a: None if a is None else a[k])
        return replace(self, x=x, y=self.y[k], classes=list(self.classes), lengths=pick(self.lengths),
                       baseline=pick(self.baseline), target_lengths=pick(self.target_lengths),
                       tokens=None if self.tokens is None else [self.tokens[i] for i in idx])

    def split(self, val_fraction, seed=0):
        """(train, validation) after a seeded shuffle (stratified by class for classification), or, for
        data in time order (chrono), the first samples for training and the last fraction for validation."""
        if not 0 <= val_fraction < 1:
            raise DataError(f"validation fraction must be in [0, 1), got {val_fraction}")
        if self.chrono:                  # no window straddles the split: `gap` windows between the parts
            n = int(round(val_fraction * len(self)))
            cut = len(self) - n
            if n and cut - self.gap < 1:
                raise DataError(f"{self.name}: {len(self)} windows are too few to keep {n} for validation "
                                f"and {self.gap} between training and validation")
            return fit(self.subset(np.arange(cut - self.gap if n else cut)),
                       self.subset(np.arange(cut, len(self))) if n else None)
        return fit(*self._split(val_fraction, seed))

    def _split(self, val_fraction, seed):
        rng = np.random.default_rng(seed)
        if len(self) > LARGE:
            return self._split_large(val_fraction, rng)
        if val_fraction == 0:
            return self.subset(rng.permutation(len(self))), None
        if self.task == "regression" or self.per_step:           # per-step class ids: no per-sample class
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

    def _split_large(self, val_fraction, rng):
        """Millions of samples: validation samples drawn at random without shuffling the whole index, both parts
        in file order (the trainer shuffles every epoch); no shuffle of the whole index."""
        n = len(self)
        if val_fraction == 0:
            return self.subset(np.arange(n)), None
        if self.task == "regression" or self.per_step:
            keep = ~choose(rng, n, max(1, int(round(val_fraction * n))))
        else:
            counts = np.bincount(self.y)
            by = np.argsort(self.y, kind="stable") if np.count_nonzero(counts) > 32 else None
            keep, at = np.ones(n, bool), 0
            for c in np.flatnonzero(counts):
                idx = by[at:at + counts[c]] if by is not None else np.flatnonzero(self.y == c)
                at += counts[c]
                keep[idx[choose(rng, len(idx), int(round(val_fraction * len(idx))))]] = False
        return self.subset(np.flatnonzero(keep)), self.subset(np.flatnonzero(~keep))

    def step_standardizer(self, chunk=1 << 22):
        """(mean, std) per feature (F,) over every valid step of (N, T, F) sequences; std of constants is 1.

        Read a few samples at a time: series windows are views, never copied whole."""
        f = self.x.shape[-1]
        s, ss, n = np.zeros(f), np.zeros(f), 0
        step = max(1, chunk // max(1, int(np.prod(self.x.shape[1:]))))
        for i in range(0, len(self), step):
            v = np.asarray(self.x[i:i + step], np.float64)
            m = self.mask(slice(i, i + step))
            v = v[m] if m is not None else v.reshape(-1, f)                       # (valid steps, F)
            s, ss, n = s + v.sum(axis=0), ss + (v * v).sum(axis=0), n + len(v)
        mean = s / max(n, 1)
        sd = np.sqrt(np.maximum(ss / max(n, 1) - mean * mean, 0.0))
        sd[sd < 1e-8] = 1.0
        return mean.astype(np.float32), sd.astype(np.float32)


def fit(train, *others):
    """(train, *others) with what is learned from training data only applied to all: the vocabulary of a
    text dataset, the fill values (median or mean of training rows) of a table's missing cells."""
    if train.target_vocab is not None:
        from .pairs import refit
        return tuple(refit(train, list(others)))
    if train.tokens is not None:
        from .sequences import refit_vocab
        return tuple(refit_vocab(train, list(others)))
    if train.impute and isinstance(train.x, Rows):
        from .columns import stat
        fill = np.full(train.x.shape[1], np.nan, np.float32)
        for j, how in train.impute.items():
            fill[j] = stat(train.x.column(j), how)
        for part in (train,) + others:
            if part is not None:
                part.x.fill = fill
    return (train,) + others


def kfold(n, k, seed=0):
    """k (train_idx, val_idx) pairs covering range(n) once as validation, after a seeded shuffle; each pair is
    made when it is read, so k folds of millions of rows never sit in memory together."""
    if not 2 <= k <= n:
        raise DataError(f"k-fold needs 2 ≤ k ≤ number of samples ({n}), got k = {k}")
    return Folds(n, k, seed)


class Folds:
    """The k folds of kfold: fold i's validation rows are positions [b_i, b_{i+1}) of one seeded order of range(n)
    (numpy's permutation, or index arithmetic above order.LARGE rows); its training rows are all the others."""

    def __init__(self, n, k, seed):
        from .order import order
        self.n, self.k = n, k
        self.perm = order(np.random.default_rng(seed), n)
        sizes = [n // k + (i < n % k) for i in range(k)]                    # as np.array_split
        self.bounds = np.concatenate([[0], np.cumsum(sizes)])

    def __len__(self):
        return self.k

    def __getitem__(self, i):
        if not -self.k <= i < self.k:
            raise IndexError(i)
        i %= self.k
        a, b = int(self.bounds[i]), int(self.bounds[i + 1])
        va = self.perm[a:b]
        if isinstance(self.perm, np.ndarray):
            return np.concatenate([self.perm[:a], self.perm[b:]]), va
        keep = np.ones(self.n, bool)                                       # no (n,) shuffled copy: the rest, sorted
        keep[va] = False
        return np.flatnonzero(keep), va


def placeholder(shape):
    """The dataset reference of a project that has no data yet (an imported model): it names the Input's shape."""
    return {"kind": "none", "input": [int(d) for d in shape]}


def choose_text(ref):
    """What a placeholder reference asks for: 'choose data for a (3, 224, 224) input'."""
    from ..layers.base import fmt
    shape = ref.get("input")
    ok = isinstance(shape, list) and all(isinstance(d, int) for d in shape)
    return f"choose data for a {fmt(shape)} input" if ok and shape else "choose data for this model"


def load(ref, base=None):
    """Dataset for a project's dataset reference, e.g. {"kind": "builtin", "name": "xor"}."""
    import inspect
    from .builtin import BUILTINS
    if not isinstance(ref, dict) or "kind" not in ref:
        raise DataError("the dataset reference needs a 'kind' (builtin, csv, parquet, arrow, npz, npy, idx, folder, "
                        "series, text or pairs)")
    opts = {k: v for k, v in ref.items() if k not in ("kind", "name", "path", "standardize", "augment")}
    kind = ref["kind"]
    if kind == "none":
        raise DataError(f"the project has no dataset yet: {choose_text(ref)}")
    if kind == "builtin":
        name = ref.get("name")
        if name not in BUILTINS:
            raise DataError(f"unknown built-in dataset {name!r}; choose one of {', '.join(BUILTINS)}")
        return BUILTINS[name](**opts)
    from .files import load_csv, load_npz                   # the file readers (pyarrow) only for files
    from .images import load_folder, load_idx
    from .pairs import load_pairs
    from .sequences import load_sequences, load_series, load_text
    loaders = {"csv": load_csv, "parquet": load_csv, "arrow": load_csv,
               "npz": load_sequences if "lengths" in ref else load_npz, "npy": load_npz, "idx": load_idx,
               "folder": load_folder, "series": load_series, "text": load_text,
               "pairs": load_pairs}
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
