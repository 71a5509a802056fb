"""Graph edits, validation and the project file format."""
import json

import pytest

from engine import Graph, GraphError, ProjectError
from engine.project import Project


def chain(*types):
    g = Graph()
    names = [g.add_node(t).name for t in types]
    for a, b in zip(names, names[1:]):
        g.connect(a, b)
    return g, names


def test_topological_order_and_multi_input():
    g, (i, d1, d2) = chain("Input", "Dense", "Dense")
    add = g.add_node("Add").name
    g.connect(d2, add)
    g.connect(d1, add)
    assert g.inputs_of(add) == [d2, d1]
    order = g.topo_order()
    assert order.index(i) < order.index(d1) < order.index(d2) < order.index(add)
    assert g.outputs() == [add]


def test_refused_connections_say_why():
    g, (i, d, r) = chain("Input", "Dense", "ReLU")
    with pytest.raises(GraphError, match="nothing can connect into it"):
        g.connect(r, i)
    with pytest.raises(GraphError, match="already connected .from 'dense'"):
        g.connect(i, r)
    with pytest.raises(GraphError, match="input 1 of 'relu' is already connected"):
        g.connect(i, r, 0)
    with pytest.raises(GraphError, match="itself"):
        g.connect(d, d)
    with pytest.raises(GraphError, match="cycle"):
        g2, (a, b, c) = chain("Input", "Add", "Add")
        g2.connect(c, b)


def test_missing_inputs_are_reported():
    g, (i, add) = chain("Input", "Add")
    assert "at least two inputs" in g.missing_inputs(add)
    g2 = Graph()
    g2.add_node("Dense", "fc")
    assert "no input" in g2.missing_inputs("fc")


def test_remove_and_rename_keep_edges_consistent():
    g, (i, d, r) = chain("Input", "Dense", "ReLU")
    g.rename(d, "fc1")
    assert g.inputs_of(r) == ["fc1"] and g.inputs_of("fc1") == [i]
    node, gone = g.remove_node("fc1")
    assert node.type == "Dense" and len(gone) == 2 and g.edges == []


def test_project_round_trip(tmp_path):
    g, _ = chain("Input", "Dense", "Sigmoid")
    g.nodes["dense"].meta["pos"] = [10, 20]
    p = Project(g, name="t")
    p.save(tmp_path / "p.json")
    q = Project.load(tmp_path / "p.json")
    assert q.to_dict() == p.to_dict()


@pytest.mark.parametrize("text,match", [
    ("{not json", "line 1"),
    ('{"format": "other"}', "not a Layerboard project"),
    ('{"format": "layerboard-project", "version": 99, "graph": {"nodes": []}}', "newer Layerboard"),
    ('{"format": "layerboard-project", "version": 1, "graph": {"nodes": [{"name": "a", "type": "Warp"}]}}',
     "unknown layer type"),
    ('{"format": "layerboard-project", "version": 1, "graph": {"nodes": [{"name": "a", "type": "Input"}, '
     '{"name": "b", "type": "ReLU"}], "edges": [{"src": "a", "dst": "b"}, {"src": "b", "dst": "a"}]}}',
     "edge #2"),
    ('{"format": "layerboard-project", "version": 1, "graph": {"nodes": []}, "training": {"lr": "fast"}}',
     "training: lr"),
])
def test_bad_project_files_raise_one_clear_error(tmp_path, text, match):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(ProjectError, match=match):
        Project.load(f)


def test_project_load_never_executes(tmp_path):
    """A pickle or code payload is just bad JSON, not something that runs."""
    import pickle
    f = tmp_path / "evil.json"
    f.write_bytes(pickle.dumps(object()))
    with pytest.raises(ProjectError):
        Project.load(f)


def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch):
    p = Project(chain("Input", "Dense")[0])
    path = tmp_path / "p.json"
    p.save(path)
    before = path.read_bytes()
    import os
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    p.name = "changed"
    with pytest.raises(OSError):
        p.save(path)
    assert path.read_bytes() == before and json.loads(before)["name"] == ""
    assert [f.name for f in tmp_path.iterdir()] == ["p.json"]


def test_chain_adds_nodes_in_a_row_after_a_given_node():
    g = Graph()
    assert g.chain(("x", "Input", {"shape": [3]}), ("d", "Dense", {"units": 2})) == "d"
    assert g.chain(("r", "ReLU", {}), ("s", "Sigmoid", {}), after="d") == "s"
    assert [(e.src, e.dst) for e in g.edges] == [("x", "d"), ("d", "r"), ("r", "s")]
    assert g.nodes["d"].config == {"units": 2} and g.topo_order() == ["x", "d", "r", "s"]


def test_atomic_write_keeps_the_old_mode_or_follows_the_umask(tmp_path):
    import os
    import stat
    from engine.project import atomic_write
    new = tmp_path / "new.json"
    atomic_write(new, b"{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask and new.read_bytes() == b"{}"
    old = tmp_path / "old.json"
    old.write_text("x")
    old.chmod(0o640)
    atomic_write(old, b"y")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640 and old.read_text() == "y"
