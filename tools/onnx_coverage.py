"""Which ONNX backend test cases Layerboard's layer registry can express: one line per case, then the counts.

    python tools/onnx_coverage.py            # every case
    python tools/onnx_coverage.py --summary  # the counts and the ops responsible only
    python tools/onnx_coverage.py --summary --data DIR   # the cases an older wheel ships, unpacked in DIR
                                             # (DIR/node, DIR/pytorch-converted, DIR/pytorch-operator)

Cases: the node tests (onnx/backend/test/data/node/*/model.onnx; onnx wheels that do not ship that folder
are read from the generators it is made from, onnx.backend.test.case.node, which takes ~20 s), without the
`_expanded` variants (the same operator written out as its function body), and the pytorch-converted and
pytorch-operator models. A case is

  layer   every op maps to a registry layer with the needed options (Constant and Identity need none),
  option  an op maps to a layer type that lacks an option the case uses (e.g. Conv with group > 1),
  none    an op has no layer at all.

The rules per operator are in tools/onnx_coverage_rules.py. Rules read the registry: a layer type or option (a
hyperparameter name) counts once it is registered, so the numbers follow the code. "float" counts the cases whose graph inputs and outputs are all floating point (a
Layerboard graph carries float tensors; string, integer and boolean cases cannot be a layer's input or output).
"""
import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from onnx_coverage_rules import FREE, RULES, Node  # noqa: E402

FLOATS = {1, 10, 11, 16}    # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def classify(model):
    """('layer' | 'option' | 'none', [what per op that is not plainly a layer], [layer types used])."""
    import onnx
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    shapes = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    inits = {i.name: i for i in g.initializer}
    inits.update({n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant"      # Constant nodes too
                  and n.attribute and n.attribute[0].name == "value"})
    for i in g.initializer:
        shapes[i.name] = tuple(i.dims)
    nodes = [n for n in g.node if n.op_type not in FREE] or list(g.node)
    worst, why, used = "layer", [], []
    for node in nodes:
        rule = RULES.get(node.op_type)
        r = rule(Node(node, shapes, inits, opset)) if rule else ("none", node.op_type)
        if node.op_type in FREE and len(nodes) == 1:
            r = ("none", node.op_type)
        if r[0] == "layer":
            used.append(r[1])
            continue
        why.append(f"{node.op_type}: {r[2]} ({r[1]})" if r[0] == "option" else
                   node.op_type if r[1] == node.op_type else f"{node.op_type}: {r[1]}")
        worst = max(worst, r[0], key=("layer", "option", "none").index)
    return worst, why, used


def _floaty(model):
    g = model.graph
    vis = list(g.input) + list(g.output)
    return all(v.type.HasField("tensor_type") and v.type.tensor_type.elem_type in FLOATS for v in vis)


def node_testcases(op_type=None):
    """onnx.backend.test.case.node's TestCases (of one op_type, or all), made afresh: collect_testcases alone keeps
    the cases of the first op_type it was asked for in a process (its generators run once, at import)."""
    from onnx.backend.test.case import node as gen
    for m in [m for m in sys.modules if m.startswith(gen.__name__ + ".")]:
        del sys.modules[m]
    gen._NodeTestCases, gen._existing_names = [], {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return list(gen.collect_testcases(op_type))


def cases(data=None):
    """(suite, name, ModelProto) for every case, from `data` (a backend/test/data folder) or the installed wheel."""
    import onnx
    data = Path(data) if data else Path(onnx.__file__).parent / "backend" / "test" / "data"
    node = data / "node"
    if node.is_dir():
        for d in sorted(node.iterdir()):
            if (d / "model.onnx").exists() and "_expanded" not in d.name:
                yield "node", d.name, onnx.load(str(d / "model.onnx"))
    else:
        for c in sorted(node_testcases(), key=lambda c: c.name):
            if "_expanded" not in c.name:
                yield "node", c.name, c.model
    for suite in ("pytorch-converted", "pytorch-operator"):
        for d in sorted((data / suite).iterdir()) if (data / suite).is_dir() else ():
            if (d / "model.onnx").exists():
                yield suite, d.name, onnx.load(str(d / "model.onnx"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--summary", action="store_true", help="only the counts and the ops responsible")
    ap.add_argument("--data", help="a backend/test/data folder (e.g. from an older onnx wheel) instead of the installed one")
    args = ap.parse_args(argv)
    counts, fcounts, blame, fblame = Counter(), Counter(), Counter(), Counter()
    for suite, name, model in cases(args.data):
        status, why, used = classify(model)
        fl = _floaty(model)
        counts[status] += 1
        fcounts[status] += fl
        for w in set(why):
            blame[(status, w)] += 1
            fblame[(status, w)] += fl
        if not args.summary:
            print(f"{suite}/{name}: {status}" + (f" — {'; '.join(why)}" if why else "")
                  + (f" [{', '.join(sorted(set(used)))}]" if used else "") + ("" if fl else " (not float)"))
    total, ftotal = sum(counts.values()), sum(fcounts.values())
    print(f"\ncases: {total} ({ftotal} float); mapped to layers: {counts['layer']} ({fcounts['layer']} float); "
          f"unmapped: {counts['option'] + counts['none']} ({fcounts['option'] + fcounts['none']} float) = "
          f"no layer {counts['none']} ({fcounts['none']} float) + missing option {counts['option']} "
          f"({fcounts['option']} float)")
    for status in ("option", "none"):
        print(f"\n{'missing option' if status == 'option' else 'no layer'}, cases (float cases) per op:")
        rows = sorted(((n, w) for (s, w), n in blame.items() if s == status), key=lambda r: (-r[0], r[1]))
        for n, w in rows:
            print(f"  {n:4d} ({fblame[(status, w)]:3d})  {w}")


if __name__ == "__main__":
    main()
