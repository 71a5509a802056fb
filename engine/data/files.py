"""Loaders for the user's own files: CSV (header row) and .npy/.npz (never unpickled)."""
import csv
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset


def _guess_task(values):
    """'binary', 'multiclass' or 'regression' from the target column's text values."""
    try:
        nums = np.array([float(v) for v in values])
    except ValueError:
        return "binary" if len(set(values)) == 2 else "multiclass"
    if np.all(nums == np.round(nums)) and len(np.unique(nums)) <= 50:
        return "binary" if set(np.unique(nums)) <= {0.0, 1.0} else "multiclass"
    return "regression"


def load_csv(path, target=None, task=None, delimiter=","):
    """CSV with a header row; `target` is the label column (default: the last one)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path} is not a readable CSV text file: {e}") from None
    rows = [(i, r) for i, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    (_, header), data = rows[0], rows[1:]
    header = [h.strip() for h in header]
    target = header[-1] if target is None else target
    if target not in header:
        raise DataError(f"{path}: no column named {target!r}; columns are {', '.join(header)}")
    t = header.index(target)
    xs, ys = [], []
    for line, r in data:
        if len(r) != len(header):
            raise DataError(f"{path}, line {line}: {len(r)} values but the header has {len(header)} columns")
        row = []
        for j, v in enumerate(r):
            if j == t:
                continue
            try:
                row.append(float(v))
            except ValueError:
                raise DataError(f"{path}, line {line}, column {header[j]!r}: {v.strip()!r} is not a number") from None
        xs.append(row)
        ys.append(r[t].strip())
    task = task or _guess_task(ys)
    x = np.array(xs, np.float32).reshape(len(xs), -1)
    if not np.all(np.isfinite(x)):
        line = data[int(np.argwhere(~np.isfinite(x))[0][0])][0]
        raise DataError(f"{path}, line {line}: contains NaN or infinity")
    if task == "regression":
        try:
            y = np.array([float(v) for v in ys], np.float32)
        except ValueError:
            bad = next(i for i, v in enumerate(ys) if not _isnum(v))
            raise DataError(f"{path}, line {data[bad][0]}, column {target!r}: {ys[bad]!r} is not a number") from None
        return Dataset(x, y, task, path.name)
    classes = sorted(set(ys), key=lambda v: (not _isnum(v), float(v) if _isnum(v) else 0, v))
    idx = {c: i for i, c in enumerate(classes)}
    return Dataset(x, np.array([idx[v] for v in ys]), task, path.name, classes)


def _isnum(v):
    try:
        float(v)
        return True
    except ValueError:
        return False


def load_npz(path, x="x", y="y", task=None):
    """Arrays from .npz (keys x and y) or a pair of .npy files given as 'X.npy' with y='Y.npy'."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            xa = np.load(path, allow_pickle=False)
            ya = np.load(path.parent / y, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in (x, y) if k not in f.files]
                if missing:
                    raise DataError(f"{path}: no array named {missing[0]!r}; it holds {', '.join(f.files) or 'none'}")
                xa, ya = f[x], f[y]
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    except ValueError as e:
        raise DataError(f"{path}: not a plain numeric array file ({e}); object arrays are never loaded") from None
    if xa.dtype.kind not in "biuf" or ya.dtype.kind not in "biuf":
        raise DataError(f"{path}: arrays must be numeric, got {xa.dtype} and {ya.dtype}")
    if task is None:
        task = _guess_task([str(v) for v in ya.reshape(-1)[:100000]]) if ya.ndim == 1 else "regression"
    return Dataset(xa, ya, task, path.name)
