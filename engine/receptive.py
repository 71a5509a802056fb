"""Receptive field and effective stride along the positional axes (L, T; H, W; D, H, W), spec §3's recurrence.

j = j_in·S and r = r_in + ⌈(E − 1)·j_in⌉ per axis, where a layer's kernel_stride() gives E, the number of adjacent
input positions one output value reads (d·(K − 1) + 1 for a dilated kernel), and S, its step in input positions
(a fraction 1/S for upsampling layers). r = 1, j = 1 at the Input. With whole strides r is exact; the ceiling is
exact for the first window after an upsampling (the max over alignments of the inputs K upsampled positions reach,
⌈(K − 1)/S⌉ + 1) and an upper bound after two fractional steps (alignments then no longer all reach the worst). Rank-2 data is (T, F) with
positions first, or (C, L) with positions last after a layer with layout = signal; a layer that reads the other
axis as positions, mixes all positions (recurrent, attention) or rearranges them (Reshape) ends the field; a layer
declares `mixes_positions` where its category says otherwise (GridSample mixes; PositionalEncoding and
RotaryEmbedding, in the attention category, keep each step where it is)."""
from fractions import Fraction
from math import ceil

AXES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
MIXING = ("recurrent", "attention")          # categories whose outputs read every position


def mixes(layer):
    """True when an output position reads positions other than its own window: the layer's `mixes_positions`,
    else its category's."""
    return getattr(layer, "mixes_positions", layer.category in MIXING)


def dims(v):
    """(3, 3) → "3×3", (5,) → "5", (Fraction(1, 2),) → "1/2"."""
    return "×".join(str(Fraction(x)) for x in v)


def dilated_extent(k, dil):
    """Input positions a dilated kernel spans per axis: d·(K − 1) + 1."""
    return tuple(d * (kk - 1) + 1 for kk, d in zip(k, dil))


def dilated_why(k, dil):
    """The extent's formula with these numbers per axis (None without dilation): receptive-field tooltips."""
    if all(d == 1 for d in dil):
        return None
    return tuple(f"d·(K − 1) + 1 = {d}·({kk} − 1) + 1 = {d * (kk - 1) + 1}" for kk, d in zip(k, dil))


def shown(info):
    """True when the field says something: any image or volume, or a 1-D field a window has widened or strided
    (a bare (T, F) sequence's field 1, stride 1 is left out of the summary and inspector)."""
    return info.field is not None and (len(info.field) > 1 or info.field[0] > 1 or info.stride[0] != 1)


def _positions(shape):
    """Positional axes of a sample shape: (C, L) / (T, F) → 1, (C, H, W) → 2, (C, D, H, W) → 3; else 0."""
    return len(shape) - 1 if len(shape) in (2, 3, 4) else 0


def _layout(layer, shape):
    """Which axis of rank-2 data this layer reads as positions: "T" (first), "L" (last) or None (either)."""
    if len(shape) != 2:
        return None
    lay = layer.config.get("layout")
    if lay in ("sequence", "signal"):
        return "T" if lay == "sequence" else "L"
    return "T" if layer.type == "Dense" else None          # Dense acts on the features, the last axis


def field(info, layer, ks, ins):
    """Set info.field, info.stride (and info.axes for rank-2 data) from the inputs' NodeInfo and kernel_stride ks."""
    n = _positions(info.shape)
    if not ins:                                             # an Input of 2 or more axes starts the recurrence
        if n:
            info.field, info.stride, info.axes = (1,) * n, (1,) * n, None
        return
    prev = [i for i in ins if i.field is not None and len(i.field) == n]
    if layer.type == "Embedding" and n == 1:                # token ids (T,) → (T, d): one id per position
        info.field, info.stride, info.axes = (1,), (1,), "T"
        return
    if not n or not prev or len(prev) < len(ins) or mixes(layer) or layer.type == "Reshape":
        return
    want, have = _layout(layer, ins[0].shape), {i.axes for i in prev} - {None}
    if len(have) > 1 or (want and have and want not in have):
        return                                              # positions read along the other axis
    f0 = tuple(max(i.field[d] for i in prev) for d in range(n))
    s0 = tuple(max(i.stride[d] for i in prev) for d in range(n))
    info.axes = want or next(iter(have), None)
    if ks is None:
        info.field, info.stride = f0, s0
        return
    ext, st = ks[0], ks[1]
    if all(type(v) is int for v in s0 + tuple(st)):                   # whole strides: no Fractions (large graphs)
        info.stride = tuple(a * s for a, s in zip(s0, st))
        info.field = tuple(f + (e - 1) * a for f, e, a in zip(f0, ext, s0))
        return
    info.stride = tuple(_num(a * Fraction(s)) for a, s in zip(s0, st))
    info.field = tuple(f + ceil((e - 1) * Fraction(a)) for f, e, a in zip(f0, ext, s0))


def _par(x):
    """1 → "1", 1/2 → "(1/2)": a factor as written in a product or quotient."""
    x = Fraction(x)
    return str(x) if x.denominator == 1 else f"({x})"


def _num(x):
    """An int when whole (JSON, display), else the Fraction."""
    return int(x) if x.denominator == 1 else x


def explain(info, layer, ks, ins):
    """{"field", "stride"}: the recurrence with this node's numbers, one line each ({} when there is no field)."""
    if info.field is None:
        return {}
    n = len(info.field)
    prev = [i for i in ins if i.field is not None]
    if not prev:
        start = "each token id is one position" if ins else "an Input sees one " + ("step" if n == 1 else "pixel")
        return {"field": f"{start}: field = {dims(info.field)}", "stride": f"stride = {dims(info.stride)}"}
    if ks is None:
        return {"field": f"unchanged: field = field of the input = {dims(info.field)}",
                "stride": f"unchanged: stride = {dims(info.stride)}"}
    f0 = tuple(max(i.field[d] for i in prev) for d in range(n))
    s0 = tuple(max(i.stride[d] for i in prev) for d in range(n))
    ext, st = ks[0], ks[1]
    why = ks[2] if len(ks) > 2 else None
    names = AXES[n]
    whole = all(Fraction(a).denominator == 1 for a in s0)
    rule = "r = r_in + (K − 1)·j_in" if whole else "r = r_in + ⌈(K − 1)·j_in⌉ (at most)"
    parts = []
    for d in range(n):
        term = f"({ext[d]} − 1)·{_par(s0[d])}"
        parts.append(f"{f0[d]} + {term if whole else '⌈' + term + '⌉'} = {info.field[d]} ({names[d]})")
    f = f"{rule} = " + ", ".join(parts)
    if why:
        f += "; K = " + ", ".join(sorted(set(why), key=why.index))
    down = any(Fraction(s) < 1 for s in st)
    srule = "j = j_in·S" if not down else "j = j_in/S"
    sparts = [f"{_par(a)}{'/' + str(Fraction(1, Fraction(s))) if down else '·' + str(s)} = {Fraction(j)} ({names[d]})"
              for d, (a, s, j) in enumerate(zip(s0, st, info.stride))]
    return {"field": f, "stride": f"{srule} = " + ", ".join(sparts)}
