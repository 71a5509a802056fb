"""Layered auto-layout (longest path from the inputs, barycentre ordering), left-to-right or top-to-bottom."""
from .items import H, W

GAP_MAIN, GAP_CROSS = 60.0, 40.0


def layered(graph, vertical=False, origin=(40.0, 40.0), wrap=None):
    """{name: (x, y)}: each node one layer after its deepest input; layers ordered to reduce crossings.

    wrap: at most this many layers per row (column when vertical); longer chains continue on the next one."""
    order = graph.topo_order()
    depth = {}
    for n in order:
        depth[n] = max((depth[s] + 1 for s in graph.inputs_of(n)), default=0)
    layers = {}
    for n in order:
        layers.setdefault(depth[n], []).append(n)
    rank = {}
    for d in sorted(layers):
        row = layers[d]
        if d:
            def bary(n, row=row):
                ins = [rank[s] for s in graph.inputs_of(n) if s in rank]
                return sum(ins) / len(ins) if ins else row.index(n)
            row.sort(key=bary)
        for i, n in enumerate(row):
            rank[n] = i
    widest = max((len(r) for r in layers.values()), default=1)
    step_main = (H if vertical else W) + GAP_MAIN
    step_cross = (W if vertical else H) + GAP_CROSS
    wrap = wrap or len(layers)
    band = widest * step_cross + GAP_MAIN
    pos = {}
    for d, row in layers.items():
        off = (widest - len(row)) * step_cross / 2 + (d // wrap) * band
        for i, n in enumerate(row):
            main, cross = (d % wrap) * step_main, off + i * step_cross
            x, y = (cross, main) if vertical else (main, cross)
            pos[n] = (origin[0] + x, origin[1] + y)
    return pos


def best_wrap(graph, vertical, width, height):
    """Layers per row that show the whole graph largest in a width × height viewport."""
    try:
        order = graph.topo_order()
    except Exception:
        return None
    depth = {}
    for n in order:
        depth[n] = max((depth[s] + 1 for s in graph.inputs_of(n)), default=0)
    n_layers = max(depth.values(), default=0) + 1
    widest = max((list(depth.values()).count(d) for d in range(n_layers)), default=1)
    step_main = (H if vertical else W) + GAP_MAIN
    band = widest * ((W if vertical else H) + GAP_CROSS) + GAP_MAIN
    best, best_scale = n_layers, 0.0
    for c in range(1, n_layers + 1):
        rows = -(-n_layers // c)
        main, cross = c * step_main, rows * band
        w, h = (cross, main) if vertical else (main, cross)
        scale = min(width / w, height / h)
        if scale > best_scale + 1e-9:
            best, best_scale = c, scale
    return best
