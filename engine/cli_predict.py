"""`layerboard evaluate` and `layerboard predict`: trained weights on the test split, new arrays, texts or tables."""
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
    if not a.output:
        raise LayerboardError("give --output FILE.npy for the predictions")
    writable(a.output, "--output")
    if a.attention:
        writable(a.attention, "--attention")
    p = _project(a.project)
    model = model_for(p, a.weights)                       # an Input's "auto" shape: as in the weights' graph
    load_into(model, a.weights)
    lengths = None
    if a.text:
        from .data.sequences import texts_to_ids
        try:
            with open(a.text, encoding="utf-8") as f:
                texts = [t.rstrip("\n") for t in f if t.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise LayerboardError(f"cannot read {a.text}: {e}") from None
        x, lengths = texts_to_ids(texts, model.meta)
    elif a.input and is_table(a.input):                  # a table encoded with the training's column plan
        return predict_command(model, a.input, a.output)
    elif a.input and (len(model.inputs) > 1 or len(model.outputs) > 1):
        return _predict_several(model, a)
    elif a.input:
        from .data.files import at, first_nonfinite, read_array
        x = read_array(a.input)             # a DataError names the file: empty, damaged, object or text arrays
        bad, count = first_nonfinite(x)
        if bad is not None:
            raise LayerboardError(f"--input {a.input}, {at(bad, x.ndim > 2)}: NaN or infinity ({count:,} of "
                                  f"{len(x):,} samples hold some)")
    else:
        raise LayerboardError("give --input ARRAY.npy or --text FILE.txt (one text per line)")
    if a.lengths:
        lengths = _lengths(a.lengths, x)
    if a.attention:
        y, maps = _predict_attention(model, x.astype(np.float32), lengths, a.attention)
    else:
        y = model.predict(x.astype(np.float32), lengths=lengths)
    import io
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
    if a.text and classes and y.ndim == 2:
        for i, row in enumerate(y[:20]):
            k = int(np.argmax(row)) if len(row) > 1 else int(row[0] > 0.5)
            print(f"line {i + 1}: {classes[k]} ({float(row.max() if len(row) > 1 else row[0]):.3f})")
    return 0


def _lengths(path, x):
    """(N,) int64 valid steps per input sequence from an .npy file, checked against x (N, T, …)."""
    from .data.files import read_array
    lg = read_array(path, how="--lengths takes an .npy file of one whole number per input row (numpy.save); to use "
                              "an array of this archive, save it alone")
    return _lengths_of(lg, x, path)


def _predict_attention(model, x, lengths, want):
    """Predictions and, when `want`, each MultiHeadSelfAttention node's weights (N, heads, T, T) by node name."""
    batch = model.batch_for()
    nodes = [n for n in model.order if model.layers[n].type == "MultiHeadSelfAttention"]
    if want and not nodes:
        raise LayerboardError("--attention: this model has no MultiHeadSelfAttention node")
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
