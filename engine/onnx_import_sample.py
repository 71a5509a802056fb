"""ONNX import handlers for sampling and positions: GridSample (4-D) as our GridSample layer."""
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
