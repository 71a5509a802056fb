"""ONNX import handlers for sampling and positions: GridSample (4-D) as our GridSample layer; RotaryEmbedding
(opset 23, a sequence (B, T, heads·d)) as ours when its cos/sin caches are constants equal to the standard table."""
from .onnx_import import Unsupported, _attrs, handles

MODES = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest", "bicubic": "bicubic", "cubic": "bicubic"}


@handles("GridSample")
def _grid_sample(c, node):
    a = _attrs(node)
    if len(node.input) < 2 or node.input[0] in c.consts or node.input[1] in c.consts:
        raise Unsupported("its image or grid is a constant; GridSample reads both from layers (e.g. an Input)")
    x, grid = c.data(node)
    sx, sg = c.values[x].shape, c.values[grid].shape
    if len(sx) != 3 or len(sg) != 3 or sg[2] != 2:
        raise Unsupported(f"samples a {len(sx) + 1}-D image {(None,) + tuple(sx)} at a grid {(None,) + tuple(sg)}: "
                          "GridSample reads (N, C, H, W) at (N, H_out, W_out, 2) (no volumetric sampling)")
    mode = MODES.get(a.get("mode", "bilinear"))
    if mode is None:
        raise Unsupported(f"mode {a.get('mode')!r}")
    c.add(node, "GridSample", {"mode": mode, "padding_mode": a.get("padding_mode", "zeros"),
                               "align_corners": bool(a.get("align_corners", 0))}, [x, grid],
          out_shape=(sx[0], sg[0], sg[1]))


def _base_of(cos, sin, r):
    """The base whose table cos(t·base^(−2i/r)), sin(…) equals the (T, r/2) caches (1e-5), or None."""
    import numpy as np
    from .layers.rotary import angles
    T = len(cos)
    guess = 10000.0
    if T > 1 and r > 2:                                   # θ_1 = base^(−2/r) is the angle of step 1, pair 1
        th = float(np.arctan2(sin[1, 1], cos[1, 1]))
        guess = th ** (-r / 2) if 0 < th < np.pi else guess

    def fits(b):
        a = angles(T, r, b)
        return np.allclose(cos, np.cos(a), atol=1e-5) and np.allclose(sin, np.sin(a), atol=1e-5)
    for b in [float(f"{guess:.{k}g}") for k in range(1, 8)] + [guess]:   # the shortest base that fits (10000.0)
        if fits(b):
            return b
    return None


@handles("RotaryEmbedding")
def _rotary(c, node):
    import numpy as np
    a = _attrs(node)
    if len(node.input) < 3 or node.input[1] not in c.consts or node.input[2] not in c.consts:
        raise Unsupported("its cos/sin caches are graph inputs or computed, not constants; RotaryEmbedding computes "
                          "cos(t·θ_i), sin(t·θ_i) from the step index t itself")
    pos = node.input[3] if len(node.input) > 3 and node.input[3] else None
    if pos is not None and pos not in c.consts:
        raise Unsupported("its position_ids are a graph input or computed; RotaryEmbedding uses the step index 0…T−1")
    (x,) = c.data(node)
    s = c.values[x].shape
    if len(s) != 2:
        raise Unsupported(f"its input {(None,) + tuple(s)} is not (batch, steps, heads·head size); RotaryEmbedding "
                          "reads a sequence (T, F) (transpose (B, heads, T, d) to (B, T, heads·d) first)")
    T, F = s
    heads = int(a.get("num_heads", 0) or 0)
    if heads < 1 or F % heads:
        raise Unsupported(f"num_heads {heads} does not split its {F} features")
    r = int(a.get("rotary_embedding_dim", 0) or 0) or F // heads
    cos, sin = (np.asarray(c.consts[t], np.float64) for t in node.input[1:3])
    if pos is not None:
        p = c.consts[pos]
        if p.ndim != 2 or p.shape[1] != T or np.any(p != np.arange(T)):
            raise Unsupported("its position_ids are not the steps 0…T−1 of every row")
        cos, sin = cos[:T], sin[:T]
    else:
        if cos.ndim != 3 or cos.shape[1] != T or np.any(cos != cos[:1]) or np.any(sin != sin[:1]):
            raise Unsupported("its per-row cos/sin caches differ between rows")
        cos, sin = cos[0], sin[0]
    base = _base_of(cos, sin, r) if cos.shape == (T, r // 2) == sin.shape else None
    if base is None:
        raise Unsupported(f"its cos/sin caches are not the table cos(t·base^(−2i/{r})), sin(…) of the steps for any "
                          "base (RotaryEmbedding computes that table)")
    c.add(node, "RotaryEmbedding", {"heads": heads, "rotary_dim": 0 if r == F // heads else r,
                                    "interleaved": bool(a.get("interleaved", 0)), "base": base}, [x], out_shape=(T, F))
