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

TIME_NAMES = ("time", "date", "datetime", "timestamp", "time_hour")
PAD, UNK = "<pad>", "<unk>"


def _rows(path):
    """(header, [(line number, cells)]) of a CSV file (plain or .gz), blank lines skipped."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path} is not a readable CSV text file: {e}") from None
    rows = [(i, r) for i, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    return [h.strip() for h in rows[0][1]], rows[1:]


def _column(path, header, name):
    if name not in header:
        raise DataError(f"{path}: no column named {name!r}; columns are {', '.join(header)}")
    return header.index(name)


def load_series(path, target, features=None, window=24, horizon=1, time=None, per_step=False, hour_features=False,
                sort=False, time_format=None, timezone=None, delimiter=None):
    """Sliding windows over a table (CSV/TSV/.gz, Parquet, Arrow) whose rows are in time order.

    Sample i = rows i … i+window−1 of `features` (window, F); target = `target` `horizon` rows after the
    window's last row (per_step: at every step of the window, (window, 1)). hour_features adds sin and cos
    of the hour of day (2π·hour/24) of each row's time stamp, on the stamp's own clock, as two more features.
    Rows out of time order are refused unless sort is true. The validation split is the last windows, with
    no window straddling it; features are standardised with training statistics. Windows are views of one
    (rows, F) array, never copies."""
    from numpy.lib.stride_tricks import sliding_window_view
    from . import timestamps
    from .table import header_check, numbers, read
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
        st = timestamps.parse(t.column(tcol), time_format, timezone, f"{path}, column {tcol!r}")
        back = timestamps.first_back(st.utc)
        if back is not None and sort:
            order = np.argsort(st.utc, kind="stable")
            st.wall = st.wall[order]
        elif back is not None:
            v, p = (str(t.column(tcol)[i].as_py()).strip() for i in (back, back - 1))
            raise DataError(f"{path}, line {back + 2}: time stamp {v!r} is not after the previous row's ({p!r}); "
                            f"rows must be in time order, or give \"sort\": true")
        hours = st.hour() if hour_features else None
    names = list(dict.fromkeys(features + [target]))
    vals = {}
    for n in names:
        v = numbers(t, n, path, "is not a number")
        if np.isnan(v).any():
            i = int(np.argmax(np.isnan(v)))
            raise DataError(f"{path}, line {i + 2}, column {n!r}: the value is missing (empty, NA or NaN); "
                            f"windows need every value")
        vals[n] = v if order is None else v[order]
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
                   features=features + (["hour sin", "hour cos"] if hour_features else []))


def load_sequences(path, x="x", y="y", lengths="lengths", task=None):
    """Padded variable-length sequences from .npz: x (N, T_max, F) float or (N, T_max) integer token ids,
    lengths (N,), y (N,) class ids or per-step targets (N, T_max) class ids / (N, T_max, k) values."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (x, y, lengths) if k not in f.files]
            if missing:
                raise DataError(f"{path}: no array named {missing[0]!r}; it holds {', '.join(f.files) or 'none'}")
            xa, ya, la = f[x], f[y], f[lengths]
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    for name, a in ((x, xa), (y, ya), (lengths, la)):
        if a.dtype.kind not in "biuf":
            raise DataError(f"{path}: array {name!r} must be numeric, got {a.dtype}")
    if xa.ndim not in (2, 3) or la.shape != (len(xa),):
        raise DataError(f"{path}: x must be (N, T_max, F) or (N, T_max) token ids and lengths (N,); got "
                        f"{xa.shape} and {la.shape}")
    if la.dtype.kind == "f" and not np.all(la == np.round(la)):
        raise DataError(f"{path}: lengths must be whole numbers")
    la = la.astype(np.int64)
    if task is None:
        task = "regression" if ya.dtype.kind == "f" and not np.all(ya == np.round(ya)) else (
            "binary" if ya.size and set(np.unique(ya)) <= {0, 1} else "multiclass")
    if task == "regression" and ya.ndim == 2 and ya.shape[1] == xa.shape[1]:
        ya = ya[:, :, None]                                                  # (N, T) per step → (N, T, 1)
    vocab = None
    if xa.ndim == 2 and xa.dtype.kind in "iu":
        vocab = [PAD, UNK] + [str(i) for i in range(2, int(xa.max()) + 1)]
    return Dataset(xa, ya, task, path.name, lengths=la, vocab=vocab)


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
    toks, labels = [], []
    for line, r in rows:
        if len(r) != len(header):
            raise DataError(f"{path}, line {line}: {len(r)} values but the header has {len(header)} columns")
        toks.append(tokens(r[ti], level, lowercase))
        labels.append(r[yi].strip())
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    opts = {"level": level, "max_len": max_len, "vocab": vocab, "lowercase": lowercase}
    voc = build_vocab(toks, vocab)                                           # all texts: for a preview only
    x, lg = encode(toks, voc, max_len)
    return Dataset(x, y, "binary" if len(classes) == 2 else "multiclass", path.name, classes, lengths=lg,
                   vocab=voc, text=opts, tokens=toks)


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
