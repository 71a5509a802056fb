"""`layerboard` command line: summary, train, predict, export (headless, never imports Qt); no command opens the app."""
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


def cmd_train(a):
    from .session import prepare
    from .trainer import free_cores
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
                print(json.dumps({"epoch": ev.epoch, **{k: v for k, v in ev.data.items() if k != "epochs"}}), flush=True)
        tr.subscribe(line)
    else:
        tr.subscribe(Progress(p.training["epochs"]))
    res = tr.run()
    if a.out:
        export(model, a.out, out_format)
    if a.json:
        print(json.dumps(res), flush=True)
    else:
        keys = ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
        print(f"{res['status']} after {res['epochs']} epochs ({res['seconds']:.1f} s): " +
              ", ".join(f"{k} {res[k]:.4f}" for k in keys if k in res))
        if res["message"]:
            print(res["message"], file=sys.stderr)
    return 1 if res["status"] == "diverged" else 0


def cmd_predict(a):
    from .model import Model
    from .project import atomic_write
    from .weights import load_into
    p = _project(a.project)
    model = Model(p.graph)
    load_into(model, a.weights)
    try:
        x = np.load(a.input, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise LayerboardError(f"cannot read {a.input}: {e}") from None
    y = model.predict(x.astype(np.float32))
    import io
    buf = io.BytesIO()
    np.save(buf, y)
    atomic_write(a.output, buf.getvalue())
    print(f"wrote {len(y)} predictions of shape {fmt(y.shape[1:])} to {a.output}")
    return 0


def cmd_export(a):
    from .model import Model
    from .weights import FORMATS, export, format_of, load_into
    p = _project(a.project)
    model = Model(p.graph)
    load_into(model, a.weights)
    fmt_ = a.format or format_of(a.output, FORMATS + ("onnx",))
    export(model, a.output, fmt_)
    print(f"wrote {fmt_} export of '{p.name or a.project}' to {a.output}")
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
    r.add_argument("--input", required=True)
    r.add_argument("--output", required=True)
    r.set_defaults(fn=cmd_predict)
    e = sub.add_parser("export", help="write trained weights as .npz, .safetensors or an .onnx model")
    e.add_argument("project")
    e.add_argument("--weights", required=True, help="trained weights (.npz or .safetensors)")
    e.add_argument("--format", choices=("npz", "safetensors", "onnx"), help="default: from the output's extension")
    e.add_argument("-o", "--output", required=True)
    e.set_defaults(fn=cmd_export)
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    if a.cmd is None:
        try:
            from gui.app import main as gui_main
        except ImportError as e:
            print(f"layerboard: the window cannot start ({e}); the commands summary|train|predict|export work headless",
                  file=sys.stderr)
            return 1
        return gui_main()
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
