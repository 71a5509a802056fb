"""`layerboard` command line: summary, train, predict, export (headless, never imports Qt); no command (or a
project file) opens the app."""
import argparse
import json
import sys
import time

import numpy as np

from .errors import LayerboardError
from .layers.base import fmt


def _project(path):
    from .project import Project
    return Project.load(path)


def cmd_summary(a):
    from .shapes import infer, table, totals
    p = _project(a.project)
    infos = infer(p.graph)
    params, macs, acts = totals(infos)
    b = p.training.get("batch_size", 32)
    if a.json:
        layers = [dict(i.to_dict(), config=p.graph.nodes[n].config, inputs=p.graph.inputs_of(n))
                  for n, i in infos.items()]
        print(json.dumps({"layers": layers, "total_params": params, "total_macs": macs, "total_activations": acts,
                          "batch_size": b, "total_macs_per_batch": b * macs}))
    else:
        head, body = table(infos)
        w = [max(len(r[c]) for r in [head] + body) for c in range(len(head))]
        for r in [head] + body:
            print("  ".join(c.ljust(w[k]) if k < 3 else c.rjust(w[k]) for k, c in enumerate(r)).rstrip())
        print(f"per batch of {b}: {b * macs:,} MACs; activations {b * acts:,} values "
              f"({b * acts * 4 / 2**20:.1f} MiB in float32, forward pass)")
        for i in infos.values():
            if i.error:
                print(f"error: {i.error}", file=sys.stderr)
    return 1 if any(i.error for i in infos.values()) else 0


class Progress:
    """A one-line progress bar with ETA on a terminal (stderr)."""

    def __init__(self, total, stream=sys.stderr):
        self.total, self.stream, self.t0 = total, stream, time.perf_counter()
        self.tty = stream.isatty()

    def __call__(self, ev):
        if ev.kind == "batch_end" and self.tty:
            e = ev.epoch - 1 + ev.data["batch"] / ev.data["batches"]
            el = time.perf_counter() - self.t0
            eta = el / e * (self.total - e) if e else 0
            n = int(30 * e / self.total)
            self.stream.write(f"\r[{'#' * n}{'.' * (30 - n)}] epoch {ev.epoch}/{self.total} "
                              f"loss {ev.data['loss']:.4f}  ETA {eta:4.0f}s ")
        elif ev.kind == "finished" and self.tty:
            self.stream.write("\n")
        elif ev.kind == "finding":
            self.stream.write(("\n" if self.tty else "") + ev.data["finding"].message + "\n")


def finite_json(v):
    """v with every NaN or infinite float (numpy scalars and arrays too) replaced by None: valid JSON."""
    if isinstance(v, dict):
        return {k: finite_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite_json(x) for x in v]
    if isinstance(v, np.ndarray):
        return finite_json(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def dumps(v):
    """One line of strict JSON (null, never NaN or Infinity)."""
    return json.dumps(finite_json(v), allow_nan=False)


def cmd_train(a):
    from .parallel import free_cores
    from .session import prepare
    from .weights import FORMATS, export, format_of
    p = _project(a.project)
    if a.epochs is not None:
        p.training["epochs"] = a.epochs
    out_format = format_of(a.out, FORMATS + ("onnx",)) if a.out else None     # fails before training, not after
    model, tr = prepare(p, seed=a.seed)
    if a.threads is not None and a.threads < 1:
        raise LayerboardError(f"--threads must be at least 1, got {a.threads}")
    tr.threads = a.threads or free_cores()                  # headless: every core other jobs leave free
    if out_format == "onnx":
        from .onnx_export import problems
        if problems(model):
            raise LayerboardError(problems(model)[0])
    if a.json:
        def line(ev):
            if ev.kind == "epoch_end":
                print(dumps({"epoch": ev.epoch, **{k: v for k, v in ev.data.items() if k != "epochs"}}), flush=True)
        tr.subscribe(line)
    else:
        tr.subscribe(Progress(p.training["epochs"]))
    rec = record(p, tr, a.seed)
    try:
        res = tr.run()
        if a.out:
            export(model, a.out, out_format)
    except BaseException as e:
        if rec:
            rec.failed(str(e) or type(e).__name__)
        raise
    if rec:
        rec.done(res, weights=a.out)
    if a.json:
        print(dumps(res), flush=True)
    else:
        keys = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "train_rmse", "val_rmse",
                "train_mae", "val_mae", "train_r2", "val_r2"]
        print(f"{res['status']} after {res['epochs']} epochs ({res['seconds']:.1f} s): " +
              ", ".join(f"{k} {res[k]:.4g}" for k in keys if res.get(k) is not None))
        if res.get("baseline_val_rmse") is not None and res.get("val_rmse") is not None:
            b, v = res["baseline_val_rmse"], res["val_rmse"]
            print(f"validation RMSE {v:.4g} vs persistence (next = last value seen) {b:.4g}: "
                  f"MSE {100 * (1 - (v / b) ** 2):+.1f} % better" if b > 0 else "")
        if res["message"]:
            print(res["message"], file=sys.stderr)
    return 1 if res["status"] == "diverged" else 0


def record(project, trainer, seed=None):
    """The run history's Recorder for this run, or None (history off, or its database unusable: one warning)."""
    from .history import HistoryError, recorder
    try:
        return recorder(project, trainer, seed=seed)
    except HistoryError as e:
        print(f"layerboard: not recorded in the run history: {e}", file=sys.stderr)
        return None


