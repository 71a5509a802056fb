"""The confusion matrix and its cells: which samples of true class i the model predicted as class j, and how
to show a sample (an image, a text, a table row or a sequence), for the window's confusion view and the CLI."""
import numpy as np


def predictions(out, n_classes):
    """Class ids from evaluation-mode outputs: argmax, or sigmoid > 0.5 for a single output."""
    out = out.reshape(len(out), -1)
    return (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else np.argmax(out, axis=1)


def confusion(y, pred, n):
    """(n, n) counts: row = true class, column = predicted class."""
    m = np.zeros((n, n), np.int64)
    ok = (pred >= 0) & (pred < n)
    np.add.at(m, (y[ok], pred[ok]), 1)
    return m


def outcomes(model, x, y, lengths=None, target_lengths=None):
    """(true classes, predicted classes, where) of samples x: one row per sample, or per valid step of
    per-step sequence targets, where (rows, 2) then names each row's (sample, step); else where is None.

    An encoder–decoder (target_lengths given) counts its teacher-forced next tokens over valid target steps."""
    from .seq2seq import source_input, target_input, teacher_inputs
    tgt = target_input(model)
    if tgt is not None:
        src = source_input(model)
        out = np.asarray(model.predict({src: x, tgt: teacher_inputs(y)}, lengths={src: lengths, tgt: target_lengths}))
        lengths = target_lengths
    else:
        out = np.asarray(model.predict(x, lengths=lengths))
    where, y = None, np.asarray(y)
    if lengths is not None and out.ndim == 3:                  # a class per step: every valid step counts
        valid = np.arange(out.shape[1])[None, :] < np.asarray(lengths)[:, None]      # (n, T)
        out, y, where = out[valid], y[valid], np.argwhere(valid)
    return y, predictions(out, out.shape[-1]), where


def cell(y, pred, i, j):
    """Indices (ascending) of the samples with true class i predicted as class j: the cell (i, j)'s count."""
    return np.flatnonzero((np.asarray(y) == i) & (np.asarray(pred) == j))


def kind(x, vocab=None, features=None, lengths=None):
    """How a sample of x (N, …) is shown: 'text' (token ids), 'image' ((C, H, W) or a flat square of ≥ 16
    pixels), 'table' (named features or a flat row), 'sequence' ((T, F) steps)."""
    if vocab is not None:
        return "text"
    shape = tuple(x.shape[1:])
    if len(shape) == 3 and shape[0] in (1, 3):
        return "image"
    if len(shape) == 1 and features is None and shape[0] >= 16 and round(shape[0] ** 0.5) ** 2 == shape[0]:
        return "image"
    if len(shape) == 1:
        return "table"
    return "sequence" if len(shape) == 2 and (lengths is not None or shape[0] > 1) else "table"


def image(sample):
    """(H, W) or (H, W, 3) float32 in 0…1 of one image sample ((C, H, W) or flat square), min–max scaled."""
    a = np.asarray(sample, np.float32)
    if a.ndim == 1:
        s = round(a.size ** 0.5)
        a = a.reshape(s, s)                                   # (H, W)
    elif a.shape[0] == 1:
        a = a[0]                                              # (H, W)
    else:
        a = a.transpose(1, 2, 0)                              # (H, W, 3)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def text(ids, vocab, length=None):
    """The tokens of one text sample, padding left out ('<unk>' for ids outside the vocabulary)."""
    ids = np.asarray(ids).astype(np.int64).reshape(-1)[:length]
    words = [vocab[t] if 0 <= t < len(vocab) else "<unk>" for t in ids if t != 0]
    level_char = all(len(w) == 1 for w in words if not w.startswith("<"))
    return ("" if level_char else " ").join(words)


def row(sample, features=None):
    """[(feature name, value)] of one table sample (names 'x0', 'x1', … when the data has none)."""
    v = np.asarray(sample, np.float64).reshape(-1)
    names = list(features) if features is not None and len(features) == len(v) else [f"x{k}" for k in range(len(v))]
    return list(zip(names, v.tolist()))


def describe(x, idx, vocab=None, features=None, lengths=None, limit=3):
    """One line per sample idx for a terminal: the text, the first `limit` values, or the image's size."""
    k = kind(x, vocab, features, lengths)
    out = []
    for s in idx:
        if k == "text":
            out.append(text(x[s], vocab, None if lengths is None else int(lengths[s])))
        elif k == "image":
            out.append("image " + "×".join(map(str, image(x[s]).shape)))
        elif k == "table":
            r = row(x[s], features)
            out.append(", ".join(f"{n} {v:.4g}" for n, v in r[:limit]) + (", …" if len(r) > limit else ""))
        else:
            steps = x[s][: None if lengths is None else int(lengths[s])]
            out.append(f"{len(steps)} steps, first {np.asarray(steps[0]).round(3).tolist()}")
    return out


# ---- command line: layerboard confusion PROJECT --weights W [--split val|test] [--cell I J] ----
def add_parser(sub):
    c = sub.add_parser("confusion", help="the confusion matrix of trained weights on the validation (or test) "
                                         "split; --cell I J lists the samples of true class I predicted as J")
    c.add_argument("project")
    c.add_argument("--weights", required=True, help="trained weights (.safetensors or .npz)")
    c.add_argument("--split", choices=("val", "test"), default="val")
    c.add_argument("--cell", nargs=2, metavar=("TRUE", "PREDICTED"), help="class ids or names")
    c.add_argument("--limit", type=int, default=20, help="samples listed with --cell (default 20)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_confusion)


def _class(name, classes):
    from .errors import ConfigError
    names = [str(c) for c in classes]
    if name in names:
        return names.index(name)
    if name.isdigit() and int(name) < len(names):
        return int(name)
    raise ConfigError(f"--cell: no class {name!r}; the classes are {', '.join(names)}")


def cmd_confusion(a):
    from .cli import _project, dumps
    from .errors import LayerboardError
    from .session import prepare
    from .weights import load
    p = _project(a.project)
    model, tr = prepare(p, weights=load(a.weights)[0])
    data = tr.val if a.split == "val" else getattr(tr, "test", None)
    if data is None or not len(data):
        raise LayerboardError(f"{a.project} keeps no {'validation' if a.split == 'val' else 'test'} split")
    if not tr.classify:
        raise LayerboardError(f"{a.project} is a regression: a confusion matrix needs classes")
    classes = [str(c) for c in tr.train.classes]
    y, pred, where = outcomes(model, data.x, data.y, data.lengths)
    m = confusion(y, pred, len(classes))
    out = {"split": a.split, "classes": classes, "matrix": m.tolist()}
    if a.cell:
        i, j = (_class(c, classes) for c in a.cell)
        rows = cell(y, pred, i, j)
        samples = rows if where is None else where[rows, 0]
        out["cell"] = {"true": classes[i], "predicted": classes[j], "count": len(rows),
                       "samples": samples.tolist(), **({"steps": where[rows, 1].tolist()} if where is not None else {})}
        shown = samples[:a.limit]
        out["cell"]["shown"] = describe(data.x, shown, data.vocab, data.features, data.lengths)
    if a.json:
        print(dumps(out))
        return 0
    w = max(len(c) for c in classes + [str(int(m.max()))]) + 1
    print(f"{a.split} split, rows: true class, columns: predicted class")
    print(" " * w + "".join(c.rjust(w) for c in classes))
    for c, r in zip(classes, m):
        print(c.rjust(w) + "".join(str(int(v)).rjust(w) for v in r))
    if a.cell:
        c = out["cell"]
        print(f"true {c['true']}, predicted {c['predicted']}: {c['count']} sample(s)")
        for s, text in zip(shown, c["shown"]):
            print(f"  #{int(s)}: {text}")
    return 0
