"""Columns of a table: a type and a role each, missing values, and the encoded (N, F) float32 features.

Types: number, category, text, datetime, empty. Roles: feature, target, time, ignore. The encoded table is kept
in the cache as .npy files and read back memory-mapped."""
import mmap
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from . import cache, timestamps
from .dataset import moments
from .table import at, evict, header_check, numbers, numeric_share, progress, read

TYPES = ("number", "category", "text", "datetime", "empty")
ROLES = ("feature", "target", "time", "ignore")
STRATEGIES = ("median", "mean", "drop", "level")      # or a number: a constant
MAX_LEVELS = 1000


@dataclass
class Column:
    """One line of the column report."""
    name: str
    type: str
    role: str
    missing: int = 0                 # empty, NA, NaN or null cells
    strategy: str | float | None = None
    filled: int = 0                  # cells filled (features)
    dropped: int = 0                 # rows dropped because this cell was missing
    width: int = 0                   # encoded features
    levels: list = field(default_factory=list)
    note: str = ""


def _is_str(t):
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


def _missing(c):
    """Missing cells of a column: nulls, and NaN in float columns."""
    n = c.null_count
    if pa.types.is_floating(c.type):
        n += pc.sum(pc.is_nan(c)).as_py() or 0
    return int(n)


def infer(table, path, target, columns=None, time_format=None, timezone=None):
    """[Column] with the default type and role of each column, then the overrides in `columns`."""
    columns = dict(columns or {})
    header_check(table, path, [target] + list(columns))
    out = []
    for name in table.column_names:
        c, n = table.column(name), table.num_rows
        col = Column(name, "number", "feature", _missing(c))
        t = c.type
        if col.missing == n:
            col.type, col.role, col.note = "empty", "ignore", "every cell is empty"
        elif pa.types.is_timestamp(t) or pa.types.is_date(t):
            col.type, col.role = "datetime", "time"
        elif pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
            if name.lower() in timestamps.NAMES[1:]:                       # 'timestamp' of Unix seconds
                col.type, col.role = "datetime", "time"
        elif _is_str(t):
            _strings(col, c, name, time_format, timezone)
        else:
            col.type, col.role, col.note = "empty", "ignore", f"{t} values are not read"
        out.append(col)
        evict()                                         # a column's pages at a time, not the table's
    by = {c.name: c for c in out}
    for name, want in columns.items():
        _override(by[name], want, path)
    for c in out:
        if c.name == target:
            c.role, c.note = "target", ""
        elif c.role == "target":
            c.role = "feature"
    return out


def _strings(col, c, name, time_format, timezone):
    if timestamps.looks_like_time(name, c):
        try:
            timestamps.parse(pc.drop_null(c), time_format, timezone)
            col.type, col.role = "datetime", "time"
            return
        except DataError:
            pass
    if numeric_share(c) >= 0.5:
        return                                                              # numbers with a few bad cells
    n = len(c) - col.missing
    distinct = pc.count_distinct(c).as_py()
    chars = pc.mean(pc.utf8_length(pc.drop_null(c))).as_py() or 0
    if chars >= 30 and pc.mean(pc.count_substring(pc.drop_null(c), " ")).as_py() >= 3:
        col.type = "text"
    elif distinct == n and n > 1:
        col.type, col.role = "category", "ignore"
        col.note = f"ignored: an id ({distinct:,} distinct values); set it to 'category' to use it"
    else:
        col.type = "category"
        if distinct > MAX_LEVELS:
            col.role, col.note = "ignore", f"ignored: {distinct:,} distinct values; set it to 'category' to use it"


def _override(col, want, path):
    if isinstance(want, str):
        want = {"role": want} if want in ROLES else {"type": "datetime" if want == "date" else want}
    if not isinstance(want, dict):
        raise DataError(f"{path}: column {col.name!r}: expected a type ({', '.join(TYPES)}), a role "
                        f"({', '.join(ROLES)}) or {{\"type\": …, \"role\": …, \"missing\": …}}, got {want!r}")
    t, r = want.get("type"), want.get("role")
    if t is not None and t not in TYPES:
        raise DataError(f"{path}: column {col.name!r}: unknown type {t!r}; use {', '.join(TYPES)} "
                        f"or a role ({', '.join(ROLES)})")
    if r is not None and r not in ROLES:
        raise DataError(f"{path}: column {col.name!r}: unknown role {r!r}; use {', '.join(ROLES)}")
    if t:
        col.type, col.note = t, ""
        col.role = r or ("ignore" if t == "empty" else "feature")
    if r:
        col.role, col.note = r, ""
    if "missing" in want:
        col.strategy = want["missing"]


