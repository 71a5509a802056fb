"""Sequence data: sliding windows over a CSV time series, variable-length sequences in .npz, and text."""
import csv
import gzip
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .files import at, check_labels, first, first_nonfinite, read_arrays

TIME_NAMES = ("time", "date", "datetime", "timestamp", "time_hour")
PAD, UNK = "<pad>", "<unk>"
MISSING = ("", "na", "nan", "null")                 # a label cell that holds no label
MAX_CELL = 64 << 20                                  # characters in one CSV cell (a whole book is ~1 MiB)


def _rows(path):
    """(header, [(line number, cells)]) of a CSV file (plain or .gz), blank lines skipped."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path} is not a readable CSV text file: {e}") from None
    reader = csv.reader(io.StringIO(text))
    limit = csv.field_size_limit(MAX_CELL)           # the default, 128 KiB, refuses a long review or article
    rows, start = [], 1
    try:
        for r in reader:                             # a record starts on the line after the previous one ended
            if any(c.strip() for c in r):
                rows.append((start, r))
            start = reader.line_num + 1
    except csv.Error as e:
        big = "larger than field limit" in str(e)
        raise DataError(f"{path}, line {start}: " + (f"a cell is longer than {MAX_CELL >> 20} MiB"
                        if big else f"not readable as CSV ({e})")) from None
    finally:
        csv.field_size_limit(limit)
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    return [h.strip() for h in rows[0][1]], rows[1:]


def _column(path, header, name):
    if name not in header:
        raise DataError(f"{path}: no column named {name!r}; columns are {', '.join(header)}")
    return header.index(name)


def load_series(path, target, features=None, window=24, horizon=1, time=None, per_step=False, hour_features=False,
                sort=False, time_format=None, timezone=None, delimiter=None, missing=None):
    """Sliding windows over a table (CSV/TSV/.gz, Parquet, Arrow) whose rows are in time order.

    Sample i = rows i … i+window−1 of `features` (window, F); target = `target` `horizon` rows after the
    window's last row (per_step: at every step of the window, (window, 1)). hour_features adds sin and cos
    of the hour of day (2π·hour/24) of each row's time stamp, on the stamp's own clock, as two more features.
    Rows out of time order are refused unless sort is true. The validation split is the last windows, with
    no window straddling it; features are standardised with training statistics. Windows are views of one
    (rows, F) array, never copies. Missing cells are refused (with their line) unless `missing` is 'ffill' (the
    last value before; leading ones the first value), 'interpolate' (linear between neighbours) or a number."""
    from numpy.lib.stride_tricks import sliding_window_view
    from . import timestamps
    from .table import at, header_check, numbers, read
    path = Path(path)
    t = read(path, delimiter)
    header = t.column_names
    features = list(features) if features else [h for h in header if h.lower() not in TIME_NAMES]   # target too
    header_check(t, path, features + [target] + ([time] if time else []))
    if not (isinstance(window, int) and window >= 1 and isinstance(horizon, int) and horizon >= 1):
        raise DataError(f"{path}: window and horizon must be whole numbers ≥ 1, got {window!r} and {horizon!r}")
    need, rows = window + horizon, t.num_rows
    if rows < need:
        raise DataError(f"{path}: {rows} data rows are too few for one window: window {window} + "
                        f"horizon {horizon} needs at least {need}")
    tcol = time if time is not None else next((h for h in header if h.lower() in TIME_NAMES), None)
    if hour_features and tcol is None:
        raise DataError(f"{path}: hour_features needs a time column ({', '.join(TIME_NAMES)} or 'time': NAME)")
    order, hours = None, None
    if tcol is not None:
        st = timestamps.parse(t.column(tcol), time_format, timezone, f"{path}, column {tcol!r}",
                              lambda i: at(path, i, delimiter))
        back = timestamps.first_back(st.utc)
        if back is not None and sort:
            order = np.argsort(st.utc, kind="stable")
            st.wall = st.wall[order]
        elif back is not None:
            v, p = (str(t.column(tcol)[i].as_py()).strip() for i in (back, back - 1))
            raise DataError(f"{path}, {at(path, back, delimiter)}: time stamp {v!r} is not after the previous row's ({p!r}); "
                            f"rows must be in time order, or give \"sort\": true")
        hours = st.hour() if hour_features else None
    names = list(dict.fromkeys(features + [target]))
    vals, notes = {}, []
    for n in names:
        v = numbers(t, n, path, "is not a number")
        v = v if order is None else v[order]
        gaps = np.isnan(v)
        if gaps.any():
            if missing is None:
                i = int(np.argmax(gaps)) if order is None else int(order[np.argmax(gaps)])
                raise DataError(f"{path}, {at(path, i, delimiter)}, column {n!r}: the value is missing (empty, NA or "
                                f"NaN); windows need every value: give \"missing\": \"ffill\", \"interpolate\" "
                                f"or a number")
            v = fill_gaps(v, gaps, missing, f"{path}, column {n!r}")
            notes.append(f"column {n!r}: {int(gaps.sum()):,} missing values filled ({missing})")
        vals[n] = v
    cols = [vals[f] for f in features]
    if hour_features:
        a = 2 * np.pi * hours / 24
        cols += [np.sin(a), np.cos(a)]
    x_all = np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float32)        # (rows, F)
    y_all = vals[target].astype(np.float32)                                       # (rows,)
    n = rows - need + 1
    x = sliding_window_view(x_all, (window, x_all.shape[1]))[:n, 0]               # (N, W, F) view
    if per_step:
        y = sliding_window_view(y_all[horizon:], window)[:n, :, None]            # (N, W, 1) view
    else:
        y = y_all[window + horizon - 1:][:n, None]                                # (N, 1) view
    base = None
    if target in features:                                                  # persistence: the last value seen
        f = features.index(target)
        base = x[:, :, f:f + 1] if per_step else x[:, -1, f:f + 1]
    return Dataset(x, y, "regression", path.name, lengths=np.full(n, window), chrono=True,
                   standardize_steps=True, gap=window + horizon - 1, baseline=base,
                   features=features + (["hour sin", "hour cos"] if hour_features else []), notes=notes)


def fill_gaps(v, gaps, how, where):
    """v (rows,) float64 with its NaN cells (gaps) filled by 'ffill', 'interpolate' or a constant."""
    if isinstance(how, (int, float)) and not isinstance(how, bool):
        return np.where(gaps, float(how), v)
    if how not in ("ffill", "interpolate"):
        raise DataError(f"{where}: unknown missing-value strategy {how!r} for a series; use 'ffill', "
                        f"'interpolate' or a number")
    ok = np.flatnonzero(~gaps)
    if not ok.size:
        raise DataError(f"{where}: every value is missing")
    if how == "interpolate":
        return np.interp(np.arange(len(v)), ok, v[ok])
    last = np.maximum.accumulate(np.where(gaps, 0, np.arange(len(v))))     # index of the last value seen
    last[:ok[0]] = ok[0]                                                    # leading gaps: the first value
    return v[last]


MAX_VOCAB = 1_000_000


def load_sequences(path, x="x", y="y", lengths="lengths", task=None):
    """Padded variable-length sequences from .npz: x (N, T_max, F) float or (N, T_max) integer token ids,
    lengths (N,), y (N,) class ids or per-step targets (N, T_max) class ids / (N, T_max, k) values.

    Checked as the plain .npz is, each error naming the array and the sample (and step): lengths in 1…T_max,
    no NaN or infinity (padded steps included: they would still reach a gradient), token ids 0…V−1, labels."""
    path = Path(path)
    xa, ya, la = read_arrays(path, [x, y, lengths], how=f"save x, y and lengths with numpy.savez({path.name!r}, "
                                                          f"{x}=…, {y}=…, {lengths}=…)")
    xw, yw, lw = (f"{path}, array {k!r}" for k in (x, y, lengths))
    if xa.ndim not in (2, 3):
        raise DataError(f"{xw}: sequences must be (N, T_max, F) values or (N, T_max) token ids, got shape "
                        f"{'×'.join(map(str, xa.shape))}")
    n, t = xa.shape[:2]
    if n == 0:
        raise DataError(f"{xw} holds no samples (its first dimension is 0)")
    if la.shape != (n,):
        raise DataError(f"{lw}: one length per sample is {n:,} values, got shape {'×'.join(map(str, la.shape))}")
    if len(ya) != n:
        raise DataError(f"{xw} holds {n:,} samples but {yw} holds {len(ya):,} targets")
    la = check_lengths(la, t, lw)
    valid = np.arange(t)[None, :] < la[:, None]                              # (N, T)
    for a, w in ((xa, xw), (ya, yw)):
        bad, count = first_nonfinite(a)
        if bad is not None:
            steps = a.ndim > 1 and a.shape[1] == t
            pad = steps and not valid[bad[0], bad[1]]
            raise DataError(f"{w}, {at(bad, steps)}: NaN or infinity ({count:,} of {n:,} samples hold some)" +
                            (f"; it is a padded step (length {la[bad[0]]}): fill padding with 0" if pad else ""))
    vocab = None
    if xa.ndim == 2 and xa.dtype.kind in "iu":
        bad = xa < 0
        if bad.any():
            i = first(bad)
            raise DataError(f"{xw}, {at(i, True)}: token id {xa[i]} is negative; token ids are 0 (padding), "
                            f"1 (unknown), 2 … V−1")
        top = int(xa.max())
        if top >= MAX_VOCAB:
            i = first(xa == top)
            raise DataError(f"{xw}, {at(i, True)}: token id {top:,} means a vocabulary of {top + 1:,} tokens (at "
                            f"most {MAX_VOCAB:,}); token ids are 0 (padding), 1 (unknown), 2 … V−1, without gaps")
        vocab = [PAD, UNK] + [str(i) for i in range(2, top + 1)]
    per_step = ya.ndim >= 2 and ya.shape[1] == t
    if task is None:
        task = "regression" if ya.dtype.kind == "f" and not np.all(ya == np.round(ya)) else (
            "binary" if set(np.unique(ya[valid] if per_step and ya.ndim == 2 else ya)) <= {0, 1} else "multiclass")
    if task == "regression":
        if ya.ndim == 2 and per_step:
            ya = ya[:, :, None]                                              # (N, T) per step → (N, T, 1)
    elif ya.ndim > (2 if per_step else 1):
        raise DataError(f"{yw}: class targets are one whole number per sample (N,) or per step (N, T_max), got "
                        f"shape {'×'.join(map(str, ya.shape))}")
    else:
        check_labels(ya, n, yw, valid if per_step else None)
    return Dataset(xa, ya, task, path.name, lengths=la, vocab=vocab)


def check_lengths(la, t, where):
    """(N,) int64 lengths, each a whole number in 1…t; DataError naming the first sample that is not."""
    ok = np.isfinite(la) & (la == np.round(la)) & (la >= 1) & (la <= t) if la.dtype.kind == "f" else (
        (la >= 1) & (la <= t))
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(f"{where}, sample {i}: length {la[i]:g} is not in 1…{t}; lengths must be whole numbers "
                        f"1…{t} (the padded length T_max), one per sample")
    return la.astype(np.int64)


# ---- text ----
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokens(text, level="word", lowercase=True):
    """Word tokens (letters and digits; HTML line breaks dropped) or characters."""
    text = text.replace("<br />", " ").replace("<br/>", " ")
    if lowercase:
        text = text.lower()
    return WORD.findall(text) if level == "word" else list(text)


def build_vocab(token_lists, size):
    """[PAD, UNK] + the size − 2 most frequent tokens (ties alphabetical)."""
    c = Counter(t for ts in token_lists for t in ts)
    return [PAD, UNK] + [t for t, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:max(size - 2, 0)]]


def encode(token_lists, vocab, max_len):
    """(ids (N, max_len) float32 padded with 0, lengths (N,)); unknown tokens → 1, empty texts → one <unk>."""
    ix = {t: i for i, t in enumerate(vocab)}
    x = np.zeros((len(token_lists), max_len), np.float32)
    lg = np.ones(len(token_lists), np.int64)
    for i, ts in enumerate(token_lists):
        ids = [ix.get(t, 1) for t in ts[:max_len]] or [1]
        x[i, :len(ids)] = ids
        lg[i] = len(ids)
    return x, lg


def load_text(path, text="text", target="label", level="word", max_len=200, vocab=20000, lowercase=True):
    """Labelled texts from a CSV (plain or .gz): token ids (max_len,) per text; the vocabulary is rebuilt
    from the training split only when the data is split (see Dataset.split)."""
    path = Path(path)
    if level not in ("word", "char"):
        raise DataError(f"{path}: level must be 'word' or 'char', got {level!r}")
    if not (isinstance(max_len, int) and max_len >= 1 and isinstance(vocab, int) and vocab >= 3):
        raise DataError(f"{path}: max_len must be a whole number ≥ 1 and vocab ≥ 3")
    header, rows = _rows(path)
    ti, yi = _column(path, header, text), _column(path, header, target)
    toks, labels, dropped = [], [], []
    for line, r in rows:
        if len(r) != len(header):
            raise DataError(f"{path}, line {line}: {len(r)} values but the header has {len(header)} columns")
        if r[yi].strip().lower() in MISSING:
            dropped.append(line)
            continue
        toks.append(tokens(r[ti], level, lowercase))
        labels.append(r[yi].strip())
    if not labels:
        raise DataError(f"{path}: no row has a label in column {target!r}")
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    opts = {"level": level, "max_len": max_len, "vocab": vocab, "lowercase": lowercase}
    voc = build_vocab(toks, vocab)                                           # all texts: for a preview only
    x, lg = encode(toks, voc, max_len)
    ds = Dataset(x, y, "binary" if len(classes) == 2 else "multiclass", path.name, classes, lengths=lg,
                 vocab=voc, text=opts, tokens=toks)
    ds.notes = [f"{len(dropped):,} of {len(rows):,} rows have no label in column {target!r} and are left out "
                f"(line {', '.join(map(str, dropped[:5]))}{', …' if len(dropped) > 5 else ''})"] if dropped else []
    return ds


def refit_vocab(train, others):
    """Re-encode train and the other parts with a vocabulary from train's own tokens."""
    voc = build_vocab(train.tokens, train.text["vocab"])
    out = []
    for part in [train] + list(others):
        if part is None:
            out.append(None)
            continue
        part.x, part.lengths = encode(part.tokens, voc, train.text["max_len"])
        part.vocab = voc
        out.append(part)
    return out


def texts_to_ids(texts, meta):
    """(ids, lengths) for raw texts with the vocabulary and options saved with a model's weights."""
    opts, vocab = meta.get("text"), meta.get("vocab")
    if not opts or not vocab:
        raise DataError("these weights were not trained on text: they carry no vocabulary")
    return encode([tokens(t, opts["level"], opts.get("lowercase", True)) for t in texts], vocab, opts["max_len"])
