"""Shape computations evaluated for two batch sizes: a weight sliced by bounds computed from the input's shape
(torch's nn.MultiheadAttention with query ≠ key slices in_proj_weight so) is a constant when both agree."""
import numpy as np

BATCHES = (1, 2)


def worlds(c, node):
    """After `node` was marked symbolic: its outputs' values for batch sizes 1 and 2 in c.worlds when its inputs
    are known; the outputs of a node reading a weight become constants when both batch sizes give the same."""
    from onnx.reference import ReferenceEvaluator
    ins = [t for t in node.input if t]
    if node.op_type == "Shape":
        s = c.shapes.get(ins[0]) if ins else None             # one unknown size: the batch (first, or second
        if s is None or sum(not isinstance(d, int) for d in s) > 1:               # when time-major)
            return
        feeds = [{ins[0]: np.zeros([d if isinstance(d, int) else b for d in s], np.float32)} for b in BATCHES]
    elif all(t in c.consts or t in c.worlds for t in ins):
        feeds = [{t: c.consts[t] if t in c.consts else c.worlds[t][k] for t in ins} for k in range(len(BATCHES))]
    else:
        return
    try:
        outs = [ReferenceEvaluator(node).run(None, f) for f in feeds]
    except Exception:                                         # an operator the reference evaluator lacks
        return
    weight = any(t in c.consts and c.consts[t].dtype.kind == "f" and c.consts[t].size > 1 for t in ins)
    for i, o in enumerate(node.output):
        if o:
            a, b = np.asarray(outs[0][i]), np.asarray(outs[1][i])
            if weight and a.shape == b.shape and np.array_equal(a, b):
                c.consts[o] = a
                c.sym.pop(o, None)
            else:
                c.worlds[o] = (a, b)
