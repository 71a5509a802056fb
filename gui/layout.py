"""Layered auto-layout (longest path from the inputs, barycentre ordering, nodes lined up with their inputs),
left-to-right or top-to-bottom, long chains wrapped into rows (columns). Qt-free: it runs in the import thread."""
import numpy as np

NODE_W, NODE_H = 168.0, 92.0          # a node's footprint on the canvas (gui.items draws it this size)
GAP_MAIN, GAP_CROSS = 60.0, 40.0      # between layers (along the flow) and between nodes of one layer
SWEEPS = 4                            # barycentre passes (down, up, down, up, then a last one down)


def _steps(vertical):
    """(step along the flow, step across it) between neighbouring nodes."""
    return ((NODE_H if vertical else NODE_W) + GAP_MAIN, (NODE_W if vertical else NODE_H) + GAP_CROSS)


def plan(graph):
    """(depth {name: layer index}, layers [[names in order]], cross {name: slot along the layer}), in slots of
    one node (1.0 = one node + gap): each node in the layer after its deepest input, ordered to reduce
    crossings, placed at the mean slot of its inputs where the layer has room."""
    order = graph.topo_order()
    ins = graph.inputs_index()
    outs = {n: [] for n in order}
    depth = {}
    for n in order:
        depth[n] = max((depth[s] + 1 for s in ins[n]), default=0)
        for s in ins[n]:
            outs[s].append(n)
    layers = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for n in order:
        layers[depth[n]].append(n)
    rank = {n: i for row in layers for i, n in enumerate(row)}

    def sweep(rows, nbrs):
        for row in rows:
            key = {}
            for i, n in enumerate(row):
                r = [rank[s] for s in nbrs[n]]
                key[n] = sum(r) / len(r) if r else i
            row.sort(key=key.__getitem__)
            for i, n in enumerate(row):
                rank[n] = i
    for k in range(SWEEPS + 1):
        sweep(layers[1:], ins) if k % 2 == 0 else sweep(layers[-2::-1], outs)
    cross = {}
    for row in layers:
        want = []
        for i, n in enumerate(row):
            c = [cross[s] for s in ins[n]]
            want.append(sum(c) / len(c) if c else None)
        known = [w for w in want if w is not None]
        base = (sum(known) / len(known) if known else 0.0) - (len(row) - 1) / 2
        want = [base + i if w is None else w for i, w in enumerate(want)]
        row[:], want = map(list, zip(*sorted(zip(row, want), key=lambda t: t[1]))) if row else ([], [])
        at = []
        for w in want:                                     # keep order, one slot apart at least
            at.append(w if not at else max(w, at[-1] + 1.0))
        shift = sum(w - a for w, a in zip(want, at)) / len(at)   # the row as near its wishes as it can be
        for n, a in zip(row, at):
            cross[n] = a + shift
    return depth, layers, cross


def _spans(layers, cross):
    """(lo, hi): the first and last slot of each layer, as arrays."""
    return (np.array([min(cross[n] for n in row) for row in layers]),
            np.array([max(cross[n] for n in row) for row in layers]))


def _bands(spans, wrap):
    """(lo, hi): slot extents of each band of `wrap` layers."""
    starts = np.arange(0, len(spans[0]), wrap)
    return np.minimum.reduceat(spans[0], starts), np.maximum.reduceat(spans[1], starts)


def layered(graph, vertical=False, origin=(40.0, 40.0), wrap=None, planned=None):
    """{name: (x, y)} of every node's top-left corner; no two nodes overlap.

    wrap: at most this many layers per row (column when vertical); longer chains continue on the next one."""
    depth, layers, cross = planned or plan(graph)
    if not layers:
        return {}
    step_main, step_cross = _steps(vertical)
    wrap = max(1, int(wrap or len(layers)))
    off, pos = 0.0, {}
    for b, (lo, hi) in enumerate(zip(*_bands(_spans(layers, cross), wrap))):
        for d in range(b * wrap, min((b + 1) * wrap, len(layers))):
            main = (d - b * wrap) * step_main
            for n in layers[d]:
                c = off + (cross[n] - lo) * step_cross
                x, y = (c, main) if vertical else (main, c)
                pos[n] = (origin[0] + x, origin[1] + y)
        off += float(hi - lo + 1) * step_cross + GAP_MAIN
    return pos


def extent(spans, vertical, wrap):
    """(width, height) of the layout with `wrap` layers per row (column)."""
    step_main, step_cross = _steps(vertical)
    wrap = max(1, min(int(wrap), len(spans[0])))
    main = wrap * step_main - GAP_MAIN
    lo, hi = _bands(spans, wrap)
    side = float((hi - lo + 1).sum()) * step_cross + (len(lo) - 1) * GAP_MAIN - GAP_CROSS
    return (side, main) if vertical else (main, side)


def _wraps(n):
    """Candidate layers per row: the fewest for each number of rows (O(√n) of them)."""
    return sorted({-(-n // r) for r in range(1, n + 1)})


def best_wrap(graph, vertical, width, height, planned=None):
    """Layers per row that show the whole graph largest in a width × height viewport."""
    return _fit(planned or _plan_or_none(graph), vertical, width, height)[0]


def _plan_or_none(graph):
    try:
        return plan(graph)
    except Exception:                 # a cycle (refused by the Document, but a file may hold one): no wrap
        return None


def _fit(planned, vertical, width, height):
    """(wrap, scale) of the wrap that fits the viewport at the largest scale."""
    if planned is None or not planned[1]:
        return None, 1.0
    _, layers, cross = planned
    spans = _spans(layers, cross)
    best, best_scale = len(layers), 0.0
    for c in _wraps(len(layers)):
        w, h = extent(spans, vertical, c)
        scale = min(width / max(w, 1.0), height / max(h, 1.0))
        if scale > best_scale + 1e-9:
            best, best_scale = c, scale
    return best, best_scale


def choose(graph, width, height, readable):
    """(vertical, wrap, planned) for a width × height viewport at zoom ≥ readable: the direction in which the
    whole graph shows largest; when neither shows it readable, rows (columns) as long as the viewport shows at
    that zoom, in the direction with the fewest rows, then the fewest screens to scroll (a long chain runs along
    rows, a wide graph flows downwards)."""
    planned = _plan_or_none(graph)
    if planned is None or not planned[1]:
        return False, None, planned
    layers, options = planned[1], []
    spans = _spans(layers, planned[2])
    for vertical in (False, True):
        wrap, scale = _fit(planned, vertical, width, height)
        if scale < readable:
            room = (height if vertical else width) / readable + GAP_MAIN
            wrap = max(1, min(len(layers), int(room // _steps(vertical)[0])))
        w, h = extent(spans, vertical, wrap)
        screens = (w / width if vertical else h / height) * readable
        fits = scale >= readable
        options.append((not fits, -scale if fits else -(-len(layers) // wrap), screens, vertical, wrap))
    best = min(options)
    return best[3], best[4], planned
