"""Document + undo stack + scene mirror: random edit/undo/redo replay, merging, save/open, bad files, failed saves."""
import json
import os
import random

import pytest

pytest.importorskip("PySide6")


from engine.errors import LayerboardError, ProjectError  # noqa: E402
from engine.graph import Graph, GraphError  # noqa: E402
from engine.layers import REGISTRY  # noqa: E402
from engine.project import Project  # noqa: E402
from engine import shapes  # noqa: E402
from engine.shapes import infer  # noqa: E402
from gui.document import Document, LockedError  # noqa: E402
from gui.items import EdgeItem, NodeItem, PortItem  # noqa: E402
from gui.scene import GraphScene  # noqa: E402
from resources import path  # noqa: E402


def example(name="digits-cnn.json"):
    p = path("examples", name)
    return Project.load(p if p.exists() else path("examples", "digits-mlp.json"))


def fresh_infer(graph):
    """Shape inference and the graph check (engine.validate.mark, as the window does) on a copy rebuilt from JSON,
    with the layer/shape memo emptied first."""
    from engine.validate import mark
    shapes._LAYERS.clear()
    shapes._SHAPES.clear()
    g = Graph.from_dict(json.loads(json.dumps(graph.to_dict())))
    return mark(g, dict(infer(g)))


def check_mirror(doc, scene):
    """The scene's items are exactly the Document's graph: nodes, edges, positions, ports, analysis."""
    g = doc.graph
    assert set(scene.nodes) == set(g.nodes)
    assert set(scene.edges) == set(g.edges)
    items = scene.items()
    assert sum(isinstance(i, NodeItem) for i in items) == len(g.nodes)
    assert sum(isinstance(i, EdgeItem) for i in items) == len(g.edges)
    ports = 0
    for name, it in scene.nodes.items():
        node = g.nodes[name]
        assert it.name == name and it.layer_type == node.type
        assert (it.pos().x(), it.pos().y()) == doc.pos(name)
        assert it.config == node.config
        assert it.info == doc.infos[name]
        ports += len(it.in_ports) + 1
        need = REGISTRY[node.type].n_inputs
        used = [e.port for e in g.edges if e.dst == name]
        assert len(it.in_ports) == (max(used, default=-1) + 2 if need is None else need)
    assert sum(isinstance(i, PortItem) for i in items) == ports
    full = fresh_infer(g)               # the document's analysis == a from-scratch pass on an independent copy
    assert list(doc.infos) == list(full) and doc.infos == full
    for e, it in scene.edges.items():
        assert it.edge == e
        a = scene.nodes[e.src].out_port.scenePos()
        b = scene.nodes[e.dst].port_at(e.port).scenePos()
        assert it.path().pointAtPercent(0) == a and it.path().pointAtPercent(1) == b


def random_value(rng, hp):
    if hp.kind == "bool":
        return rng.random() < 0.5
    if hp.kind == "choice":
        return rng.choice(hp.choices)
    if hp.kind == "int":
        return rng.randint(int(hp.min or 0), int(min(hp.max or 64, 64)))
    if hp.kind == "float":
        return round(rng.uniform(hp.min or 0.0, min(hp.max or 1.0, 1.0)), 3)
    if hp.kind == "ints":
        return [rng.randint(1, 8) for _ in range(rng.randint(1, 3))]
    return rng.choice(["a", "b"])


def random_edit(rng, doc):
    """One random edit through the Document (refusals are allowed and must change nothing)."""
    g = doc.graph
    names = list(g.nodes)
    op = rng.choice(["add", "add", "remove", "connect", "connect", "disconnect", "move", "hparam", "hparam",
                     "rename", "paste", "fix"])
    before = json.dumps(g.to_dict(), sort_keys=True)
    try:
        if op == "add" or not names:
            doc.add_node(rng.choice(sorted(REGISTRY)), pos=(rng.randint(-500, 500), rng.randint(-500, 500)))
        elif op == "remove":
            doc.remove_nodes(rng.sample(names, min(len(names), rng.randint(1, 2))))
        elif op == "connect":
            doc.connect(rng.choice(names), rng.choice(names))
        elif op == "disconnect" and g.edges:
            doc.disconnect(rng.choice(g.edges))
        elif op == "move":
            doc.move_nodes({n: (rng.randint(-900, 900), rng.randint(-900, 900)) for n in rng.sample(names, 2 if len(names) > 1 else 1)})
        elif op == "hparam":
            n = rng.choice(names)
            hps = REGISTRY[g.nodes[n].type].hparams
            if hps:
                hp = rng.choice(hps)
                doc.set_hparam(n, hp.name, random_value(rng, hp))
        elif op == "rename":
            doc.rename(rng.choice(names), rng.choice(["x", "y", "layer", names[0]]))
        elif op == "paste":
            doc.paste(doc.copy_data(rng.sample(names, min(3, len(names)))))
        elif op == "fix":
            fixable = [i for i in doc.infos.values() if i.fix is not None]
            if fixable:
                i = rng.choice(fixable)
                doc.apply_fix(i.name, i.fix)
    except LayerboardError:
        assert json.dumps(g.to_dict(), sort_keys=True) == before, f"a refused {op} changed the graph"


