"""What a dataset looks like once read: the column report and the first samples as the model is fed them
(shared by `layerboard data` and the window)."""
import numpy as np

from .dataset import Rows

HEAD = ("column", "type", "role", "missing", "strategy", "filled", "dropped", "width", "note")


def column_rows(ds):
    """[HEAD, (cells as text) per column] of a table's column report, or [] for other datasets."""
    if not ds.report:
        return []
    body = []
    for c in ds.report:
        s = c.get("strategy")
        note = c.get("note") or (f"{len(c['levels'])} levels: {', '.join(map(str, c['levels'][:6]))}"
                                 f"{', …' if len(c['levels']) > 6 else ''}" if c.get("levels") else "")
        body.append((c["name"], c["type"], c["role"], f"{c['missing']:,}", "" if s is None else str(s),
                     f"{c['filled']:,}", f"{c['dropped']:,}", str(c["width"]), note))
    return [HEAD] + body


def summary_line(ds):
    """One line: samples, their encoded shape, task and classes."""
    what = (f"{ds.task}, {ds.n_classes} classes: {', '.join(ds.classes[:10])}{', …' if ds.n_classes > 10 else ''}"
            if ds.task != "regression" else f"regression, targets of shape {tuple(ds.y.shape[1:])}")
    return f"{len(ds):,} samples of shape {tuple(int(d) for d in ds.x.shape[1:])} (the Input's \"auto\" shape); {what}"


def first_rows(ds, train=None, n=5):
    """(feature names, (n, F) float32) of the first samples in file order, with missing cells filled as
    training fills them (train: the training part of a split, which holds the fill values)."""
    x = ds.x
    if isinstance(x, Rows) and train is not None and isinstance(train.x, Rows):
        x = Rows(x.base, x.idx, train.x.fill)
    rows = np.asarray(x[:n], np.float32).reshape(min(n, len(ds)), -1)         # (n, features)
    f = ds.features or []
    if len(f) != rows.shape[1] and f and len(f) == ds.x.shape[-1]:       # sequences: every step's features
        f = [f"step {t}: {n}" for t in range(rows.shape[1] // len(f)) for n in f]
    names = f if len(f) == rows.shape[1] else [f"x[{i}]" for i in range(rows.shape[1])]
    return names, rows


def text_table(rows):
    """Lines of a left-aligned text table (numbers right-aligned)."""
    if not rows:
        return []
    w = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    num = [all(r[c].replace(",", "").replace(".", "").lstrip("-").isdigit() for r in rows[1:] if r[c])
           for c in range(len(w))]
    return ["  ".join(v.rjust(w[k]) if num[k] else v.ljust(w[k]) for k, v in enumerate(r)).rstrip() for r in rows]


def column_counts(ref, base, name, bins=30, top=20):
    """What the window plots for one column of a table dataset: {'kind': 'hist', 'edges', 'counts'} for
    numbers, {'kind': 'bars', 'labels', 'counts'} (the top levels, then 'other') for anything else; 'missing'
    counts empty cells. Read from the cached parsed table."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.compute as pc

    from .table import header_check, numeric_share, read
    p = Path(ref["path"]).expanduser()
    p = p if p.is_absolute() or base is None else Path(base) / p
    t = read(p, ref.get("delimiter"))
    header_check(t, p, [name])
    c = t.column(name)
    missing = c.null_count
    is_str = str(c.type) in ("string", "large_string")
    v = None
    if not is_str or numeric_share(c) >= 0.5:
        try:
            v = np.asarray(pc.cast(pc.utf8_trim_whitespace(c) if is_str else c, "float64")
                           .to_numpy(zero_copy_only=False), np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            v = None                                               # a bad cell or a time stamp: count values
    if v is not None:
        ok = np.isfinite(v)
        missing += int((~ok).sum()) - c.null_count
        if ok.any():
            counts, edges = np.histogram(v[ok], bins=bins)
            return {"kind": "hist", "edges": edges, "counts": counts, "missing": missing}
    vc = pc.value_counts(pc.drop_null(c).cast("string")).to_pylist()
    vc.sort(key=lambda d: -d["counts"])
    labels, counts = [d["values"] for d in vc[:top]], [d["counts"] for d in vc[:top]]
    if len(vc) > top:
        labels.append("other")
        counts.append(sum(d["counts"] for d in vc[top:]))
    return {"kind": "bars", "labels": labels, "counts": np.array(counts), "missing": missing}