def strategies(cols, missing, path):
    """Set each feature's missing-value strategy from `missing`: one for all, or {column: strategy, '*': …}."""
    if missing is not None and not isinstance(missing, (str, int, float, dict)):
        raise DataError(f"{path}: 'missing' must be a strategy ({', '.join(STRATEGIES)} or a number) "
                        f"or {{column: strategy}}")
    names = {c.name for c in cols}
    if isinstance(missing, dict):
        for k in missing:
            if k != "*" and k not in names:
                raise DataError(f"{path}: 'missing' names no column {k!r}; columns are {', '.join(sorted(names))}")
    for c in cols:
        if c.role != "feature":
            c.strategy = None
            continue
        s = c.strategy
        if s is None and missing is not None:
            s = missing.get(c.name, missing.get("*")) if isinstance(missing, dict) else missing
        if s is None:
            s = "level" if c.type == "category" else "median"
        if isinstance(s, str) and s not in STRATEGIES or isinstance(s, bool):
            raise DataError(f"{path}: column {c.name!r}: unknown missing-value strategy {s!r}; use "
                            f"{', '.join(STRATEGIES)} or a number")
        if c.type == "category" and s != "drop":
            s = "level"                  # no median of categories: their own 'missing' level
        elif c.type == "datetime" or (s == "level" and c.type != "number"):
            s = "drop"
        elif s == "level":
            s = "median"
        c.strategy = s


def guess_task(cols, table, target, path):
    """'binary', 'multiclass' or 'regression' from the target column."""
    col = next(c for c in cols if c.name == target)
    c = table.column(target)
    if col.type != "number" or (_is_str(c.type) and numeric_share(c) < 0.5):
        k = pc.count_distinct(c).as_py()
        return "binary" if k == 2 else "multiclass"
    v = numbers(table, target, path)
    v = v[~np.isnan(v)]
    u = np.unique(v[:1_000_000])
    if np.all(u == np.round(u)) and len(u) <= 50 and len(np.unique(v)) <= 50:
        return "binary" if set(u) <= {0.0, 1.0} else "multiclass"
    return "regression"


def _integral(c):
    """True for a float column whose values are all whole numbers (written as categories without '.0')."""
    return bool(pa.types.is_floating(c.type) and len(c) > c.null_count
                and pc.all(pc.equal(pc.round(pc.drop_null(c)), pc.drop_null(c))).as_py())


def _strings_of(c, integral=None):
    """A column as strings (whole numbers of a float column written without a trailing .0)."""
    if _is_str(c.type):
        return pc.utf8_trim_whitespace(pc.cast(c, pa.string()))
    if _integral(c) if integral is None else integral:
        c = pc.cast(c, pa.int64())
    return pc.cast(c, pa.string())


def _class_names(values):
    """Sorted class names: numbers in numeric order first, then the rest alphabetically."""
    def key(v):
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)
    return sorted(values, key=key)


def keep_rows(cols, table, target):
    """(N,) bool: rows kept (target present, and every 'drop' feature present); counts into the report."""
    keep = np.ones(table.num_rows, bool)
    for c in sorted(cols, key=lambda c: c.name != target):                 # the target's drops first
        if c.name == target or (c.role == "feature" and c.strategy == "drop" and c.missing):
            a = table.column(c.name)
            ok = pc.is_valid(a)
            if pa.types.is_floating(a.type):
                ok = pc.and_(ok, pc.invert(pc.fill_null(pc.is_nan(a), False)))
            ok = ok.to_numpy(zero_copy_only=False)
            c.dropped = int((keep & ~ok).sum())
            keep &= ok
    return keep


