"""Loaders for the user's own files: tables (CSV, Parquet, Arrow) and .npy/.npz (never unpickled)."""
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


def load_csv(path, target=None, task=None, delimiter=None, columns=None, missing=None, time_format=None,
             timezone=None):
    """A table (CSV/TSV/.gz, Parquet, Arrow/Feather) read with Apache Arrow; `target` is the label column
    (default: the last one); see engine.data.columns for the column types, roles and missing values."""
    from .columns import load_table
    return load_table(path, target, task, columns, missing, time_format, timezone, delimiter)


MAX_CLASSES = 100_000


def check_labels(y, n, where):
    """DataError unless class ids y (whole numbers ≥ 0) make a plausible number of classes for n samples.

    Refused before any class list is built: a stray 1e9 would otherwise ask for a billion class names."""
    if not y.size:
        return
    top = int(y.max())
    c = top + 1
    if c > MAX_CLASSES or c > 10 * n:
        raise DataError(f"{where}: the label {top:,} means {c:,} classes for {n:,} samples (at most "
                        f"{min(MAX_CLASSES, 10 * n):,} here); class labels must be 0, 1, …, C−1, or load the "
                        f"targets as a regression (task 'regression')")


def read_array(path, key=None):
    """One array from a .npy file, or member `key` of an .npz archive; DataError naming the file otherwise."""
    path = Path(path)
    what = f"{path}" if key is None else f"{path}, array {key!r}"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if not magic:
            raise DataError(f"{path} is empty (0 bytes)")
        if magic != b"\x93NUMPY" and magic[:2] != b"PK":
            raise DataError(f"{path} is not an .npy or .npz file (it starts with {magic!r}, not \\x93NUMPY or PK)")
        f = np.load(path, allow_pickle=False)
        if key is None:
            if not isinstance(f, np.ndarray):
                f.close()
                raise DataError(f"{path} is an .npz archive, not a single .npy array; use it as an npz dataset")
            a = f
        else:
            if isinstance(f, np.ndarray):
                raise DataError(f"{path} holds a single .npy array, not an .npz archive with arrays "
                                f"{key!r}; rename it to .npy")
            with f:
                if key not in f.files:
                    raise DataError(f"{path}: no array named {key!r}; it holds {', '.join(f.files) or 'none'}")
                a = f[key]
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, EOFError) as e:
        raise DataError(f"{what}: not a plain numeric array file ({e}); object arrays are never loaded") from None
    except MemoryError:
        raise DataError(f"{what}: its header announces an array too large for memory") from None
    except Exception as e:                  # zipfile.BadZipFile (truncated, not a zip, bad CRC), zlib.error
        raise DataError(f"{what}: damaged or not an .npy/.npz file ({type(e).__name__}: {e})") from None
    if not isinstance(a, np.ndarray):
        raise DataError(f"{what}: not an .npy array (raw bytes in the archive)")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{what}: arrays must be numeric (integers or floats), got {a.dtype}")
    if a.ndim == 0:
        raise DataError(f"{what}: holds a single number, not one row per sample")
    return a


def load_npz(path, x="x", y="y", task=None):
    """Arrays from .npz (keys x and y) or a pair of .npy files given as 'X.npy' with y='Y.npy'."""
    path = Path(path)
    if path.suffix == ".npy":
        xa, ya, xw, yw = read_array(path), read_array(path.parent / y), path, path.parent / y
    else:
        xa, ya, xw, yw = read_array(path, x), read_array(path, y), f"{path}, array {x!r}", f"{path}, array {y!r}"
    if len(xa) == 0:
        raise DataError(f"{xw} holds no samples (its first dimension is 0)")
    if len(xa) != len(ya):
        raise DataError(f"{xw} holds {len(xa):,} samples but {yw} holds {len(ya):,} targets")
    bad = ~np.isfinite(xa.reshape(len(xa), -1)).all(axis=1) if xa.dtype.kind == "f" else None
    if bad is not None and bad.any():
        raise DataError(f"{xw}, sample {int(np.argmax(bad))}: contains NaN or infinity "
                        f"({int(bad.sum()):,} samples do)")
    if ya.dtype.kind == "f" and not np.all(np.isfinite(ya)):
        i = int(np.argmax(~np.isfinite(ya.reshape(len(ya), -1)).all(axis=1)))
        raise DataError(f"{yw}, sample {i}: the target is NaN or infinity")
    if task is None:
        task = _guess_task([str(v) for v in ya.reshape(-1)[:100000]]) if ya.ndim == 1 else "regression"
    if task != "regression":
        if ya.ndim != 1 or not np.all(np.mod(ya, 1) == 0) or (ya.size and ya.min() < 0):
            raise DataError(f"{yw}: class targets must be whole numbers ≥ 0, one per sample")
        check_labels(ya, len(ya), yw)
    return Dataset(xa, ya, task, path.name)
