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
    names = ds.features or [f"x[{i}]" for i in range(rows.shape[1])]
    return names, rows


def text_table(rows):
    """Lines of a left-aligned text table (numbers right-aligned)."""
    if not rows:
        return []
    w = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    num = [all(r[c].replace(",", "").replace(".", "").lstrip("-").isdigit() for r in rows[1:] if r[c])
           for c in range(len(w))]
    return ["  ".join(v.rjust(w[k]) if num[k] else v.ljust(w[k]) for k, v in enumerate(r)).rstrip() for r in rows]
