"""Graph edits several tests make."""


def read_twice(g, branch, after, merge, into):
    """A second reader of layer `after`: branch (name, type, config) chained after it and merged, by a new layer
    merge (name, type), with what `into` read so far, in front of `into`."""
    g.chain(branch, after=after)
    g.add_node(merge[1], merge[0])
    e = next(e for e in g.edges if e.dst == into)
    g.disconnect(e)
    for s in (e.src, branch[0]):
        g.connect(s, merge[0])
    g.connect(merge[0], into)
