"""Structure search: a block of nodes (one entry, one exit: Dense+ReLU, a transformer encoder block) repeated
k times in a trial's graph, and the checks and texts of the search ranges a user marks.

A repeat range is kept in project.search under "repeat:<node>+<node>+…" (the block's node names):
  {"low": 1, "high": 4, "int": true, "repeat": ["fc1", "act1"]}
"""
from .errors import ConfigError
from .graph import GraphError

REPEAT = "repeat:"
NODE_STEP = 190.0               # canvas x from one node to the next in a row (a node is 140 wide)


def repeat_key(names):
    return REPEAT + "+".join(names)


def block(graph, names):
    """(source, exit, names in graph order) of a block: every edge into it comes from one node outside
    (the source), every edge out of it leaves from one node inside (the exit); GraphError says what is wrong."""
    names = list(dict.fromkeys(names))
    if not names:
        raise GraphError("select the layers of the block to repeat")
    miss = [n for n in names if n not in graph.nodes]
    if miss:
        raise GraphError(f"no node named '{miss[0]}' in the graph")
    inside = set(names)
    ins = {e.src for n in names for e in graph._ins[n] if e.src not in inside}
    outs = {e.src for n in names for e in graph._outs[n] if e.dst not in inside}
    what = "+".join(names) if len(names) <= 6 else f"{'+'.join(names[:3])}+…+{names[-1]} ({len(names)} layers)"
    if any(graph.nodes[n].type == "Input" for n in names):
        raise GraphError(f"block {what}: an Input cannot be repeated")
    if len(ins) != 1:
        raise GraphError(f"block {what}: it must be fed by exactly one layer outside it, not "
                         f"{len(ins)} ({', '.join(sorted(ins)) or 'none'})")
    if not outs:                                             # the block ends the graph: its one output
        outs = {n for n in names if not graph._outs[n]}
    if len(outs) != 1:
        raise GraphError(f"block {what}: exactly one of its layers may feed the rest of the graph, not "
                         f"{len(outs)} ({', '.join(sorted(outs))})")
    exit_ = next(iter(outs))
    seen, stack = {exit_}, [exit_]                              # walk back from the exit inside the block
    while stack:
        for e in graph._ins[stack.pop()]:
            if e.src in inside and e.src not in seen:
                seen.add(e.src)
                stack.append(e.src)
    loose = [n for n in names if n not in seen]
    if loose:
        raise GraphError(f"block {what}: '{loose[0]}' does not lead to '{exit_}', the block's output")
    order = [n for n in graph.topo_order() if n in inside]
    return ins.pop(), exit_, order


def repeat(graph, names, k):
    """A copy of graph with the block repeated k times in a row (k = 1: unchanged). Copies are named
    '<node>_r2', '<node>_r3', …, placed after the block; the layers after it move along."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"a block repeats a whole number of times ≥ 1, got {k!r}")
    src, exit_, order = block(graph, names)
    g = graph.copy()
    if k == 1:
        return g
    inside = set(order)
    xs = [float(g.nodes[n].meta.get("x", 0)) for n in order]
    span = max(xs) - min(xs)
    step = span + (span / (len(order) - 1) if span > 0 else NODE_STEP)    # the block's width and one spacing
    after = g._downstream(exit_) - inside
    leave = [e for e in g._outs[exit_] if e.dst not in inside]
    for e in leave:
        g.disconnect(e)
    for n in after:
        m = g.nodes[n].meta
        m["x"] = float(m.get("x", 0)) + (k - 1) * step
    prev_exit = exit_
    for r in range(2, k + 1):
        rename = {}
        for n in order:
            new, i = f"{n}_r{r}", 1
            while new in g.nodes:
                new, i = f"{n}_r{r}_{i}", i + 1
            rename[n] = new
            node = graph.nodes[n]
            meta = dict(node.meta, x=float(node.meta.get("x", 0)) + (r - 1) * step)
            g.add_node(node.type, new, dict(node.config), meta)
        for n in order:                                       # edges into each node, by port
            for e in sorted(graph._ins[n], key=lambda e: e.port):
                g.connect(rename.get(e.src, prev_exit if e.src == src else e.src), rename[n], e.port, cycle=False)
        prev_exit = rename[exit_]
    for e in leave:
        g.connect(prev_exit, e.dst, e.port, cycle=False)
    return g


def is_repeat(key):
    return key.startswith(REPEAT)


def check_range(project, key, r):
    """ConfigError (one line) unless r is a well-formed range whose every value the setting accepts."""
    from .layers import REGISTRY
    from .project import TRAINING
    if not isinstance(r, dict):
        raise ConfigError(f"search range {key!r}: give {{\"low\": a, \"high\": b}} or {{\"choices\": [...]}}")
    if is_repeat(key):
        names = r.get("repeat")
        if not isinstance(names, list) or repeat_key(names) != key:
            raise ConfigError(f"search range {key!r}: 'repeat' must list the block's nodes {key[len(REPEAT):]}")
        try:
            block(project.graph, names)
        except GraphError as e:
            raise ConfigError(f"search range {key!r}: {e}") from None
        lo, hi = r.get("low"), r.get("high")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or not 1 <= lo <= hi <= 64:
            raise ConfigError(f"search range {key!r}: repeat counts are whole numbers 1 ≤ low ≤ high ≤ 64")
        return
    what, _, name = key.rpartition(".")
    if what == "training":
        hp = {h.name: h for h in TRAINING}.get(name)
    else:
        node = project.graph.nodes.get(what)
        hp = {h.name: h for h in REGISTRY[node.type].hparams}.get(name) if node is not None else None
    if hp is None:
        return                                   # search.check_space names the unknown key
    if hp.kind not in ("int", "float", "choice"):
        raise ConfigError(f"search range {key!r}: only numbers and choices can be searched ({name} is {hp.kind})")
    where = f"search range {key!r}"
    vals = r.get("choices") if "choices" in r else [r.get("low"), r.get("high")]
    if not isinstance(vals, list) or not vals:
        return
    if "choices" not in r and hp.kind == "choice":
        raise ConfigError(f"{where}: {name} is a choice: give {{\"choices\": [...]}}")
    for v in vals:
        hp.check(v, where)
    if "choices" in r and len(set(map(repr, vals))) != len(vals):
        raise ConfigError(f"{where}: a value appears twice in the choices")
    if r.get("int") and hp.kind != "int":
        raise ConfigError(f"{where}: {name} is not a whole number")


def describe(r):
    """'∈ {16, 32, 64}', '∈ [0.0001, 0.1] log', '× 1–4' for a range."""
    if "repeat" in r:
        return f"× {r['low']}–{r['high']}"
    if "choices" in r:
        return "∈ {" + ", ".join(map(str, r["choices"])) + "}"
    return f"∈ [{r['low']:g}, {r['high']:g}]" + (" log" if r.get("log") else "")


def suggest_range(hp, value):
    """A first range for a setting with current value `value`: its choices, three widths, or ×/÷10 on a log scale."""
    if hp.kind == "choice":
        return {"choices": list(hp.choices)}
    if hp.kind == "int":
        v = max(int(value), 1)
        opts = sorted({v // 2 or 1, v, v * 2})
        return {"choices": [o for o in opts if (hp.min is None or o >= hp.min) and (hp.max is None or o <= hp.max)]}
    v = float(value)
    lo, hi = (v / 10, v * 10) if v > 0 else (1e-4, 1e-1)
    if hp.min is not None:
        lo = max(lo, hp.min)
    if hp.max is not None:
        hi = min(hi, hp.max)
    return {"low": lo, "high": hi, "log": lo > 0}
