"""`layerboard` command line: summary, train, predict, export (headless, never imports Qt); no command (or a
project file) opens the app."""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .cli_gui import LINUX_LIBS, gui, qt_problem  # noqa: F401  (qt_problem, LINUX_LIBS: tests and README)
from .errors import LayerboardError
from .report import baseline_text


def _project(path):
    from .project import Project
    return Project.load(path)


def cmd_summary(a):
    from .shapes import infer, table, totals
    from .validate import mark
    p = _project(a.project)
    graph = p.graph
    if any(n.type == "Input" and n.config.get("shape") == "auto" for n in graph.nodes.values()):
        from .data import load
        from .session import auto_shapes
        graph = auto_shapes(graph, load(p.dataset, p.base))        # the dataset's encoded sample shape
    infos = mark(graph, dict(infer(graph)))        # the window's check of the graph as a whole
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
        for msg in dict.fromkeys(i.error for i in infos.values() if i.error):    # one line marked on 2 nodes: once
            print(f"error: {msg}", file=sys.stderr)
    return 1 if any(i.error for i in infos.values()) else 0


def cmd_data(a):
    """The dataset's column report and its first samples as the model is fed them."""
    from .data import load
    from .data.report import column_rows, first_rows, summary_line, text_table
    p = _project(a.project)
    ds = load(p.dataset, p.base)
    for line in text_table(column_rows(ds)):
        print(line)
    print(summary_line(ds))
    cfg = p.training
    train = ds.split(cfg.get("validation_split", 0.2), cfg.get("seed", 0))[0] if len(ds) > 1 else ds
    names, rows = first_rows(ds, train, a.rows)
    print(f"first {len(rows)} samples as fed (file order; missing cells filled from the training rows):")
    shown = min(len(names), a.features)
    body = [(names[j],) + tuple(f"{v:.6g}" for v in rows[:, j]) for j in range(shown)]
    for line in text_table([("feature",) + tuple(f"#{i}" for i in range(len(rows)))] + body):
        print(line)
    if shown < len(names):
        print(f"… {len(names) - shown:,} more features (--features N shows more)")
    return 0


class Progress:
    """A one-line progress bar with ETA on a terminal (stderr)."""

    def __init__(self, total, stream=None):
        self.total, self.stream, self.t0 = total, stream or sys.stderr, time.perf_counter()
        self.tty = self.stream.isatty()

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


def writable(path, what, folder=False):
    """LayerboardError unless `path` can be written (a file; with folder, a folder created if missing), tried
    with a temporary file in its folder and removed at once: checked before any long work starts."""
    p = Path(path).expanduser()
    if folder:
        d = p
        while not d.exists() and d != d.parent:                 # export_project creates the missing folders
            d = d.parent
        if not d.is_dir():
            raise LayerboardError(f"{what} {path}: {d} is a file, not a folder")
    else:
        d = p.parent
        if p.is_dir():
            raise LayerboardError(f"{what} {path} is a folder; give a file name, e.g. {p / 'model.npz'}")
        if not d.is_dir():
            raise LayerboardError(f"{what} {path}: the folder {d} does not exist" if not d.exists() else
                                  f"{what} {path}: {d} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".layerboard-check.", dir=d)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise LayerboardError(f"{what} {path}: cannot write in the folder {d}: {e.strerror or e}") from None


def cmd_train(a):
    from .data import load
    from .parallel import cpu_times, free_cores
    from .session import evaluate_test, prepare, warm_context
    from .validate import trained_note
    from .weights import FORMATS, export, format_of
    t0, cpu0 = time.perf_counter(), cpu_times()
    warm_context()                                         # numba's set-up overlaps reading the data
    p = _project(a.project)
    if a.epochs is not None:
        p.training["epochs"] = a.epochs
    out_format = format_of(a.out, FORMATS + ("onnx",)) if a.out else None     # fails before training, not after
    if a.out:
        writable(a.out, "--out")
    ds = load(p.dataset, p.base)
    for note in getattr(ds, "notes", None) or []:
        print(f"note: {note}", file=sys.stderr)
    model, tr = prepare(p, seed=a.seed, data=ds)
    for note in (trained_note(model.graph), _frozen(model)):     # several outputs: which one is fitted
        if note:
            print(f"note: {note}", file=sys.stderr)
    if a.threads is not None and a.threads < 1:
        raise LayerboardError(f"--threads must be at least 1, got {a.threads}")
    tr.threads = a.threads or free_cores(cpu0)              # headless: every core other jobs left free meanwhile
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
    from .history import recorder
    rec = recorder(p, tr, seed=a.seed, warn=lambda m: print(f"layerboard: {m}", file=sys.stderr))
    if a.out:                                   # saved before the final evaluation, which may run out of memory
        tr.subscribe(lambda ev: ev.kind == "trained" and _save(model, a.out, out_format))
    try:
        res = tr.run()
        if res["status"] != "diverged":
            res.update(evaluate_test(tr))                     # the held-out test split, read once, after training
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
                "train_mae", "val_mae", "train_r2", "val_r2", "test_loss", "test_accuracy", "test_rmse", "test_r2",
                "val_exact_match", "val_token_accuracy", "val_bleu"]
        n = res["epochs"]
        print(f"{res['status']} after {n} epoch{'' if n == 1 else 's'} ({time.perf_counter() - t0:.1f} s in all, of "
              f"which the training loop {res['seconds']:.1f} s): " +
              ", ".join(f"{k} {res[k]:.4g}" for k in keys if res.get(k) is not None))
        base = baseline_text(res)                 # shared with the window (engine.report)
        if base:
            print(base)
        if res["message"]:
            print(res["message"], file=sys.stderr)
    return 1 if res["status"] == "diverged" else 0


