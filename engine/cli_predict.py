"""`layerboard evaluate` and `layerboard predict`: trained weights on the test split, new arrays, texts or tables."""
import os

import numpy as np

from .cli import _project, dumps, writable
from .errors import LayerboardError
from .layers.base import fmt


def cmd_evaluate(a):
    """Metrics of trained weights on the project's held-out test split (test_split in its training settings)."""
    from .session import evaluate_test, prepare
    from .weights import load
    p = _project(a.project)
    if not p.training.get("test_split"):
        raise LayerboardError(f"{a.project} keeps no test split: set \"test_split\" (e.g. 0.1) in its training "
                              "settings, train, then evaluate")
    arrays, _ = load(a.weights)
    model, tr = prepare(p, weights=arrays)
    res = evaluate_test(tr)
    print(dumps(res) if a.json else ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in res.items()))
    return 0


def cmd_predict(a):
    from .data.plan import is_table, predict_command
    from .session import model_for
    from .project import atomic_write
    from .weights import load_into
    if _project(a.project).dataset.get("kind") == "pairs":          # translation: text in, decoded text out
        from .translate import cmd_predict as translate
        return translate(a, _project(a.project))
    if not a.text and not a.input:
        raise LayerboardError("give --input ARRAY.npy, --input TEXTS.txt (one text per line) or --text \"a text\"")
    if a.text and a.input:
        raise LayerboardError("give --text (texts themselves) or --input FILE, not both")
    p = _project(a.project)
    texts, filed = _texts(a, p.dataset.get("kind"))
    if not a.output and texts is None:
        raise LayerboardError("give --output FILE.npy for the predictions")
    if a.output:
        writable(a.output, "--output")
    if a.attention:
        writable(a.attention, "--attention")
    model = model_for(p, a.weights)                       # an Input's "auto" shape: as in the weights' graph
    load_into(model, a.weights)
    lengths = None
    if texts is not None:
        from .data.sequences import texts_to_ids
        x, lengths = texts_to_ids(texts, model.meta)
    elif a.input and is_table(a.input):                  # a table encoded with the training's column plan
        return predict_command(model, a.input, a.output)
    elif len(model.inputs) > 1 or len(model.outputs) > 1:
        return _predict_several(model, a)
    else:
        from .data.files import at, first_nonfinite, read_array
        x = read_array(a.input)             # a DataError names the file: empty, damaged, object or text arrays
        bad, count = first_nonfinite(x)
        if bad is not None:
            raise LayerboardError(f"--input {a.input}, {at(bad, x.ndim > 2)}: NaN or infinity ({count:,} of "
                                  f"{len(x):,} samples hold some)")
    if a.lengths:
        lengths = _lengths(a.lengths, x)
    if a.attention:
        y, maps = _predict_attention(model, x.astype(np.float32), lengths, a.attention)
    else:
        y = model.predict(x.astype(np.float32), lengths=lengths)
    import io
    if a.output:
        buf = io.BytesIO()
        np.save(buf, y)
        atomic_write(a.output, buf.getvalue())
        print(f"wrote {len(y)} predictions of shape {fmt(y.shape[1:])} to {a.output}")
    if a.attention:
        buf = io.BytesIO()
        np.savez(buf, **maps)
        atomic_write(a.attention, buf.getvalue())
        print(f"wrote attention weights (N, heads, T, T) of {', '.join(maps)} to {a.attention}")
    classes = model.meta.get("classes")
    if texts is not None and classes and y.ndim == 2:
        for i, row in enumerate(y if not a.output else y[:20]):
            k = int(np.argmax(row)) if len(row) > 1 else int(row[0] > 0.5)
            print(f"{'line' if filed else 'text'} {i + 1}: {classes[k]} "
                  f"({float(row.max() if len(row) > 1 else row[0]):.3f})")
    return 0


def _texts(a, kind):
    """(texts to classify, read from a file): each --text itself, or the non-empty lines of --input FILE for a
    text project (not an .npy/.npz array or a table); (None, False) for array inputs."""
    import sys
    from .data.plan import is_table
    from .translate import lines
    if a.text:
        if len(a.text) == 1 and os.path.isfile(a.text[0]):          # the form documented before 2026-12-07
            print(f"note: --text FILE is deprecated, use --input {a.text[0]} (--text is now a text itself)",
                  file=sys.stderr)
            return [t for t in lines(a.text[0]) if t.strip()], True
        return list(a.text), False
    if a.input and kind == "text" and not a.input.lower().endswith((".npy", ".npz")) and not is_table(a.input):
        return [t for t in lines(a.input) if t.strip()], True
    return None, False


