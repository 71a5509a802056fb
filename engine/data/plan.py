"""A trained model's column plan (saved with its weights) and predictions for a new table encoded with it:
read a block of rows at a time from the memory-mapped file, written as CSV."""
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DataError

BLOCK = 1 << 16          # rows encoded and predicted at a time
TABLES = (".csv", ".tsv", ".gz", ".parquet", ".pq", ".feather", ".arrow", ".ipc")


def is_table(path):
    """True for a file name the table reader takes (CSV/TSV/.gz, Parquet, Arrow/Feather)."""
    return str(path).lower().endswith(TABLES)


def plan_of(train):
    """JSON-able: how the training table's columns became features (types, roles, levels, fill values)."""
    fill = getattr(train.x, "fill", None)
    keep = ("name", "type", "role", "strategy", "width", "levels")
    return dict(train.plan, task=train.task, features=list(train.features),
                columns=[{k: c[k] for k in keep} for c in train.report if c["role"] == "feature"],
                fill=None if fill is None else [None if np.isnan(v) else float(v) for v in fill])


def _encode(part, plan, path, first, notes):
    """(m, F) float32 features of the rows `part` (an Arrow table, data rows first…) encoded as in training."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from . import timestamps
    from .columns import _strings_of, time_features
    from .table import at, numbers
    m = part.num_rows
    x = np.empty((m, len(plan["features"])), np.float32)
    fill = plan.get("fill")
    j = 0
    for c in plan["columns"]:
        name, w = c["name"], c["width"]
        if c["type"] == "number":
            v = numbers(part, name, path, first=first)
            miss = np.isnan(v)
            if miss.any():
                if w != 2 or fill is None or fill[j] is None:
                    i = int(np.argmax(miss))
                    raise DataError(f"{path}, {at(path, first + i)}, column {name!r}: the value is missing and the "
                                    f"training data had no missing values here to learn a fill from")
                v = np.where(miss, fill[j], v)
            x[:, j] = v
            if w == 2:
                x[:, j + 1] = miss
        elif c["type"] == "category":
            levels = c["levels"]
            s = _strings_of(part.column(name), plan["whole"].get(name, False))
            idx = pc.index_in(s, value_set=pa.array(levels)).to_numpy(zero_copy_only=False)
            nulls = s.is_null().to_numpy(zero_copy_only=False)
            if nulls.any():
                if levels[-1] != "missing" or c.get("strategy") != "level":
                    i = int(np.argmax(nulls))
                    raise DataError(f"{path}, {at(path, first + i)}, column {name!r}: the value is missing and the "
                                    f"training data had no missing values here")
                idx[nulls] = len(levels) - 1
            unseen = np.isnan(idx)
            if unseen.any():                                # a level training never saw: no level set
                i = int(np.argmax(unseen))
                notes.setdefault(name, [0, f"{at(path, first + i)}, {s[i].as_py()!r}"])[0] += int(unseen.sum())
            for lv in range(len(levels)):
                x[:, j + lv] = idx == lv
        elif c["type"] == "datetime":
            st = timestamps.parse(part.column(name), plan.get("time_format"), plan.get("timezone"),
                                  f"{path}, column {name!r}", lambda i: at(path, first + i))
            x[:, j:j + 4] = time_features(st.hour(), st.wall)
        j += w
    return x


def predict_table(model, path, output):
    """Predict every row of the table at `path` with `model` (trained on a table) and write `output` (CSV):
    row (data row, from 1), the prediction, and for classes one probability column each. Returns a summary."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from .table import header_check, read
    plan = model.meta.get("table")
    if not plan:
        raise DataError("these weights were not trained on a table: they carry no column plan (give --input an "
                        ".npy array)")
    path = Path(path)
    t = read(path, plan.get("delimiter"))
    need = [c["name"] for c in plan["columns"]]
    missing = [n for n in need if n not in t.column_names]
    if missing:
        raise DataError(f"{path}: no column named {missing[0]!r}; the model was trained on the columns "
                        f"{', '.join(need)}")
    header_check(t, path, need)
    classes = model.meta.get("classes") or []
    target = plan.get("target") or "prediction"
    fd, tmp = tempfile.mkstemp(prefix=".layerboard-predict.", suffix=".csv", dir=Path(output).parent or ".")
    os.close(fd)
    notes, n = {}, 0
    try:
        writer = None
        for r0 in range(0, t.num_rows, BLOCK):
            part = t.slice(r0, BLOCK)
            y = model.predict(_encode(part, plan, path, r0, notes))
            cols = {"row": pa.array(np.arange(r0 + 1, r0 + part.num_rows + 1))}
            if plan["task"] == "regression":
                y = y.reshape(len(y), -1)
                for k in range(y.shape[1]):
                    cols[target if y.shape[1] == 1 else f"{target}[{k}]"] = pa.array(y[:, k].astype(np.float64))
            else:
                p = y.reshape(len(y), -1)
                if p.shape[1] == 1:                              # one sigmoid unit: P(second class)
                    p = np.c_[1 - p[:, 0], p[:, 0]]
                cols[target] = pa.array([classes[i] if i < len(classes) else str(i) for i in np.argmax(p, axis=1)])
                for k in range(p.shape[1]):
                    cols[f"p({classes[k] if k < len(classes) else k})"] = pa.array(p[:, k].astype(np.float64))
            block = pa.table(cols)
            writer = writer or pcsv.CSVWriter(tmp, block.schema)
            writer.write_table(block)
            n += part.num_rows
        if writer is not None:
            writer.close()
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    lines = [f"{k:,} rows have a level of column {name!r} not seen in training (first: {where}): no level set"
             for name, (k, where) in notes.items()]
    return n, lines


def predict_command(model, path, output):
    """`layerboard predict --input TABLE`: predict_table, then what was written and any notes; exit status 0."""
    import sys
    n, notes = predict_table(model, path, output)
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    print(f"wrote {n:,} predictions to {output}")
    return 0
