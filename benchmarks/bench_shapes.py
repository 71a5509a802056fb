"""Shape inference speed: engine.shapes.infer on a 200-node graph, and re-validation after one edit.

    python benchmarks/bench_shapes.py [--nodes 200]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import Graph  # noqa: E402
from engine import shapes  # noqa: E402
from engine.shapes import infer  # noqa: E402


def big_graph(n=200, width=64):
    """A realistic mix: Dense/ReLU/Dropout chains with residual Adds and Concatenate joins, about n nodes."""
    g = Graph()
    g.add_node("Input", "x", {"shape": [width]})
    prev, skip, i = "x", "x", 0
    while len(g.nodes) < n - 3:
        i += 1
        d = g.add_node("Dense", f"d{i}", {"units": width}).name
        g.connect(prev, d)
        r = g.add_node("ReLU", f"r{i}").name
        g.connect(d, r)
        prev = r
        if i % 3 == 0:
            p = g.add_node("Dropout", f"p{i}", {"rate": 0.1}).name
            g.connect(prev, p)
            prev = p
        if i % 4 == 0:
            a = g.add_node("Add", f"a{i}").name
            g.connect(prev, a)
            g.connect(skip, a)
            prev = skip = a
        if i % 10 == 0:
            b = g.add_node("Dense", f"b{i}", {"units": width // 2}).name
            g.connect(skip, b)
            c = g.add_node("Concatenate", f"c{i}").name
            g.connect(prev, c)
            g.connect(b, c)
            e = g.add_node("Dense", f"e{i}", {"units": width}).name
            g.connect(c, e)
            prev = skip = e
    g.add_node("Dense", "out", {"units": 10})
    g.connect(prev, "out")
    g.add_node("Softmax", "sm")
    g.connect("out", "sm")
    return g


def ms(fn, reps=30):
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t), min(t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200)
    args = ap.parse_args(argv)
    g = big_graph(args.nodes)
    types = sorted({n.type for n in g.nodes.values()})
    infos = infer(g)
    assert not any(i.error for i in infos.values()), "the benchmark graph should be valid"
    print(f"graph: {len(g.nodes)} nodes, {len(g.edges)} edges ({', '.join(types)})")
    med, lo = ms(lambda: infer(g))
    print(f"infer (unchanged graph)  median {med:7.3f} ms   min {lo:7.3f} ms   (target < 5 ms)")

    def cold():                                              # no memoised layers or analyses
        shapes._LAYERS.clear()
        shapes._SHAPES.clear()
        return infer(g)
    med, lo = ms(cold)
    print(f"infer (cold, no memo)    median {med:7.3f} ms   min {lo:7.3f} ms")
    unit = [16, 64]

    def edit():                                              # one hyperparameter edit, then re-validate
        node = g.nodes["d5"]
        node.config = dict(node.config, units=unit[0])
        unit.reverse()
        return infer(g)
    med, lo = ms(edit)
    print(f"edit + re-validate       median {med:7.3f} ms   min {lo:7.3f} ms")

    def connect_edit():                                      # a structural edit: disconnect and reconnect
        e = next(e for e in g.edges if e.dst == "out")
        g.disconnect(e)
        g.connect(e.src, e.dst, e.port)
        return infer(g)
    med, lo = ms(connect_edit)
    print(f"reconnect + re-validate  median {med:7.3f} ms   min {lo:7.3f} ms")


if __name__ == "__main__":
    main()
