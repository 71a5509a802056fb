"""What changed between two recorded runs: nodes and edges added, removed or changed, settings, size, scores."""


def _nodes(graph):
    return {n["name"]: n for n in graph.get("nodes", [])}


def _edges(graph):
    return {(e["src"], e["dst"], e.get("port", 0)) for e in graph.get("edges", [])}


def diff(a, b, graph_a, graph_b):
    """{"nodes": {"added", "removed", "changed": {name: {hparam: (old, new)}}}, "edges": {"added", "removed"},
    "training": {setting: (old, new)}, "size": {"params"/"macs": (old, new)}, "scores": {metric: (old, new)}}
    for runs a → b (run dicts of History.runs, graphs of History.graph)."""
    na, nb = _nodes(graph_a), _nodes(graph_b)
    changed = {}
    for name in sorted(set(na) & set(nb)):
        x, y = na[name], nb[name]
        d = {k: (x["config"].get(k), y["config"].get(k)) for k in sorted(set(x["config"]) | set(y["config"]))
             if x["config"].get(k) != y["config"].get(k)}
        if x["type"] != y["type"]:
            d["type"] = (x["type"], y["type"])
        if d:
            changed[name] = d
    ea, eb = _edges(graph_a), _edges(graph_b)
    ta, tb = a.get("training", {}), b.get("training", {})
    ra, rb = a.get("result", {}), b.get("result", {})
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    return {"nodes": {"added": sorted(set(nb) - set(na)), "removed": sorted(set(na) - set(nb)), "changed": changed},
            "edges": {"added": sorted(eb - ea), "removed": sorted(ea - eb)},
            "training": {k: (ta.get(k), tb.get(k)) for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)},
            "size": {k: (a.get(k), b.get(k)) for k in ("params", "macs") if a.get(k) != b.get(k)},
            "scores": {k: (ra.get(k), rb.get(k)) for k in sorted(set(ra) | set(rb))
                       if k.startswith(("val_", "train_")) and num(ra.get(k)) and num(rb.get(k))}}


def lines(d):
    """The diff as short lines a person reads (the CLI and the window's diff box)."""
    out = [f"+ node {n}" for n in d["nodes"]["added"]] + [f"− node {n}" for n in d["nodes"]["removed"]]
    for n, ch in d["nodes"]["changed"].items():
        out.append(f"~ node {n}: " + ", ".join(f"{k} {old} → {new}" for k, (old, new) in ch.items()))
    out += [f"+ edge {s} → {t}" for s, t, _ in d["edges"]["added"]]
    out += [f"− edge {s} → {t}" for s, t, _ in d["edges"]["removed"]]
    out += [f"~ {k}: {old} → {new}" for k, (old, new) in d["training"].items()]
    for k, (old, new) in d["size"].items():
        out.append(f"~ {k}: {old:,} → {new:,} ({new - old:+,})" if None not in (old, new) else f"~ {k}: {old} → {new}")
    for k, (old, new) in d["scores"].items():
        out.append(f"  {k}: {old:.4g} → {new:.4g} ({new - old:+.3g})")
    return out or ["no difference in graph, settings or scores"]
