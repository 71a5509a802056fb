"""ONNX import handlers of engine/layers/slicing.py and depth_space.py: Slice with constant bounds that keep the batch
axis whole, DepthToSpace, SpaceToDepth (also written as Reshape → Transpose → Reshape, as torch exports PixelShuffle
before opset 11), and Split (torch.chunk, torch.split) as one Slice layer per output."""
from types import SimpleNamespace

import numpy as np

from .errors import LayerboardError
from .layers import REGISTRY
from .layers.slicing import END
from .onnx_import import Unsupported, _attrs, handles


def _clip(v):
    return int(min(max(int(v), -END - 1), END))       # INT64_MAX "to the end" as ours (axes are < 2³¹ long)


def _const(c, node, i, what):
    """Input i as a constant, or computed from the input's shape with the same values for batch sizes 1 and 2."""
    w = c.worlds.get(node.input[i]) if len(node.input) > i else None
    if w is not None and np.shape(w[0]) == np.shape(w[1]) and np.array_equal(w[0], w[1]):
        return np.asarray(w[0])                                       # e.g. torch.chunk's bounds from C
    return np.asarray(c.const(node, i, what))


@handles("Slice")
def _slice(c, node):
    (x,) = c.data(node)
    x = c.full(x)
    shape = c.values[x].shape
    rank = len(shape) + 1
    ins = list(node.input) + [""] * 5
    starts, ends = (_const(c, node, i, w).reshape(-1).tolist() for i, w in ((1, "starts"), (2, "ends")))
    axes = _const(c, node, 3, "axes").reshape(-1).tolist() if ins[3] else list(range(len(starts)))
    steps = _const(c, node, 4, "steps").reshape(-1).tolist() if ins[4] else [1] * len(starts)
    kept = []
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = int(a) % rank
        if a == 0:                                      # whole: 0 to the end, or to the file's fixed batch size
            b = c.shapes.get(x.split("#")[0], (None,))[0]
            if not (int(st) == 1 and int(s) == 0 and (int(e) >= END or isinstance(b, int) and 0 < b <= int(e))):
                raise Unsupported(f"slices the batch axis ({s}:{e}:{st}); a layer sees one sample at a time")
            continue
        kept.append((a - 1, _clip(s), _clip(e), _clip(st)))
    if not kept:
        c.alias(node, x)
        return
    a, s, e, st = zip(*sorted(kept))
    cfg = {"axes": list(a), "starts": list(s), "ends": list(e), "steps": list(st)}
    c.add(node, "Slice", cfg, [x], out_shape=c.layer_shape("Slice", cfg, [shape]))    # refuses an empty slice


@handles("Split")
def _split(c, node):
    (x,) = c.data(node)
    x = c.full(x)
    shape = c.values[x].shape
    at = _attrs(node)
    axis = int(at.get("axis", 0)) % (len(shape) + 1)
    if axis == 0:
        raise Unsupported("splits the batch axis; a layer sees one sample at a time")
    n, outs = shape[axis - 1], list(node.output)
    if len(node.input) > 1 and node.input[1]:
        sizes = [int(v) for v in _const(c, node, 1, "split").reshape(-1)]
    elif at.get("split") is not None:
        sizes = [int(v) for v in at["split"]]
    else:                                               # equal parts; opset 18 num_outputs: the last one smaller
        k = -(-n // len(outs))
        sizes = [min(k, n - i * k) for i in range(len(outs))]
    if len(sizes) != len(outs) or sum(sizes) != n or min(sizes) < 1:
        raise Unsupported(f"parts {sizes} of an axis of length {n} into {len(outs)} outputs")
    start = 0
    for i, (o, k) in enumerate(zip(outs, sizes)):
        if o:
            part = SimpleNamespace(name=f"{node.name or 'split'}_{i}", op_type="Split", output=[o])
            c.add(part, "Slice", {"axes": [axis - 1], "starts": [start], "ends": [start + k], "steps": [1]}, [x])
        start += k


@handles("DepthToSpace", "SpaceToDepth")
def _blocks(c, node):
    """DepthToSpace / SpaceToDepth of an (N, C, H, W) tensor (mode DCR, ONNX's default, or CRD)."""
    (x,) = c.data(node)
    x = c.full(x)
    shape, a = c.values[x].shape, _attrs(node)
    if len(shape) != 3:
        raise Unsupported(f"{node.op_type} of a rank-{len(shape) + 1} tensor; the layer takes (N, C, H, W)")
    cfg = {"block_size": int(a.get("blocksize", 0)), "mode": a.get("mode", "DCR")}
    c.add(node, node.op_type, cfg, [x], out_shape=c.layer_shape(node.op_type, cfg, [shape]))


@handles("Tile")
def _tile(c, node):
    """Tile with constant repeats that leave the batch axis once."""
    (x,) = c.data(node)
    x = c.full(x)
    reps = [int(r) for r in _const(c, node, 1, "repeats").reshape(-1)]
    if not reps or reps[0] != 1:
        raise Unsupported(f"repeats {reps} copy the batch axis; a layer sees one sample at a time")
    if all(r == 1 for r in reps):
        c.alias(node, x)
        return
    c.add(node, "Tile", {"repeats": reps[1:]}, [x])


@handles("Expand")
def _expand(c, node):
    """Expand to a shape it already has (torch's repeat writes one before its Tile): the same tensor."""
    (x,) = c.data(node)
    shape = (1,) + tuple(c.values[x].shape)
    target = tuple(int(v) for v in _const(c, node, 1, "shape").reshape(-1))
    if len(target) > len(shape) or any(t not in (1, s) for t, s in zip(target[::-1], shape[::-1])):
        raise Unsupported(f"expands {shape[1:]} to {target}: only an Expand that keeps the shape has a layer (none)")
    c.alias(node, x)


def find(c, m, data):
    """Reshape → Transpose → Reshape of a (C, H, W) tensor that moves channels into b×b pixel blocks or back: one
    DepthToSpace or SpaceToDepth block (DCR or CRD), accepted when onnxruntime on the three nodes equals the layer."""
    from .onnx_import_attn import index
    from .onnx_import_norm import _accept, _fixed, _only
    _, cons = index(data)
    out = []
    for r1 in (n for n in data if n.op_type == "Reshape"):
        t = _only(cons, r1.output[0], "Transpose")
        r2 = t and _only(cons, t.output[0], "Reshape")
        x, shape = r1.input[0], _fixed(c, r1.input[0])
        y = r2 and _fixed(c, r2.output[0])
        if not y or not shape or len(shape) != 3 or len(y) != 3:
            continue
        for type, b in (("DepthToSpace", y[1] // shape[1]), ("SpaceToDepth", shape[1] // y[1])):
            cfg = [{"block_size": b, "mode": mode} for mode in ("DCR", "CRD")]
            try:
                if b < 2 or REGISTRY[type](**cfg[0]).compute_output_shape([shape]) != y:
                    continue
            except LayerboardError:                                   # C, H or W not divisible
                continue
            blk = next((k for k in (_accept(c, m, [r1, t, r2], x, r2.output[0], type, f, {}, shape) for f in cfg)
                        if k is not None), None)
            if blk is not None:
                blk.out_shape = y
                out.append(blk)
                break
    return out