def test_random_edit_undo_redo_replay_keeps_the_scene_mirrored(qtbot):
    rng = random.Random(1234)
    doc = Document(example())
    scene = GraphScene(doc)
    start = json.dumps(doc.graph.to_dict(), sort_keys=True)
    stack = doc.undo_stack
    for step in range(400):
        r = rng.random()
        if r < 0.2 and stack.canUndo():
            for _ in range(rng.randint(1, 3)):
                stack.undo()
        elif r < 0.3 and stack.canRedo():
            stack.redo()
        else:
            random_edit(rng, doc)
        check_mirror(doc, scene)
    assert stack.count() > 50
    while stack.canUndo():
        stack.undo()
        check_mirror(doc, scene)
    assert json.dumps(doc.graph.to_dict(), sort_keys=True) == start
    assert not doc.dirty


def test_consecutive_edits_of_one_field_merge_into_one_undo_step(qtbot):
    doc = Document(example("digits-mlp.json"))
    dense = next(n for n, v in doc.graph.nodes.items() if v.type == "Dense")
    old = doc.graph.nodes[dense].config.get("units")
    for u in (10, 11, 12, 13):
        doc.set_hparam(dense, "units", u)
    assert doc.undo_stack.count() == 1
    doc.set_hparam(dense, "use_bias", False)
    assert doc.undo_stack.count() == 2
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.graph.nodes[dense].config.get("units") == old
    assert doc.infos[dense].shape == (old,)


def test_invalid_hparam_is_refused_with_a_message_and_changes_nothing(qtbot):
    doc = Document(example("digits-mlp.json"))
    dense = next(n for n, v in doc.graph.nodes.items() if v.type == "Dense")
    with pytest.raises(LayerboardError, match="units"):
        doc.set_hparam(dense, "units", 0)
    with pytest.raises(LayerboardError, match="units"):
        doc.set_hparam(dense, "units", "many")
    assert doc.undo_stack.count() == 0


def test_locked_document_refuses_structure_edits_but_records_runs(qtbot):
    doc = Document(example("digits-mlp.json"))
    seen = []
    doc.locked_changed.connect(seen.append)
    doc.set_locked(True)
    with pytest.raises(LockedError):
        doc.add_node("Dense")
    doc.add_run({"status": "done"})
    doc.set_training("lr", 0.01)
    assert seen == [True] and doc.project.runs == [{"status": "done"}] and doc.project.training["lr"] == 0.01
    doc.undo_stack.undo()
    assert doc.project.training["lr"] != 0.01


def test_save_then_open_round_trips_exactly(qtbot, tmp_path):
    doc = Document(example())
    doc.add_node("Dense", {"units": 7}, pos=(12, 34), name="extra")
    doc.set_training("epochs", 3)
    f = tmp_path / "model.json"
    doc.save(f)
    assert not doc.dirty
    other = Document()
    other.open(f)
    assert other.project.to_dict() == doc.project.to_dict()
    assert other.project.path == f
    f2 = tmp_path / "again.json"
    other.save(f2)
    assert f2.read_bytes() == f.read_bytes()


@pytest.mark.parametrize("text, what", [("{not json", "not valid JSON"),
                                        ('{"format": "layerboard-project", "version": 1, "graph": {"nodes": '
                                         '[{"name": "a", "type": "Nope"}], "edges": []}}', "Nope"),
                                        ('{"format": "something-else"}', "not a Layerboard project")])
def test_a_corrupted_file_leaves_the_open_document_intact(qtbot, tmp_path, text, what):
    doc = Document(example())
    doc.add_node("ReLU", name="mine")
    before = json.dumps(doc.project.to_dict())
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(ProjectError, match=what):
        doc.open(bad)
    assert json.dumps(doc.project.to_dict()) == before and doc.dirty and doc.undo_stack.count() == 1


def test_an_interrupted_save_leaves_the_old_file_intact(qtbot, tmp_path, monkeypatch):
    doc = Document(example())
    f = tmp_path / "model.json"
    doc.save(f)
    old = f.read_bytes()
    doc.add_node("Dense", name="unsaved")
    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ProjectError, match="old file is unchanged"):
        doc.save(f)
    assert f.read_bytes() == old
    assert doc.dirty
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_connect_refusals_name_the_reason(qtbot):
    doc = Document(example("digits-mlp.json"))
    order = doc.graph.topo_order()
    with pytest.raises(GraphError, match="already connected"):
        doc.connect(order[-1], order[1])
    with pytest.raises(GraphError, match="nothing can connect"):
        doc.connect(order[1], order[0])
    a, b = doc.add_node("Add"), doc.add_node("Add")
    doc.connect(a, b)
    with pytest.raises(GraphError, match="cycle"):
        doc.connect(b, a)
    assert doc.undo_stack.count() == 3


def test_a_position_far_off_the_canvas_is_refused_and_changes_nothing(qapp):
    """1e300 is finite, but Qt's geometry overflows to NaN there (edges lose their ends)."""
    doc = Document(example())
    n = next(iter(doc.graph.nodes))
    before = doc.pos(n)
    with pytest.raises(GraphError, match="within"):
        doc.move_nodes({n: (1e300, 0.0)})
    with pytest.raises(GraphError, match="within"):
        doc.add_node("Dense", pos=(0.0, -2e6))
    assert doc.pos(n) == before and doc.undo_stack.count() == 0