def cmd_predict(a):
    from .model import Model
    from .project import atomic_write
    from .weights import load_into
    p = _project(a.project)
    model = Model(p.graph)
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
    elif a.input:
        from .data.files import read_array
        x = read_array(a.input)             # a DataError names the file: empty, damaged, object or text arrays
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
    try:
        lg = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise LayerboardError(f"cannot read {path}: {e}") from None
    t = x.shape[1] if x.ndim >= 2 else 0
    if lg.shape != (len(x),) or lg.dtype.kind not in "iu" or (lg.size and (lg.min() < 1 or lg.max() > t)):
        raise LayerboardError(f"{path}: lengths must be {len(x)} whole numbers (one per input row) in 1…{t}; "
                              f"got shape {fmt(lg.shape)} of {lg.dtype}")
    return lg.astype(np.int64)


def _predict_attention(model, x, lengths, want, batch=256):
    """Predictions and, when `want`, each MultiHeadSelfAttention node's weights (N, heads, T, T) by node name."""
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


def cmd_export(a):
    from .model import Model
    from .weights import FORMATS, export, format_of, load_into
    p = _project(a.project)
    if a.format == "pytorch":
        from .torch_export import export_project
        out, limits = export_project(p, a.output, a.weights)
        if limits:
            print(f"note: train.py cannot yet reproduce {limits}; it refuses to run (model.py and the weights "
                  "reproduce the model's outputs)", file=sys.stderr)
        print(f"wrote a PyTorch project of '{p.name or a.project}' to {out}: python {out / 'train.py'} or "
              f"torchrun --nproc_per_node=N {out / 'train.py'}")
        return 0
    if not a.weights:
        raise LayerboardError("export needs --weights (a trained .npz or .safetensors file) for this format; "
                              "only --format pytorch starts from the project's initialisation without them")
    model = Model(p.graph)
    load_into(model, a.weights)
    fmt_ = a.format or format_of(a.output, FORMATS + ("onnx",))
    export(model, a.output, fmt_)
    print(f"wrote {fmt_} export of '{p.name or a.project}' to {a.output}")
    return 0


def cmd_import_weights(a):
    from .torch_export import import_checkpoint
    from .weights import save
    p = _project(a.project)
    model, w = import_checkpoint(p, getattr(a, "from"))
    model.set_weights(w, where=f"the weights in {getattr(a, 'from')}")
    save(a.output, model)
    print(f"wrote {len(w)} tensors from {getattr(a, 'from')} to {a.output}")
    return 0


def parser():
    ap = argparse.ArgumentParser(prog="layerboard", description="Build, train and export neural networks.")
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("summary", help="per-layer shapes, parameters, MACs")
    s.add_argument("project")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_summary)
    t = sub.add_parser("train", help="train a project headless")
    t.add_argument("project")
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="write the trained model (.npz, .safetensors or .onnx, by extension)")
    t.add_argument("--json", action="store_true", help="one JSON object per epoch, then a final one")
    t.add_argument("--threads", type=int, help="compute threads (default: all cores other jobs leave free)")
    t.set_defaults(fn=cmd_train)
    r = sub.add_parser("predict", help="run a trained model on an .npy array")
    r.add_argument("project")
    r.add_argument("--weights", required=True, help="trained weights (.npz or .safetensors)")
    r.add_argument("--input", help="samples as an .npy array (raw units: the model standardises as trained)")
    r.add_argument("--text", help="a text file, one text per line, for a model trained on text data")
    r.add_argument("--output", required=True)
    r.add_argument("--lengths", help="(N,) integer .npy: valid steps of each padded input sequence")
    r.add_argument("--attention", help="also write an .npz with each attention node's weights (N, heads, T, T)")
    r.set_defaults(fn=cmd_predict)
    e = sub.add_parser("export", help="write trained weights as .npz, .safetensors, an .onnx model "
                                      "or a PyTorch project folder (--format pytorch)")
    e.add_argument("project")
    e.add_argument("--weights", help="trained weights (.npz or .safetensors); optional for --format pytorch "
                                     "(default: the initialisation for the project's seed)")
    e.add_argument("--format", choices=("npz", "safetensors", "onnx", "pytorch"),
                   help="default: from the output's extension; pytorch writes model.py, weights, train.py, data")
    e.add_argument("-o", "--output", required=True, help="output file, or folder for --format pytorch")
    e.set_defaults(fn=cmd_export)
    i = sub.add_parser("import-weights", help="turn a PyTorch checkpoint of an exported project into weights")
    i.add_argument("project")
    i.add_argument("--from", required=True, help="the state_dict train.py wrote (checkpoint.safetensors)")
    i.add_argument("-o", "--output", required=True, help="weights file to write (.npz or .safetensors)")
    i.set_defaults(fn=cmd_import_weights)
    from .history import add_parser as runs_parser
    from .search import add_parser as search_parser
    runs_parser(sub)
    search_parser(sub)
    return ap


def gui(project=None):
    """Open the window (on `project`, a path, when given); 1 with a one-line reason if it cannot start."""
    try:
        from gui.app import main as gui_main
    except ImportError as e:
        print(f"layerboard: the window cannot start ({e}); the commands summary|train|predict|export|import-weights work headless",
              file=sys.stderr)
        return 1
    return gui_main(project=project)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = parser()
    commands = set(ap._subparsers._group_actions[0].choices)
    if len(argv) == 1 and argv[0] not in commands and not argv[0].startswith("-"):   # `layerboard proj.json`
        from pathlib import Path
        if not Path(argv[0]).is_file():
            print(f"layerboard: {argv[0]} is neither a command ({'|'.join(sorted(commands))}) nor a project file",
                  file=sys.stderr)
            return 2
        return gui(argv[0])
    a = ap.parse_args(argv)
    if a.cmd is None:
        return gui()
    try:
        return a.fn(a)
    except LayerboardError as e:
        print(f"layerboard {a.cmd}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