def _frozen(model):
    """'layers before 'TopK_3' are frozen: an ONNX node has no gradient', or None."""
    from .layers.onnx_node import frozen_note
    return frozen_note(model.graph, {n: i.params for n, i in model.infos.items()})


def _save(model, path, fmt):
    """Write the trained model; a failed write (e.g. a full disk) saves it in the temporary folder instead."""
    from .weights import export
    try:
        export(model, path, fmt)
    except OSError as e:
        raise LayerboardError(f"cannot write {path}: {e.strerror or e}; {_rescue(model)}") from None


def _rescue(model):
    """Save model's weights in the temporary folder so that a failed write loses nothing; says where."""
    from .weights import save
    try:
        fd, tmp = tempfile.mkstemp(prefix="layerboard-weights-", suffix=".npz")
        os.close(fd)
        save(tmp, model)
        return f"the trained weights are saved in {tmp}"
    except OSError as e:
        return f"the trained weights could not be saved elsewhere either ({e.strerror or e})"


def cmd_export(a):
    from .model import Model
    from .weights import FORMATS, export, format_of, load_into
    writable(a.output, "-o", folder=a.format == "pytorch")
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
    writable(a.output, "-o")
    p = _project(a.project)
    model, w = import_checkpoint(p, getattr(a, "from"))
    model.set_weights(w, where=f"the weights in {getattr(a, 'from')}")
    save(a.output, model)
    print(f"wrote {len(w)} tensors from {getattr(a, 'from')} to {a.output}")
    return 0


def parser():
    from .cli_predict import cmd_evaluate, cmd_predict      # they import this module's helpers
    ap = argparse.ArgumentParser(prog="layerboard", description="Build, train and export neural networks.")
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("summary", help="per-layer shapes, parameters, MACs")
    s.add_argument("project")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_summary)
    d = sub.add_parser("data", help="the dataset's columns (types, roles, missing values) and first samples as fed")
    d.add_argument("project")
    d.add_argument("--rows", type=int, default=5, help="samples to show (default 5)")
    d.add_argument("--features", type=int, default=40, help="features to show per sample (default 40)")
    d.set_defaults(fn=cmd_data)
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
    r.add_argument("--input", help="an .npy array (raw units), a table (.csv, .parquet, .arrow …) with the training's "
                                   "columns (writes a CSV), or for text models a text file, one text per line")
    r.add_argument("--text", action="append", help="a text itself (repeatable), for a model trained on text data or "
                                                   "sentence pairs; a file of texts is --input FILE")
    r.add_argument("--output", help="where to write (required for arrays; texts and translations print without it)")
    r.add_argument("--lengths", help="(N,) integer .npy: valid steps of each padded input sequence")
    r.add_argument("--attention", help="also write an .npz with each attention node's weights (N, heads, T, T)")
    r.add_argument("--beam", type=int, help="translation (a sentence-pairs project): "
                                            "beam search of this width (default 1: greedy)")
    r.add_argument("--max-len", type=int, help="translation: target tokens at most (default: the longest target "
                                               "seen in training)")
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
    from .confusion import add_parser as confusion_parser
    ev = sub.add_parser("evaluate", help="metrics of trained weights on the project's held-out test split")
    ev.add_argument("project")
    ev.add_argument("--weights", required=True, help="trained weights (.npz or .safetensors)")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(fn=cmd_evaluate)
    from .onnx_import import add_parser as import_parser
    runs_parser(sub)
    search_parser(sub)
    confusion_parser(sub)
    import_parser(sub)
    return ap


# every library Qt's X11 platform plugin (PySide6/Qt/plugins/platforms/libqxcb.so) and the Qt libraries it loads
# need from the system (ldd), as Debian/Ubuntu packages; README.md shows the same line
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = parser()
    commands = set(ap._subparsers._group_actions[0].choices)
    if len(argv) == 1 and argv[0] not in commands and not argv[0].startswith("-"):   # `layerboard proj.json`
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
