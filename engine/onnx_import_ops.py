"""ONNX import handlers for images and layouts: convolutions (1-D, 2-D, 3-D, transposed), pooling, normalisation,
Dense, Flatten/Reshape, padding, resizing. Activations and merges: engine/onnx_import_pointwise.py."""
import numpy as np

from .layers.resize import COORDS
from .onnx_import import Unsupported, _attrs, handles

CONV = {1: "Conv1D", 2: "Conv2D", 3: "Conv3D"}
CONV_T = {1: "ConvTranspose1D", 2: "ConvTranspose2D", 3: "ConvTranspose3D"}
POOL = {"MaxPool": {1: "MaxPool1D", 2: "MaxPool2D", 3: "MaxPool3D"},
        "AveragePool": {1: "AveragePool1D", 2: "AveragePool2D", 3: "AveragePool3D"}}


def _sym_pads(a, rank, what="pads"):
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise Unsupported("auto_pad is not supported; export with explicit pads")
    pads = [int(p) for p in a.get("pads", [0] * 2 * rank)]
    if pads[:rank] != pads[rank:]:
        raise Unsupported(f"asymmetric {what} {pads}: Layerboard pads each side of an axis alike")
    return pads[:rank]


def _same_pads(a, spatial, k, stride, dil):
    """The attributes with auto_pad SAME_UPPER / SAME_LOWER / VALID written out as pads (begins, then ends)."""
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        return a
    tot = [max((-(-n // s) - 1) * s + d * (kk - 1) + 1 - n, 0) if auto != "VALID" else 0
           for n, kk, s, d in zip(spatial, k, stride, dil)]
    first = [t - t // 2 if auto == "SAME_LOWER" else t // 2 for t in tot]
    return {**{n: v for n, v in a.items() if n != "auto_pad"}, "pads": first + [t - f for t, f in zip(tot, first)]}


def _zero_pad(c, node, x, rank, pads=None):
    """Asymmetric pads of a 1-D or 2-D convolution as a ZeroPad layer before it: (the padded tensor, zero pads)."""
    from .onnx_import import Value
    pads = pads or [int(p) for p in _attrs(node).get("pads", [0] * 2 * rank)]
    if rank not in (1, 2) or min(pads) < 0:
        raise Unsupported(f"asymmetric pads {pads} of a {rank}-D convolution: ZeroPad pads (C, L) and (C, H, W)")
    sides = [v for i in range(rank) for v in (pads[i], pads[rank + i])]      # (before, after) per axis
    s = c.values[x].shape
    name = c.name(f"{node.name or 'conv'}_pad", "zeropad")
    c.graph.add_node("ZeroPad", name, {"pad": sides}, {"onnx": "Pad"})
    c.graph.connect(c.values[x].node, name, 0)
    out = (s[0],) + tuple(n + sides[2 * i] + sides[2 * i + 1] for i, n in enumerate(s[1:]))
    c.values[x + "#padded"] = Value(name, out)
    return x + "#padded", [0] * rank


def _signal(cfg, rank):
    return {**cfg, "layout": "signal"} if rank == 1 else cfg          # ONNX (N, C, L): our Conv1D "signal" layout


# ---- convolution ----
@handles("Conv")
def _conv(c, node):
    a = _attrs(node)
    W = c.const(node, 1, "weight")                                    # (C_out, C_in/g, *K)
    (x,) = c.data(node)
    rank = W.ndim - 2
    if rank not in CONV:
        raise Unsupported(f"{rank}-D convolution")
    stride = [int(v) for v in a.get("strides", [1] * rank)]
    dil = [int(v) for v in a.get("dilations", [1] * rank)]
    if not c.values[x].squeezed:
        a = _same_pads(a, c.values[x].shape[1:], W.shape[2:], stride, dil)
    try:
        pads = _sym_pads(a, rank)
    except Unsupported:
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "") or c.values[x].squeezed:
            raise
        pads = None
    groups = int(a.get("group", 1))
    w = {"W": W}
    if len(node.input) > 2 and node.input[2]:
        w["b"] = c.const(node, 2, "bias")
    if c.values[x].squeezed and rank == 2 and W.shape[2:] == (1, 1) and groups == 1:   # 1×1 conv on (C,): Dense
        c.add(node, "Dense", {"units": int(W.shape[0]), "use_bias": "b" in w}, [x], out_shape=(int(W.shape[0]),),
              W=W[:, :, 0, 0], **({"b": w["b"]} if "b" in w else {}))
        c.values[node.output[0]].squeezed = True
        return
    x = c.full(x)
    if pads is None:                                                  # asymmetric: a ZeroPad, then no padding
        x, pads = _zero_pad(c, node, x, rank, [int(p) for p in a["pads"]])
    cfg = {"filters": int(W.shape[0]), "kernel_size": list(W.shape[2:]), "stride": stride,
           "padding": "explicit" if any(pads) else "valid", "pad": pads, "use_bias": "b" in w,
           "dilation": dil, "groups": groups}
    c.add(node, CONV[rank], _signal(cfg, rank), [x], **w)


@handles("ConvTranspose")
def _conv_t(c, node):
    a = _attrs(node)
    W = c.const(node, 1, "weight")                                    # (C_in, C_out/g, *K), as ours
    (x,) = c.data(node)
    rank = W.ndim - 2
    if rank not in CONV_T:
        raise Unsupported(f"{rank}-D transposed convolution")
    g = int(a.get("group", 1))
    w = {"W": W}
    if len(node.input) > 2 and node.input[2]:
        w["b"] = c.const(node, 2, "bias")
    x = c.full(x)
    stride, dil = [int(v) for v in a.get("strides", [1] * rank)], [int(v) for v in a.get("dilations", [1] * rank)]
    pads, opad = _ct_pads(a, c.values[x].shape[1:], W.shape[2:], stride, dil)
    cfg = {"filters": int(W.shape[1]) * g, "kernel_size": list(W.shape[2:]), "stride": stride,
           "pad": pads[:rank] if pads[:rank] == pads[rank:] else [v for i in range(rank) for v in (pads[i], pads[rank + i])],
           "output_padding": opad, "dilation": dil, "groups": g, "use_bias": "b" in w}
    c.add(node, CONV_T[rank], _signal(cfg, rank), [x], **w)


def _ct_pads(a, spatial, k, stride, dil):
    """(pads: begins then ends, output_padding) of a ConvTranspose; with output_shape or auto_pad SAME, from the
    requested size as ONNX defines it: total = S·(n − 1) + P_out + d·(K − 1) + 1 − n_out, SAME_UPPER crops ⌊total/2⌋
    at the start, otherwise ⌈total/2⌉; a negative total adds outputs at the end (output_padding)."""
    r, auto = len(k), a.get("auto_pad", "NOTSET") or "NOTSET"
    opad = [int(v) for v in a.get("output_padding", [0] * r)]
    if "output_shape" not in a and not auto.startswith("SAME"):
        return ([0] * 2 * r if auto == "VALID" else [int(p) for p in a.get("pads", [0] * 2 * r)]), opad
    want = [int(v) for v in a["output_shape"][-r:]] if "output_shape" in a else [n * s for n, s in zip(spatial, stride)]
    begin, end = [], []
    for i, (n, kk, s, d, m) in enumerate(zip(spatial, k, stride, dil, want)):
        t = s * (n - 1) + opad[i] + d * (int(kk) - 1) + 1 - m
        if t < 0:
            opad[i], t = opad[i] - t, 0
        b = t // 2 if auto == "SAME_UPPER" else t - t // 2
        begin.append(b)
        end.append(t - b)
    return begin + end, opad


# ---- pooling ----
@handles("MaxPool", "AveragePool")
def _pool(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("MaxPool's indices output has no Layerboard layer")
    k = [int(v) for v in a["kernel_shape"]]
    rank = len(k)
    if rank not in (1, 2, 3):
        raise Unsupported(f"{rank}-D pooling")
    type = POOL[node.op_type][rank]
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    pads = [0] * 2 * rank if auto != "NOTSET" else [int(p) for p in a.get("pads", [0] * 2 * rank)]
    cfg = {"kernel_size": k, "stride": [int(v) for v in a.get("strides", [1] * rank)],
           "pad": pads[:rank] if pads[:rank] == pads[rank:] else [v for i in range(rank) for v in (pads[i], pads[rank + i])],
           "ceil_mode": bool(a.get("ceil_mode", 0)), "dilation": [int(v) for v in a.get("dilations", [1] * rank)]}
    if auto.startswith("SAME"):
        cfg["padding"] = auto.lower()
    if node.op_type == "AveragePool":
        cfg["count_include_pad"] = bool(a.get("count_include_pad", 0))
    c.add(node, type, _signal(cfg, rank), [c.full(x)])


@handles("LpPool")
def _lp_pool(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    k = [int(v) for v in a["kernel_shape"]]
    rank = len(k)
    if rank not in (1, 2, 3) or a.get("ceil_mode", 0):
        raise Unsupported(f"{rank}-D Lp pooling" if rank not in (1, 2, 3) else "ceil_mode: LpPool floors the size")
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    pads = [0] * 2 * rank if auto != "NOTSET" else [int(p) for p in a.get("pads", [0] * 2 * rank)]
    cfg = {"p": int(a.get("p", 2)), "kernel_size": k, "stride": [int(v) for v in a.get("strides", [1] * rank)],
           "pad": pads[:rank] if pads[:rank] == pads[rank:] else [v for i in range(rank) for v in (pads[i], pads[rank + i])],
           "dilation": [int(v) for v in a.get("dilations", [1] * rank)]}
    if auto.startswith("SAME"):
        cfg["padding"] = auto.lower()
    c.add(node, f"LpPool{rank}D", _signal(cfg, rank), [c.full(x)])


@handles("GlobalAveragePool", "GlobalMaxPool")
def _global(c, node):
    (x,) = c.data(node)
    if c.values[x].squeezed:
        raise Unsupported("a global pool of an already pooled (C, 1, 1) tensor")
    c.add(node, node.op_type, {}, [x], out_shape=(c.values[x].shape[0],))
    c.values[node.output[0]].squeezed = True


@handles("ReduceMean", "ReduceMax")
def _reduce(c, node):
    """A mean (maximum) over every spatial axis of (C, …) is a global pool (PyTorch's AdaptiveAvgPool2d(1)); over
    the steps of a sequence (T, F), a TimePool."""
    a = _attrs(node)
    (x,) = c.data(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = c.const(node, 1, "axes").tolist()
    s = c.values[x].shape
    rank = len(s) + 1
    if len(s) == 2 and axes is not None and [int(i) % rank for i in axes] == [1] and not a.get("keepdims", 1):
        mode = "mean" if node.op_type == "ReduceMean" else "max"          # over the steps of (T, F)
        c.add(node, "TimePool", {"mode": mode}, [x], out_shape=s[1:])
        return
    if axes is None or len(s) < 2 or sorted(int(i) % rank for i in axes) != list(range(2, rank)):
        raise Unsupported(f"only a reduction over all the axes after the channels of (C, …) maps to a global pool, "
                          f"got axes {axes} of a rank-{rank} tensor")
    c.add(node, "GlobalAveragePool" if node.op_type == "ReduceMean" else "GlobalMaxPool", {}, [x], out_shape=s[:1])
    c.values[node.output[0]].squeezed = bool(a.get("keepdims", 1))


# ---- normalisation ----
def _channels_first_only(c, x):
    """Refuse (N, C, L): Layerboard reads a rank-2 sample as (T, F), the channel-wise layers per feature F."""
    if len(c.values[x].shape) == 2:
        raise Unsupported("normalises channel C of an (N, C, L) tensor; Layerboard's rank-2 samples are (T, F), "
                          "normalised per feature F")


@handles("BatchNormalization")
def _bn(c, node):
    a = _attrs(node)
    (x,) = c.data(node)[:1]
    g, b, m, v = (c.const(node, i, k) for i, k in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
    cfg = {"eps": float(a.get("epsilon", 1e-5)), "momentum": round(1 - float(a.get("momentum", 0.9)), 6)}
    if len(c.values[x].shape) == 2 and not c.values[x].squeezed:        # (N, C, L): per channel C
        from .onnx_import_legacy import channels_first
        return channels_first(c, node, x, "BatchNorm", cfg, gamma=g, beta=b, running_mean=m, running_var=v)
    x = c.full(x)
    c.add(node, "BatchNorm", cfg,
          [x], out_shape=c.values[x].shape, gamma=g, beta=b, running_mean=m, running_var=v)


@handles("InstanceNormalization")
def _instance(c, node):
    (x,) = c.data(node)
    _channels_first_only(c, x)
    g, b = c.const(node, 1, "scale"), c.const(node, 2, "bias")
    affine = not (np.all(g == 1) and np.all(b == 0))
    c.add(node, "InstanceNorm", {"eps": float(_attrs(node).get("epsilon", 1e-5)), "affine": affine}, [c.full(x)],
          **({"gamma": g, "beta": b} if affine else {}))


@handles("LRN")
def _lrn(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    if int(a["size"]) % 2 == 0:
        raise Unsupported(f"an even LRN size {a['size']}: ONNX's window is PyTorch's mirrored")
    _channels_first_only(c, x)
    c.add(node, "LocalResponseNorm", {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)),
                                      "beta": float(a.get("beta", 0.75)), "k": float(a.get("bias", 1.0))}, [c.full(x)])


@handles("LayerNormalization")
def _layernorm(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    s = c.values[x].shape
    axis = int(a.get("axis", -1)) % (len(s) + 1)
    if axis == 0 or (len(node.output) > 1 and any(node.output[1:])):
        raise Unsupported("normalises over the batch axis or returns its statistics")
    g = c.const(node, 1, "scale")
    b = c.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else np.zeros_like(g)
    shape = s[axis - 1:]
    c.add(node, "LayerNorm", {"eps": float(a.get("epsilon", 1e-5)), "axes": len(shape)}, [x], out_shape=s,
          gamma=np.broadcast_to(g, shape), beta=np.broadcast_to(b, shape))


# ---- Dense ----
@handles("Gemm")
def _gemm(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise Unsupported("only Y = X·Bᵀ + C (or X·B + C) with alpha = beta = 1 maps to Dense")
    B = c.const(node, 1, "weight")
    W = B if a.get("transB", 0) else B.T                                # (U, F)
    w = {"W": W}
    if len(node.input) > 2 and node.input[2]:
        w["b"] = np.broadcast_to(c.const(node, 2, "bias"), (W.shape[0],))
    c.add(node, "Dense", {"units": int(W.shape[0]), "use_bias": "b" in w}, [x], out_shape=(int(W.shape[0]),), **w)


@handles("MatMul")
def _matmul(c, node):
    if node.input[1] not in c.consts:                                   # two computed tensors: the MatMul layer
        if node.input[0] in c.consts:
            raise Unsupported("a constant times a computed tensor (W·x) has no layer; Dense computes x·W")
        a, b = c.data(node)
        c.layer_shape("MatMul", {}, [c.values[a].shape, c.values[b].shape])     # Unsupported with the layer's reason
        c.add(node, "MatMul", {}, [a, b])
        return
    (x,) = c.data(node)
    B = c.consts[node.input[1]]                                          # (F, U)
    if B.ndim != 2:
        raise Unsupported(f"weight of rank {B.ndim}")
    c.add(node, "Dense", {"units": int(B.shape[1]), "use_bias": False}, [x],
          out_shape=c.values[x].shape[:-1] + (int(B.shape[1]),), W=B.T)


# ---- layout ----
@handles("Flatten")
def _flatten(c, node):
    (x,) = c.data(node)
    if _attrs(node).get("axis", 1) % (len(c.values[x].shape) + 1) != 1:           # −(rank − 1) is axis 1 too
        raise Unsupported("Flatten keeps the batch axis only with axis = 1")
    if len(c.values[x].shape) == 1:
        c.alias(node, x)
        return
    c.add(node, "Flatten", {}, [x], out_shape=(int(np.prod(c.values[x].shape)),))


@handles("Pad")
def _pad(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    mode = a.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise Unsupported(f"{mode} padding; ZeroPad pads with a constant, reflect, edge or wrap")
    value = 0.0
    if mode == "constant" and len(node.input) > 2 and node.input[2]:
        value = float(np.asarray(c.const(node, 2, "constant_value")).reshape(-1)[0])
    pads = [int(p) for p in c.const(node, 1, "pads")]
    x = c.full(x)
    s = c.values[x].shape
    rank = len(s) + 1
    if len(node.input) > 3 and node.input[3]:                         # pads of the listed axes only
        axes = [int(v) % rank for v in c.const(node, 3, "axes")]
        full = [0] * (2 * rank)
        for i, ax in enumerate(axes):
            full[ax], full[rank + ax] = pads[i], pads[len(axes) + i]
        pads = full
    r = len(pads) // 2
    begin, end = pads[:r], pads[r:]
    if any(begin[:2]) or any(end[:2]) or r not in (3, 4) or min(pads) < 0:
        raise Unsupported(f"pads {pads}: only padding around the L of (C, L) or the H, W of (C, H, W) maps to ZeroPad")
    sides = [v for b, e in zip(begin[2:], end[2:]) for v in (b, e)]
    cfg = {"pad": sides} | ({"mode": mode} if mode != "constant" else {}) | ({"value": value} if value else {})
    c.add(node, "ZeroPad", cfg, [x], out_shape=(s[0],) + tuple(n + b + e for n, b, e in zip(s[1:], begin[2:], end[2:])))


@handles("Resize", "Upsample")
def _resize(c, node):
    a = _attrs(node)
    (x,) = c.data(node)
    s = c.values[x].shape
    if len(s) != 3:
        raise Unsupported(f"resizes a {len(s)}-D tensor; Upsample2D takes (C, H, W)")
    sizes = node.op_type == "Resize" and len(node.input) > 3 and bool(node.input[3])
    w = c.worlds.get(node.input[3]) if sizes else None                 # sizes computed from the input's shape
    if w is not None and len(w[0]) == 4 and list(w[0][1:]) == list(w[1][1:]):
        out = (s[0],) + tuple(int(v) for v in w[0][2:])                # (batch, C, H_out, W_out): the same for both
    else:
        out = c.out_shape(node)
    mode, ctm = a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel")
    if out[0] != s[0] or "axes" in a or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported("resizes the channels, or only some axes: Upsample2D resizes H and W")
    if node.op_type == "Resize" and not sizes and not (len(node.input) > 2 and node.input[2]):
        raise Unsupported("neither scales nor sizes are given")
    sc = None if sizes else [float(v) for v in c.const(node, 2 if node.op_type == "Resize" else 1, "scales")]
    if sc is not None and sc[:2] != [1.0, 1.0]:
        raise Unsupported(f"scales {sc} resize the batch or channel axis")
    sc = sc and sc[2:]
    if sizes:
        cfg = {"size": list(out[1:])}
    elif all(v == int(v) and v >= 1 for v in sc):
        cfg = {"scale": [int(v) for v in sc]}
    elif sc[0] == sc[1]:
        cfg = {"scale_factor": sc[0]}
    else:
        raise Unsupported(f"scales {sc}: Upsample2D takes whole-number scales, a size, or one fractional scale")
    floor = a.get("nearest_mode", "round_prefer_floor") == "floor"
    if node.op_type == "Upsample" or (mode == "nearest" and ctm == "asymmetric" and floor):
        m = "nearest" if mode == "nearest" else None
    elif mode in ("linear", "cubic") and ctm in COORDS:
        m = "bilinear" if mode == "linear" else "bicubic"
        cfg.update(coordinate_transformation_mode=ctm, antialias=bool(a.get("antialias", 0)))
        if m == "bicubic":
            cfg.update(cubic_coeff_a=float(a.get("cubic_coeff_a", -0.75)), exclude_outside=bool(a.get("exclude_outside", 0)))
    else:
        m = None
    if m is None:
        raise Unsupported(f"mode {mode} with coordinate_transformation_mode {ctm}: Upsample2D does nearest "
                          f"(asymmetric, floor), linear and cubic ({', '.join(COORDS)})")
    c.add(node, "Upsample2D", {**cfg, "mode": m}, [x], out_shape=out)


@handles("Identity", "Dropout")
def _identity(c, node):
    (x,) = c.data(node, views=True)[:1]
    c.alias(node, x)
