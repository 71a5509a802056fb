"""Checks of the graph as a whole (which node is the output, is there an Input): shared by the window, the CLI and
Model, so that what training refuses is shown on the canvas the moment the graph is edited."""
from dataclasses import replace


def outputs_of(graph):
    """The model's output nodes: the one node nobody reads, or several such nodes each marked meta["output"] = k
    (its place among an imported model's outputs; the first is trained); [] otherwise."""
    outs = graph.outputs()
    if len(outs) > 1 and all(isinstance(graph.nodes[n].meta.get("output"), int) for n in outs):
        return sorted(outs, key=lambda n: graph.nodes[n].meta["output"])
    return outs if len(outs) == 1 else []


def _names(names, most=4):
    """"'a', 'b' and 'c'" (at most `most` names, then "and 3 more")."""
    q = [f"'{n}'" for n in names[:most]]
    if len(names) > most:
        return ", ".join(q) + f" and {len(names) - most} more"
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " and " + q[-1]


def problem(graph):
    """(nodes to mark, one line) for what makes the graph untrainable as a whole, or None when it has at least
    one Input and exactly one output (or an imported model's marked outputs). An empty graph has no problem."""
    if not graph.nodes or (any(v.type == "Input" for v in graph.nodes.values()) and outputs_of(graph)):
        return None
    outs = graph.outputs()
    if not any(v.type == "Input" for v in graph.nodes.values()):
        return outs, "the graph has no Input layer: add one and connect it to the first layer"
    return outs, (f"{len(outs)} outputs ({_names(outs)}: nobody reads them), but a model has exactly one output: "
                  f"connect all but one to a later layer, or delete them")


def mark(graph, infos):
    """Write problem(graph)'s line as the error of each node it names that has no error of its own. Replaces the
    NodeInfo entries of the dict (dataclasses.replace): the objects themselves are shared with infer's cache."""
    p = problem(graph)
    if p is None:
        return infos
    for n in p[0]:
        i = infos.get(n)
        if i is not None and not i.error:
            infos[n] = replace(i, error=p[1])
    return infos


def trained_note(graph):
    """"the model trains output 'a' (the first of 2: 'a' and 'b'); ..." for an imported model with several outputs, else
    None: which output Train fits, said before it starts."""
    outs = outputs_of(graph)
    if len(outs) < 2:
        return None
    return (f"the model trains output '{outs[0]}' (the first of {len(outs)}: {_names(outs)}); layers that only the "
            f"other outputs use keep their weights")