def layout(cols, table):
    """[(column, encoded names)] of the features; sets width and levels."""
    out = []
    for c in cols:
        if c.role != "feature":
            continue
        if c.type == "number":
            names = [c.name] + ([f"{c.name} (was missing)"] if c.missing and c.strategy != "drop" else [])
        elif c.type == "category":
            vals = _strings_of(pc.drop_null(table.column(c.name)))
            lv = pc.unique(vals).to_pylist()
            if len(lv) > MAX_LEVELS * 10:
                raise DataError(f"column {c.name!r} has {len(lv):,} distinct values, too many for a category")
            c.levels = _class_names(lv) + (["missing"] if c.missing and c.strategy == "level" else [])
            names = [f"{c.name}={v}" for v in c.levels]
        elif c.type == "datetime":
            names = [f"{c.name} {k}" for k in ("hour sin", "hour cos", "year sin", "year cos")]
        else:
            names = []
        c.width = len(names)
        out.append((c, names))
    return out


CHUNK = 1 << 18      # rows encoded at a time


def encode(table, cols, target, task, path, writer, time_format=None, timezone=None):
    """Write x (N, F) float32 (NaN where a filled cell goes) and y to the cache entry, a block of rows at a
    time (the pages of the mapped table and of x are let go after each block); returns the entry's meta."""
    keep = keep_rows(cols, table, target)
    n = int(keep.sum())
    if n == 0:
        raise DataError(f"{path}: no row has a value in the target column {target!r}")
    lay = layout(cols, table)
    evict()
    feats = [nm for _, names in lay for nm in names]
    if not feats:
        raise DataError(f"{path}: no feature column is left (all are ignored, the target, time or text)")
    x = writer.array("x", (n, len(feats)), np.float32)
    regress = task == "regression"
    y = writer.array("y", (n, 1) if regress else (n,), np.float32 if regress else np.int64)
    whole = {c.name: _integral(table.column(c.name)) for c, _ in lay if c.type == "category"}
    kept = np.flatnonzero(keep)
    stamps = {c.name: timestamps.parse(table.column(c.name).filter(pa.array(keep)), time_format, timezone,
                                       f"{path}, column {c.name!r}", lambda i: at(path, kept[i]))
              for c, _ in lay if c.type == "datetime"}
    yi = _integral(table.column(target))
    classes = [] if regress else _class_names(pc.unique(_strings_of(table.column(target), yi)).drop_null().to_pylist())
    if len(classes) > 100_000:
        raise DataError(f"{path}: the target {target!r} has {len(classes):,} classes; for numbers give "
                        f"\"task\": \"regression\"")
    impute, seen = {}, {}
    mom = np.zeros((3, len(feats)))                           # per feature: non-missing count, sum, sum of squares
    o = 0
    for r0 in range(0, table.num_rows, CHUNK):
        progress("encoding", r0 / table.num_rows)
        part, k = table.slice(r0, CHUNK), keep[r0:r0 + CHUNK]
        every, m = bool(k.all()), int(k.sum())
        xb, j = x[o:o + m], 0
        for c, names in lay:
            if c.type == "number":
                v = numbers(part, c.name, path, first=r0)
                v = v if every else v[k]
                xb[:, j] = v
                miss = np.isnan(v)
                c.filled += int(miss.sum()) if c.strategy != "drop" else 0
                if len(names) == 2:
                    xb[:, j + 1] = miss
                    impute[j] = c.strategy
                    seen.setdefault(j, []).append(v[~miss].astype(np.float32))
            elif c.type == "category":
                s = _strings_of(part.column(c.name), whole[c.name]).filter(pa.array(k))
                idx = pc.index_in(s, value_set=pa.array(c.levels)).to_numpy(zero_copy_only=False)   # NaN: missing
                idx = np.where(np.isnan(idx), len(c.levels) - 1, idx).astype(np.int64)
                c.filled += int(s.null_count) if c.missing else 0
                for lv in range(len(c.levels)):                     # one level at a time: no (N, L) temporary
                    xb[:, j + lv] = idx == lv
            elif c.type == "datetime":
                st = stamps[c.name]
                xb[:, j:j + 4] = time_features(st.hour()[o:o + m], st.wall[o:o + m])
            j += len(names)
        if regress:
            v = numbers(part, target, path, "is not a number (the task is regression)", first=r0)
            y[o:o + m, 0] = v if every else v[k]
        else:
            s = _strings_of(part.column(target), yi).filter(pa.array(k))
            y[o:o + m] = pc.index_in(s, value_set=pa.array(classes)).to_numpy(zero_copy_only=False)
        mom += moments(xb)
        o += m
        for a in (x, y):
            a.flush()
            a._mmap.madvise(mmap.MADV_DONTNEED)                     # written: the page cache keeps it
        evict()
    fill = [stat(np.concatenate(seen[j]), how) for j, how in impute.items()]
    return {"task": task, "classes": classes, "features": feats, "impute": {str(k): s for k, s in impute.items()},
            "fill": fill, "columns": [asdict(c) for c in cols], "rows": table.num_rows, "moments": mom.tolist(),
            "plan": {"target": target, "whole": whole, "time_format": time_format, "timezone": timezone}}