def _lengths(path, x):
    """(N,) int64 valid steps per input sequence from an .npy file, checked against x (N, T, …)."""
    from .data.files import read_array
    lg = read_array(path, how="--lengths takes an .npy file of one whole number per input row (numpy.save); to use "
                              "an array of this archive, save it alone")
    return _lengths_of(lg, x, path)


def _predict_attention(model, x, lengths, want):
    """Predictions and, when `want`, each attention node's weights (N, heads, T, S) by node name."""
    batch = model.batch_for()
    nodes = [n for n in model.order if "attention" in type(model.layers[n]).taps_doc]  # layers that declare the map
    if want and not nodes:
        from engine.layers import REGISTRY
        kinds = ", ".join(t for t, c in REGISTRY.items() if "attention" in c.taps_doc)
        raise LayerboardError(f"--attention: this model has no attention layer ({kinds})")
    ys, maps = [], {n: [] for n in nodes}
    for i in range(0, len(x), batch):
        ys.append(model.predict(x[i:i + batch], batch_size=batch,
                                lengths=None if lengths is None else lengths[i:i + batch]))
        for n in nodes:                                           # taps of the batch just run
            maps[n].append(model.layers[n].attention_maps())
    y = np.concatenate(ys) if ys else model.predict(x)
    return y, {n: np.concatenate(v) for n, v in maps.items() if v}


def _predict_several(model, a):
    """Several Inputs (--input an .npz with one array per Input name) or several outputs (--output an .npz with
    one array per output node); --lengths: .npy for the first Input or .npz per Input name."""
    import io
    import zipfile
    from .data.files import at, first_nonfinite, read_array, read_arrays
    from .project import atomic_write
    if len(model.inputs) > 1:
        xs = dict(zip(model.inputs, read_arrays(a.input, model.inputs, how=f"give an .npz with one array per Input "
                                                f"({', '.join(model.inputs)}), made with numpy.savez")))
    else:
        xs = {model.inputs[0]: read_array(a.input)}
    for n, x in xs.items():
        bad, count = first_nonfinite(x)
        if bad is not None:
            raise LayerboardError(f"--input {a.input}, Input '{n}', {at(bad, x.ndim > 2)}: NaN or infinity")
        xs[n] = x.astype(np.float32)
    lengths = None
    if a.lengths and zipfile.is_zipfile(a.lengths):            # an .npz: lengths of the Inputs it names
        with np.load(a.lengths, allow_pickle=False) as f:
            names = [n for n in model.inputs if n in f.files]
        if not names:
            raise LayerboardError(f"--lengths {a.lengths}: name its arrays after the Inputs ({', '.join(model.inputs)})")
        lengths = {n: _lengths_of(lg, xs[n], a.lengths) for n, lg in zip(names, read_arrays(a.lengths, names))}
    elif a.lengths:
        lengths = {model.inputs[0]: _lengths(a.lengths, xs[model.inputs[0]])}
    ys = model.predict_all(xs, lengths=lengths)
    buf = io.BytesIO()
    if len(ys) > 1:
        np.savez(buf, **ys)
    else:
        np.save(buf, next(iter(ys.values())))
    atomic_write(a.output, buf.getvalue())
    print(f"wrote predictions of {', '.join(f'{o} {fmt(y.shape[1:])}' for o, y in ys.items())} for "
          f"{len(next(iter(ys.values())))} samples to {a.output}")
    return 0


def _lengths_of(lg, x, path):
    """lg checked as the (N,) valid steps of the sequences x (N, T, …)."""
    from .data.sequences import check_lengths
    if x.ndim < 2:
        raise LayerboardError(f"--lengths {path}: the input {fmt(x.shape[1:])} per row is not a sequence (T, …)")
    if lg.shape != (len(x),):
        raise LayerboardError(f"--lengths {path}: one length per input row is {len(x):,} values, got shape "
                              f"{fmt(lg.shape)}")
    return check_lengths(lg, x.shape[1], f"--lengths {path}")
