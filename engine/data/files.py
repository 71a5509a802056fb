"""Loaders for the user's own files: tables (CSV, Parquet, Arrow) and .npy/.npz (never unpickled)."""
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset


def read_bytes(path):
    """The file's bytes, gunzipped when they start with the gzip magic; one DataError when unreadable or damaged."""
    import gzip
    import zlib
    try:
        raw = Path(path).read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path} is a damaged .gz file: {e}") from None


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
    from . import cache
    d = cache.lookup(path, "table", table_options(target, task, columns, missing, time_format, timezone, delimiter))
    if d is not None:                           # encoded before: memory-mapped, without importing pyarrow
        return from_entry(d, Path(path))
    from .columns import load_table
    return load_table(path, target, task, columns, missing, time_format, timezone, delimiter)


def table_options(target, task, columns, missing, time_format, timezone, delimiter):
    """The options a table's encoded cache entry is keyed on."""
    return {"target": target, "task": task, "columns": columns, "missing": missing, "time_format": time_format,
            "timezone": timezone, "delimiter": delimiter}


def from_entry(d, path):
    """The Dataset of an encoded table's cache entry (features and targets memory-mapped)."""
    from . import cache
    from .dataset import Rows
    meta = cache.meta(d)
    impute = {int(k): v for k, v in meta["impute"].items()}
    x = cache.array(d, "x")
    fill = None
    if impute:
        fill = np.full(x.shape[1], np.nan, np.float32)
        fill[list(impute)] = meta["fill"]
    return Dataset(Rows(x, None, fill, np.array(meta["moments"])), cache.array(d, "y"), meta["task"], path.name,
                   list(meta["classes"]),
                   features=meta["features"], report=meta["columns"], impute=impute, plan=meta["plan"],
                   notes=table_notes(meta["columns"]))


def table_notes(report):
    """One line per column whose missing cells were filled or whose missing cells dropped rows."""
    out = []
    for c in report:
        if c.get("dropped"):
            out.append(f"{c['dropped']:,} rows left out: column {c['name']!r} is missing there"
                       + (" (the target)" if c["role"] == "target" else ""))
        if c.get("filled"):
            how = "a 'missing' level" if c["type"] == "category" else f"the training rows' {c['strategy']}" \
                if c["strategy"] in ("median", "mean") else f"{c['strategy']}"
            out.append(f"column {c['name']!r}: {c['filled']:,} missing cells filled with {how}")
    return out


MAX_CLASSES = 100_000


def first_nonfinite(a, elements=1 << 22):
    """(index of the first NaN or ±inf in a, number of samples (first axis) holding one), or (None, 0); read
    in blocks of samples so that a large array needs no second array of its size."""
    if a.dtype.kind != "f" or not a.size:
        return None, 0
    rows = max(1, elements // max(1, a[0].size))
    where, count = None, 0
    for i in range(0, len(a), rows):
        bad = ~np.isfinite(a[i:i + rows])
        per = bad.reshape(len(bad), -1).any(axis=1)
        if per.any():
            count += int(per.sum())
            if where is None:
                j = first(bad)
                where = (i + j[0],) + j[1:]
    return where, count


def first(bad):
    """The index tuple of the first True in a boolean array."""
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(bad)), bad.shape))


def at(index, steps=False):
    """'sample i' or, with steps, 'sample i, step t' for an array index (i, t, …)."""
    return f"sample {index[0]}" + (f", step {index[1]}" if steps and len(index) > 1 else "")


def check_labels(y, n, where, valid=None):
    """DataError unless class ids y ((N,) or (N, T) per step) are whole numbers 0 … C−1 with a plausible C for
    n samples, naming the first offending sample (and step); valid (N, T): the steps that count (not padding).

    Refused before any class list is built: a stray 1e9 would otherwise ask for a billion class names."""
    if not y.size:
        return
    valid = np.ones(y.shape, bool) if valid is None else valid
    steps = y.ndim > 1
    if y.dtype.kind == "f":
        bad = valid & ~np.isfinite(y)
        if bad.any():
            raise DataError(f"{where}, {at(first(bad), steps)}: the label is NaN or infinity")
        bad = valid & (y != np.round(y))
        if bad.any():
            i = first(bad)
            raise DataError(f"{where}, {at(i, steps)}: the label {y[i]:g} is not a whole number; class labels "
                            f"must be 0, 1, …, C−1 (or load the targets as a regression: task 'regression')")
    bad = valid & (y < 0)
    if bad.any():
        i = first(bad)
        raise DataError(f"{where}, {at(i, steps)}: the label {y[i]:g} is negative; class labels must be 0, 1, …, C−1")
    top = y[valid].max() if valid.any() else 0
    c = int(top) + 1
    if c > MAX_CLASSES or c > 10 * n:
        i = first(valid & (y == top))
        raise DataError(f"{where}, {at(i, steps)}: the label {int(top):,} means {c:,} classes for {n:,} samples "
                        f"(at most {min(MAX_CLASSES, 10 * n):,} here); class labels must be 0, 1, …, C−1, or load "
                        f"the targets as a regression (task 'regression')")


