"""`layerboard import MODEL.onnx -o PROJECT.json`: an ONNX file as a project with its weights (engine/onnx_import.py
maps the operators)."""
from .errors import LayerboardError
from .onnx_import import ImportFailed, read
from . import onnx_import_keep, onnx_import_multi


def import_project(path, name=None, strict=False):
    """(Project, weights, kept) for an ONNX file: the graph with its trained weights, default training settings;
    kept as read() gives it."""
    from pathlib import Path
    from .data.dataset import placeholder
    from .project import Project
    g, w, kept = read(path, strict)
    shape = next(v.config["shape"] for v in g.nodes.values() if v.type == "Input")
    p = Project(graph=g, name=name or Path(str(path)).stem, description=f"Imported from {Path(str(path)).name}",
                dataset=placeholder(shape))          # no data yet: the window asks for data of the Input's shape
    return p, w, kept


# ---- command line: layerboard import MODEL.onnx -o PROJECT.json [--weights W] ----
def add_parser(sub):
    s = sub.add_parser("import", help="open an ONNX model as a Layerboard project with its weights")
    s.add_argument("model", help="an .onnx file (opset 13 or later; older ones are converted)")
    s.add_argument("-o", "--output", required=True, help="the project file to write (.json)")
    s.add_argument("--weights", help="where to write the weights (.npz or .safetensors; default: "
                                     "PROJECT.weights.safetensors beside the project, which the window loads)")
    s.add_argument("--strict", action="store_true", help="refuse a model with any node Layerboard has no layer for "
                   "(default: keep such nodes as OnnxNode layers that run in onnxruntime and are not trainable)")
    s.set_defaults(fn=cmd_import)


def cmd_import(a):
    import os
    from pathlib import Path
    from .model import Model
    from .weights import beside, save
    out = Path(a.output)
    wpath = Path(a.weights) if a.weights else beside(out)
    for f in (out, wpath):
        if not os.access(f.resolve().parent, os.W_OK):
            raise LayerboardError(f"cannot write {f}: its folder {f.resolve().parent} is not writable")
    try:
        p, w, kept = import_project(a.model, out.stem, a.strict)
    except ImportFailed as e:
        if e.problems:
            print(f"layerboard import: {len(e.problems)} node(s) of {a.model} have no Layerboard layer:")
            for op, n, why in e.problems:
                print(f"  {op} '{n}': {why}")
        raise
    if kept:
        print(f"layerboard import: {len(kept)} node(s) of {a.model} have no Layerboard layer and are kept as they are:")
        print("\n".join(onnx_import_keep.report(kept)))
    lines = onnx_import_multi.report(p.graph)
    if lines:
        print(f"layerboard import: the inputs and outputs of {a.model}:\n" + "\n".join(lines))
    model = Model(p.graph)
    model.set_weights({**model.weights(), **w}, where=f"the weights of {a.model}")
    p.save(out)
    save(wpath, model)
    values = sum(v.size for v in model.weights().values())            # frozen weights (before a kept node) too
    print(f"wrote {out} ({len(p.graph.nodes)} nodes, {values:,} values) and its weights {wpath}")
    return 0