def time_features(hour, wall):
    """(m, 4): sin and cos of the hour of day and of the day of the year (wall-clock seconds)."""
    h = 2 * np.pi * hour / 24
    d = 2 * np.pi * ((wall // 86400) % 365.2425) / 365.2425
    return np.c_[np.sin(h), np.cos(h), np.sin(d), np.cos(d)]


def stat(v, how):
    """The fill value of a column (NaN where missing) by strategy: median, mean or a constant."""
    if not isinstance(how, str):
        return float(how)
    v = np.asarray(v, np.float64)
    v = v[~np.isnan(v)]
    if not v.size:
        return 0.0
    return float(np.median(v) if how == "median" else v.mean())


def check_order(table, cols, path, time_format=None, timezone=None):
    """Note on the time column when its rows are not in time order (the first line where it goes back)."""
    for c in cols:
        if c.role == "time" and c.type == "datetime" and not c.missing:
            try:
                st = timestamps.parse(table.column(c.name), time_format, timezone, f"{path}, column {c.name!r}",
                                      lambda i: at(path, i))
            except DataError:
                continue
            i = timestamps.first_back(st.utc)
            if i is not None:
                c.note = f"not in time order: {at(path, i)} is not after {at(path, i - 1)}"


def load_table(path, target=None, task=None, columns=None, missing=None, time_format=None, timezone=None,
               delimiter=None):
    """A Dataset from a table (CSV/TSV/.gz, Parquet, Arrow/Feather): numbers, categories (one-hot) and time
    stamps as float32 features; `target` (default: the last column) as class ids or values."""
    from .files import from_entry, table_options
    path = Path(path)
    opts = table_options(target, task, columns, missing, time_format, timezone, delimiter)
    d = cache.lookup(path, "table", opts)
    if d is None:
        t = read(path, delimiter)
        target = target or t.column_names[-1]
        cols = infer(t, path, target, columns, time_format, timezone)
        text = [c for c in cols if c.role == "feature" and c.type == "text"]
        if text:
            return _text(t, cols, text, target, task, path)
        strategies(cols, missing, path)
        check_order(t, cols, path, time_format, timezone)
        task = task or guess_task(cols, t, target, path)
        evict()
        w = cache.Writer(path, "table", opts)
        try:
            meta = encode(t, cols, target, task, path, w, time_format, timezone)
            meta["plan"]["delimiter"] = delimiter
            d = w.commit(meta)
        except BaseException:
            w.abort()
            raise
    return from_entry(d, path)


def _text(t, cols, text, target, task, path):
    """A text column as token ids, as the text loader reads one (other features are not combined with it)."""
    from .dataset import Dataset
    from .sequences import build_vocab, encode as ids, tokens
    for c in [c for c in cols if c.role == "feature" and c is not text[0]]:
        c.role, c.note = "ignore", f"ignored: the text column {text[0].name!r} is the input"
    keep = keep_rows(cols, t, target)
    toks = [tokens(v or "") for v in _strings_of(t.column(text[0].name)).filter(pa.array(keep)).to_pylist()]
    labels = _strings_of(t.column(target)).filter(pa.array(keep)).to_pylist()
    classes = _class_names(set(labels))
    ix = {c: i for i, c in enumerate(classes)}
    opts = {"level": "word", "max_len": 200, "vocab": 20000, "lowercase": True}
    voc = build_vocab(toks, opts["vocab"])                                  # all texts: for a preview only
    x, lg = ids(toks, voc, opts["max_len"])
    text[0].width = opts["max_len"]
    return Dataset(x, np.array([ix[v] for v in labels]), task or ("binary" if len(classes) == 2 else "multiclass"),
                   path.name, classes, lengths=lg, vocab=voc, text=opts, tokens=toks,
                   report=[asdict(c) for c in cols])
