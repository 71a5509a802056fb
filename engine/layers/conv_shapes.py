"""Shapes and hyperparameters shared by the convolutions and pools: per-axis ints, the output-size law with its
error messages and formula lines, the channels-first input check."""
from math import isqrt

from ..errors import ConfigError, ShapeError
from ..hparams import HP
from ..initializers import INITS
from .base import Fix, fmt

AXES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
AXIS_NAMES = {1: "", 2: " (height, width)", 3: " (depth, height, width)"}


def ints(layer, name, rank):
    """A 1- or rank-value 'ints' hyperparameter as a rank-tuple."""
    v = layer.config[name]
    if len(v) not in (1, rank):
        many = {2: "two", 3: "three"}.get(rank, str(rank))
        raise ConfigError(f"{layer.where}: {name} takes one value" + (f" or {many}{AXIS_NAMES[rank]}" if rank > 1 else "")
                          + f", got {v!r}")
    return tuple(v) * rank if len(v) == 1 else tuple(v)


def pair(layer, name):
    """A 1- or 2-value 'ints' hyperparameter as (h, w)."""
    return ints(layer, name, 2)


def out_size(layer, axis, n, p, kk, s, fix=None, d=1, ceil=False):
    """Spec §3: ⌊(n + 2p − d·(k − 1) − 1)/s⌋ + 1 (⌊(n + 2p − k)/s⌋ + 1 at d = 1; ⌈⌉ in ceil mode, where a last
    window that starts past the input and its left padding is dropped, as in PyTorch), or a ShapeError that shows
    the formula with the user's numbers."""
    a = axis.lower()
    lo, hi = ("⌈", "⌉") if ceil else ("⌊", "⌋")
    span = f"K_{a}" if d == 1 else f"d_{a}·(K_{a} − 1) − 1"
    law = f"{axis}_out = {lo}({axis}_in + 2·P_{a} − {span})/S_{a}{hi} + 1"
    if s < 1:
        raise ShapeError(f"{layer.where}: stride S_{a} = {s} but it must be at least 1 "
                         f"({law} divides by it)", fix=Fix("set", "set stride to 1", config=(("stride", (1,)),)))
    ext = d * (kk - 1) + 1                                   # the window's extent
    o = (-(-(n + 2 * p - ext) // s) if ceil else (n + 2 * p - ext) // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    if o < 1 or not ceil and n + 2 * p - ext < 0:
        nums = f"{kk}" if d == 1 else f"{d}·({kk} − 1) − 1"
        raise ShapeError(f"{layer.where}: {law} = {lo}({n} + 2·{p} − {nums})/{s}{hi} + 1 = {o} is empty: the "
                         f"{ext}-wide {'kernel' if d == 1 else 'dilated kernel'} is larger than the "
                         f"{n + 2 * p}-wide (padded) input" + (f"; {fix.text}" if fix else ""), fix=fix)
    return o


def size_line(axis, n, p, kk, s, d, o, ceil=False, sub=""):
    """'H_out = ⌊(H + 2P − K)/S⌋ + 1 = ⌊(28 + 2·0 − 3)/1⌋ + 1 = 26' with this axis' numbers (sub: K_h…)."""
    lo, hi = ("⌈", "⌉") if ceil else ("⌊", "⌋")
    P, K, S = (f"{c}{sub}" for c in "PKS")
    if d == 1:
        return f"{axis}_out = {lo}({axis} + 2{P} − {K})/{S}{hi} + 1 = {lo}({n} + 2·{p} − {kk})/{s}{hi} + 1 = {o}"
    return (f"{axis}_out = {lo}({axis} + 2{P} − d{sub}·({K} − 1) − 1)/{S}{hi} + 1 = "
            f"{lo}({n} + 2·{p} − {d}·({kk} − 1) − 1)/{s}{hi} + 1 = {o}")


def spatial_input(layer, in_shapes, rank=2):
    """(C, *spatial) of a layer that needs channels-first input of this rank, with a Reshape fix where one is
    obvious (a square flat vector for images, a vector as one channel for signals)."""
    s = in_shapes[0]
    if len(s) != rank + 1:
        fix, what = None, {1: "a signal (channels, length)", 2: "an image-like input (channels, height, width)",
                           3: "a volume (channels, depth, height, width)"}[rank]
        if rank == 2 and len(s) == 1 and isqrt(s[0]) ** 2 == s[0]:
            r = isqrt(s[0])
            fix = Fix("insert_before", f"insert a Reshape to (1, {r}, {r}) before it", "Reshape",
                      (("shape", (1, r, r)),))
        elif rank == 1 and len(s) == 1:
            fix = Fix("insert_before", f"insert a Reshape to (1, {s[0]}) before it", "Reshape", (("shape", (1, s[0])),))
        elif rank == 3 and len(s) == 3:
            fix = Fix("insert_before", f"insert a Reshape to {fmt((1,) + tuple(s))} before it", "Reshape",
                      (("shape", (1,) + tuple(s)),))
        raise ShapeError(f"{layer.where} needs {what} but got {fmt(s)}" + (f": {fix.text}" if fix else ""), fix=fix)
    return s


def conv_hparams(rank, init="he_uniform"):
    """The hyperparameters every convolution declares (a kernel of any rank)."""
    many = "K" if rank == 1 else "K or " + ", ".join(f"K_{a.lower()}" for a in AXES[rank])
    return (
        HP("filters", "int", 8, min=1, max=4096, doc="Output channels C_out"),
        HP("kernel_size", "ints", (3,), min=1, max=255, doc=many),
        HP("stride", "ints", (1,), min=0, max=255, doc=many.replace("K", "S")),
        HP("padding", "choice", "valid", choices=("valid", "same", "explicit"),
           doc="valid: none; same: P = d·(K − 1)/2 (keeps the size at stride 1); explicit: use pad"),
        HP("pad", "ints", (0,), min=0, max=255, doc="P zeros on each side (one value or one per axis) when padding is explicit"),
        HP("dilation", "ints", (1,), min=1, max=255, doc="d: kernel taps d apart (d·(K − 1) + 1 wide); 1 is a plain kernel"),
        HP("groups", "int", 1, min=1, max=4096,
           doc="g: input and output channels split into g groups, each convolved on its own (g = C_in: depthwise)"),
        HP("use_bias", "bool", True, doc="Add a learned bias per output channel"),
        HP("init", "choice", init, choices=INITS,
           doc="Weight initialisation: He variance 2/n_in suits ReLU; Glorot 2/(n_in + n_out)"),
    )