def _magic(path):
    """DataError unless path starts like an .npy (\x93NUMPY) or .npz (a zip: PK) file."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if not magic:
        raise DataError(f"{path} is empty (0 bytes)")
    if magic != b"\x93NUMPY" and magic[:2] != b"PK":
        raise DataError(f"{path} is not an .npy or .npz file (it starts with {magic!r}, not \\x93NUMPY or PK)")


def _reading(path, what, fn):
    """fn() with numpy's and zipfile's errors turned into one DataError naming `what` (a file, or an array in it)."""
    try:
        return fn()
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


def _checked(a, what):
    if not isinstance(a, np.ndarray):
        raise DataError(f"{what}: not an .npy array (raw bytes in the archive)")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{what}: arrays must be numeric (integers or floats), got {a.dtype}")
    if a.ndim == 0:
        raise DataError(f"{what}: holds a single number, not one row per sample")
    return a


def read_array(path, key=None, how="use it as an npz dataset"):
    """One array from a .npy file, or member `key` of an .npz archive; DataError naming the file otherwise
    (`how`: what a user who gave an .npz archive for a single array should do instead)."""
    if key is not None:
        return read_arrays(path, [key])[0]
    path = Path(path)

    def load():
        _magic(path)
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.ndarray):
            f.close()
            raise DataError(f"{path} is an .npz archive, not a single .npy array; {how}")
        return f
    return _checked(_reading(path, path, load), path)


def read_arrays(path, keys, how="rename it to .npy"):
    """Members `keys` of one .npz archive (opened once, never unpickled); `how` tells a user who gave a single
    .npy array what to do instead."""
    path = Path(path)

    def load():
        _magic(path)
        f = np.load(path, allow_pickle=False)
        if isinstance(f, np.ndarray):
            raise DataError(f"{path} holds a single .npy array, not an .npz archive with arrays "
                            f"{', '.join(map(repr, keys))}; {how}")
        with f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(f"{path}: no array named {missing[0]!r}; it holds {', '.join(f.files) or 'none'}")
            return [_checked(_reading(path, f"{path}, array {k!r}", lambda: f[k]), f"{path}, array {k!r}")
                    for k in keys]
    return _reading(path, path, load)


def load_npz(path, x="x", y="y", task=None):
    """Arrays from .npz (keys x and y) or a pair of .npy files given as 'X.npy' with y='Y.npy'."""
    path = Path(path)
    if path.suffix == ".npy":
        xa, ya, xw, yw = read_array(path), read_array(path.parent / y), path, path.parent / y
    else:
        (xa, ya), xw, yw = read_arrays(path, [x, y]), f"{path}, array {x!r}", f"{path}, array {y!r}"
    if len(xa) == 0:
        raise DataError(f"{xw} holds no samples (its first dimension is 0)")
    if len(xa) != len(ya):
        raise DataError(f"{xw} holds {len(xa):,} samples but {yw} holds {len(ya):,} targets")
    bad, count = first_nonfinite(xa)
    if bad is not None:
        raise DataError(f"{xw}, sample {bad[0]}: contains NaN or infinity ({count:,} samples do)")
    bad, _ = first_nonfinite(ya)
    if bad is not None:
        raise DataError(f"{yw}, sample {bad[0]}: the target is NaN or infinity")
    if task is None:
        task = _guess_task([str(v) for v in ya.reshape(-1)[:100000]]) if ya.ndim == 1 else "regression"
    if task != "regression":
        if ya.ndim != 1:
            raise DataError(f"{yw}: class targets must be one whole number per sample, got shape "
                            f"{'×'.join(map(str, ya.shape))}")
        check_labels(ya, len(ya), yw)
    return Dataset(xa, ya, task, path.name)
