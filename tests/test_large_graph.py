"""Large graphs: the cycle check walks the adjacency, delete-all + undo is one batched step that restores the
identical graph, and the canvas mirrors it with one selection signal (no per-item storms)."""
import pytest

from engine.graph import Graph, GraphError
from engine.project import Project


class Counting(list):
    """A list that counts full scans (iteration, membership, index)."""

    scans = 0

    def __iter__(self):
        Counting.scans += 1
        return super().__iter__()

    def __contains__(self, x):
        Counting.scans += 1
        return super().__contains__(x)


class CountingDict(dict):
    """{node: edges} that counts lookups: how many nodes a walk visits."""

    def __init__(self, d):
        super().__init__(d)
        self.hits = 0

    def __getitem__(self, k):
        self.hits += 1
        return super().__getitem__(k)


def dag(n, skip=5):
    """Input → Dense chain of n nodes with an Add every `skip` nodes merging a node three back."""
    g = Graph()
    g.add_node("Input", "x", {"shape": [4]})
    names, i = ["x"], 1
    while len(g.nodes) < n:
        if i % skip == 0 and len(names) > 3:
            a = g.add_node("Add", f"add{i}").name
            g.connect(names[-1], a)
            g.connect(names[-3], a)
        else:
            a = g.add_node("Dense", f"dense{i}", {"units": 4}).name
            g.connect(names[-1], a)
        names.append(a)
        i += 1
    for k, name in enumerate(g.nodes):
        g.nodes[name].meta.update(x=(k % 40) * 200, y=(k // 40) * 120)
    return g


def test_cycle_check_walks_only_what_lies_downstream():
    g = dag(400)
    last = list(g.nodes)[-1]
    g.add_node("Dense", "tail", {"units": 4})
    g.edges = Counting(g.edges)
    g._outs = CountingDict(g._outs)
    Counting.scans = 0
    assert g.check_connect(last, "tail").dst == "tail"          # tail feeds nothing: one node visited
    assert g._outs.hits <= 3
    with pytest.raises(GraphError, match="cycle"):
        g.check_connect(last, "add5")                           # add5 feeds almost everything: a real walk
    assert Counting.scans == 0                                  # never a scan of the edge list
    assert g._outs.hits <= 2 * len(g.nodes)                     # each node at most once (+ the leaf lookups)


def test_restore_refuses_a_cycle_and_leaves_the_graph_unchanged():
    g = Graph()
    g.add_node("Input", "x", {"shape": [4]})
    g.add_node("Input", "x2", {"shape": [4]})
    g.add_node("Add", "a")
    g.chain(("b", "Dense", {"units": 4}), ("c", "Dense", {"units": 4}), after="a")
    g.connect("x", "a")
    g.connect("x2", "a")
    before = g.to_dict()
    nodes, edges = g.remove_many(["b"])
    g.connect("c", "a")                               # fine while b is gone; a cycle a → b → c → a with b back
    during = g.to_dict()
    with pytest.raises(GraphError, match="cycle"):
        g.restore(nodes, edges)
    assert g.to_dict() == during and g.consumers("a") == [] and g.inputs_of("c") == []
    g.disconnect(next(e for e in g.edges if e.src == "c"))
    g.restore(nodes, edges)
    assert g.to_dict() == before and g.consumers("a") == ["b"] and g.topo_order()[-1] == "c"


def test_undo_of_delete_all_restores_the_identical_graph_without_per_edge_checks(qtbot, monkeypatch):
    from gui.document import Document
    from gui.scene import GraphScene
    doc = Document(Project(graph=dag(300)))
    scene = GraphScene(doc)
    before = doc.graph.to_dict()
    infos_before = {n: (i.shape, i.params) for n, i in doc.infos.items()}
    checks = []
    real = Graph.check_connect
    monkeypatch.setattr(Graph, "check_connect", lambda self, *a, **k: checks.append(a) or real(self, *a, **k))
    sel = []
    scene.selectionChanged.connect(lambda: sel.append(1))
    scene.select(list(doc.graph.nodes))
    sel.clear()
    scene.delete_selected()
    assert not doc.graph.nodes and not doc.graph.edges and not scene.nodes and not scene.edges
    assert doc.undo_stack.undoText() == "Delete 300 layers"
    assert len(sel) <= 1                                        # one selection signal, not one per item
    doc.undo_stack.undo()
    assert doc.graph.to_dict() == before                        # same nodes, order, edges and edge order
    assert checks == []                                         # one acyclicity check for the whole set
    assert {n: (i.shape, i.params) for n, i in doc.infos.items()} == infos_before
    assert set(scene.nodes) == set(doc.graph.nodes) and set(scene.edges) == set(doc.graph.edges)
    for e, it in scene.edges.items():                           # every edge drawn from its source's port
        assert (it.path().pointAtPercent(0) - scene.nodes[e.src].out_port.scenePos()).manhattanLength() < 1e-6
        assert (it.path().pointAtPercent(1) - scene.nodes[e.dst].port_at(e.port).scenePos()).manhattanLength() < 1e-6
    for n, it in scene.nodes.items():
        used = [e.port for e in doc.graph.edges if e.dst == n]
        assert len([p for p in it.in_ports if not p.extra]) >= (max(used) + 1 if used else 0)
    doc.undo_stack.redo()
    assert not doc.graph.nodes and not scene.nodes
    doc.undo_stack.undo()
    assert doc.graph.to_dict() == before


def test_deleting_some_nodes_and_edges_is_one_step_and_undoes_exactly():
    from gui.document import Document
    doc = Document(Project(graph=dag(40)))
    before = doc.graph.to_dict()
    e = next(e for e in doc.graph.edges if e.dst == "add5")
    doc.remove_nodes(["dense7", "dense2"], [e])
    assert doc.undo_stack.count() == 1 and e not in doc.graph.edges and "dense7" not in doc.graph.nodes
    doc.undo_stack.undo()
    assert doc.graph.to_dict() == before


def test_an_edit_reanalyses_only_the_node_and_what_lies_downstream(monkeypatch):
    from engine import shapes
    from gui.document import Document
    doc = Document(Project(graph=dag(300)))
    names = list(doc.graph.nodes)
    seen = []
    real = shapes._layer
    monkeypatch.setattr(shapes, "_layer", lambda node, name: seen.append(name) or real(node, name))
    doc.set_hparam(names[-2], "units", 5)                     # near the end: itself and the last node
    assert set(seen) == doc.graph._downstream(names[-2]) and len(seen) <= 3
    seen.clear()
    doc.set_hparam("dense1", "units", 6)      # near the start: its consumers change, their outputs do not,
    assert seen[0] == "dense1" and 2 < len(seen) < 10         # and analysis stops there (not 290 nodes)
    full = shapes.infer(doc.graph)
    assert {n: (i.shape, i.params, i.error) for n, i in full.items()} == \
        {n: (i.shape, i.params, i.error) for n, i in doc.infos.items()}


def test_incremental_inference_matches_a_full_one_after_every_edit():
    import random

    from engine.shapes import infer
    from engine.validate import mark
    from gui.document import Document
    rng = random.Random(0)
    doc = Document(Project(graph=dag(60)))

    def same():
        full = mark(doc.graph, dict(infer(doc.graph)))        # with the window's graph check (a second output)
        assert list(full) == list(doc.infos)
        for n, i in full.items():
            j = doc.infos[n]
            assert (i.shape, i.params, i.macs, i.error, i.blocked) == (j.shape, j.params, j.macs, j.error, j.blocked), n
    for step in range(60):
        names = list(doc.graph.nodes)
        dense = [n for n in names if doc.graph.nodes[n].type == "Dense"]
        what = rng.choice(["units", "delete", "connect", "disconnect", "rename", "add", "undo", "redo"])
        try:
            if what == "units" and dense:
                doc.set_hparam(rng.choice(dense), "units", rng.choice([3, 4, 5]))
            elif what == "delete":
                doc.remove_nodes(rng.sample(names, min(3, len(names))))
            elif what == "connect" and len(names) > 1:
                doc.connect(*rng.sample(names, 2))
            elif what == "disconnect" and doc.graph.edges:
                doc.disconnect(rng.choice(doc.graph.edges))
            elif what == "rename":
                doc.rename(rng.choice(names), f"r{step}")
            elif what == "add":
                doc.add_node("Dense", {"units": 4})
            elif what == "undo":
                doc.undo_stack.undo()
            elif what == "redo":
                doc.undo_stack.redo()
        except Exception as e:                                # refusals (cycles, taken ports) are fine
            assert "Error" in type(e).__name__, e
        same()


def test_reading_a_graph_checks_cycles_once_and_still_names_the_closing_edge(monkeypatch):
    d = dag(500).to_dict()
    d["edges"].reverse()                                       # the order that made per-edge walks quadratic
    walks = []
    real = Graph._reaches
    monkeypatch.setattr(Graph, "_reaches", lambda self, a, b: walks.append(a) or real(self, a, b))
    g = Graph.from_dict(d)
    assert walks == [] and g.to_dict()["edges"] == d["edges"]
    bad = {"nodes": [{"name": "x", "type": "Input", "config": {"shape": [2]}}, {"name": "a", "type": "Add"},
                     {"name": "b", "type": "Add"}],
           "edges": [{"src": "x", "dst": "a"}, {"src": "a", "dst": "b"}, {"src": "b", "dst": "a", "port": 1}]}
    with pytest.raises(GraphError, match=r"edge #3 \(b → a\).*cycle"):
        Graph.from_dict(bad)


def test_changing_one_inputs_feed_rechecks_every_other_input_as_a_full_analysis_does():
    """An Input repeating another's feed is an error on the later one, which the edit did not touch."""
    from engine.shapes import infer
    from engine.validate import mark
    from gui.document import Document
    g = Graph()
    for name in ("src", "tgt", "extra"):
        g.add_node("Input", name, {"shape": [5, 3], "feed": "source"})
    doc = Document(Project(graph=g))
    steps = [("tgt", "target"), ("extra", "target"), ("tgt", "source"), ("extra", "source"), ("src", "target")]
    for name, feed in steps:
        doc.set_hparam(name, "feed", feed)
        full = mark(doc.graph, dict(infer(doc.graph)))        # with the window's graph check (three outputs)
        assert {n: i.error for n, i in doc.infos.items()} == {n: i.error for n, i in full.items()}, (name, feed)
    assert any(i.error for i in doc.infos.values())                       # two source Inputs left: one is refused
    for _ in steps:
        doc.undo_stack.undo()
        assert {n: i.error for n, i in doc.infos.items()} == \
            {n: i.error for n, i in mark(doc.graph, dict(infer(doc.graph))).items()}
