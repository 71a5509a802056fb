"""Blocks in the engine: the project file keeps them, bad ones are refused with one line, grouping is checked,
ports and summaries are right, and repeated residual structures are found."""
import json

import pytest

from engine.blocks import Quotient, check_group, fold_repeated, ports, repeated, summary, unit_order
from engine.errors import ProjectError
from engine.graph import Graph, GraphError
from engine.project import Project
from engine.shapes import infer


def residual_net(units=2, width=8):
    """in → d0 → r0 → [dK → aK(rK-1, dK) → rK] × units → out."""
    g = Graph()
    prev = g.chain(("in", "Input", {"shape": [width]}), ("d0", "Dense", {"units": width}), ("r0", "ReLU", {}))
    for k in range(1, units + 1):
        g.chain((f"d{k}", "Dense", {"units": width}), after=prev)
        g.add_node("Add", f"a{k}")
        g.connect(prev, f"a{k}")
        g.connect(f"d{k}", f"a{k}")
        prev = g.chain((f"r{k}", "ReLU", {}), after=f"a{k}")
    g.chain(("out", "Dense", {"units": 2}), after=prev)
    return g


def test_project_file_round_trips_blocks_and_fold_state(tmp_path):
    g = residual_net()
    g.nodes["d1"].meta["block"] = g.nodes["a1"].meta["block"] = "first"
    g.blocks["first"] = {"folded": True}
    p = Project(graph=g)
    p.save(tmp_path / "p.json")
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["graph"]["blocks"] == [{"name": "first", "nodes": ["d1", "a1"], "folded": True}]
    assert all("block" not in n["meta"] for n in d["graph"]["nodes"])      # membership lives in "blocks" only
    q = Project.load(tmp_path / "p.json")
    assert q.graph.block_names() == {"first": ["d1", "a1"]} and q.graph.blocks["first"]["folded"] is True
    assert q.to_dict() == p.to_dict()
    assert "blocks" not in Graph.from_dict(residual_net().to_dict()).to_dict()          # none: no key


@pytest.mark.parametrize("blocks, why", [
    ([{"name": "b", "nodes": ["nope"]}], "no node named 'nope'"),
    ([{"name": "b", "nodes": ["d1"]}, {"name": "c", "nodes": ["d1"]}], "already in block 'b'"),
    ([{"name": "b", "nodes": ["d1"]}, {"name": "b", "nodes": ["a1"]}], "used twice"),
    ([{"nodes": ["d1"]}], "needs a text 'name'"),
    ({"b": 1}, "must be a list"),
])
def test_bad_blocks_in_a_file_are_refused_in_one_line(blocks, why, tmp_path):
    d = Project(graph=residual_net()).to_dict()
    d["graph"]["blocks"] = blocks
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(d))
    with pytest.raises(ProjectError) as e:
        Project.load(f)
    assert why in str(e.value) and "\n" not in str(e.value)


def test_grouping_is_checked_before_anything_changes():
    g = residual_net()
    with pytest.raises(GraphError, match="path leaves them and comes back"):
        check_group(g, ["r0", "a1"], "x")                 # r0 → d1 → a1 goes outside and back in
    with pytest.raises(GraphError, match="at least two"):
        check_group(g, ["d1"], "x")
    with pytest.raises(GraphError, match="a layer is named 'd0'"):
        check_group(g, ["d1", "a1"], "d0")
    with pytest.raises(GraphError, match="no node named 'zz'"):
        check_group(g, ["d1", "zz"], "x")
    g.nodes["d1"].meta["block"] = "b"
    with pytest.raises(GraphError, match="blocks do not nest"):
        check_group(g, ["d1", "a1"], "x")
    assert check_group(g, ["r1", "a1", "a1"], " y ") == ("y", ["a1", "r1"])


def test_ports_are_the_edges_crossing_the_boundary_and_the_summary_adds_up():
    g = residual_net()
    infos = infer(g)
    members = ["d1", "a1", "r1"]
    p = ports(g, members)
    assert p.inputs == ("r0",) and p.outputs == ("r1",)
    s = summary(g, infos, members)
    assert s.params == infos["d1"].params == 8 * 8 + 8
    assert s.macs == sum(infos[n].macs for n in members) and s.shapes == ((8,),) and s.errors == 0
    p2 = ports(g, ["d0", "r0", "d1"])                     # r0 is read outside (a1) and d1 too
    assert p2.inputs == ("in",) and p2.outputs == ("r0", "d1")


def test_unit_order_keeps_each_block_together_and_the_quotient_is_acyclic():
    g = residual_net(units=2)
    blocks = {"b1": ["d1", "a1", "r1"], "b2": ["d2", "a2", "r2"]}
    order = unit_order(g, blocks)
    assert order == ["in", "d0", "r0", ("b1", ["d1", "a1", "r1"]), ("b2", ["d2", "a2", "r2"]), "out"]
    for b, ms in blocks.items():
        for n in ms:
            g.nodes[n].meta["block"] = b
        g.blocks[b] = {"folded": True}
    q = Quotient.folded(g)
    assert q.topo_order() == ["in", "d0", "r0", "b1", "b2", "out"]
    assert q.inputs_index()["b2"] == ["b1"]


def test_repeated_residual_units_are_found_and_folded():
    g = residual_net(units=3)
    infos = infer(g)
    assert repeated(g, infos) == [("block1", ["d1", "a1", "r1"]), ("block2", ["d2", "a2", "r2"]),
                                  ("block3", ["d3", "a3", "r3"])]
    assert fold_repeated(g, infos) == ["block1", "block2", "block3"]
    assert g.blocks["block2"] == {"folded": True} and g.members("block3") == ["d3", "a3", "r3"]
    assert fold_repeated(g, infos) == []                  # a graph that has blocks is left alone


def test_a_repeating_pattern_of_two_units_is_one_layer():
    """Attention-like unit (Dense + Add + LayerNorm) then feed-forward unit, twice: two 'layers' of both."""
    g = Graph()
    prev = g.chain(("in", "Input", {"shape": [4, 8]}), ("emb", "Dense", {"units": 8}))
    for k in (1, 2):
        g.chain((f"att{k}", "Dense", {"units": 8}), after=prev)
        g.add_node("Add", f"add{k}")
        g.connect(prev, f"add{k}")
        g.connect(f"att{k}", f"add{k}")
        n = g.chain((f"ln{k}", "LayerNorm", {}), after=f"add{k}")
        g.chain((f"ff{k}", "Dense", {"units": 16}), (f"relu{k}", "ReLU", {}), (f"ffo{k}", "Dense", {"units": 8}),
                after=n)
        g.add_node("Add", f"addf{k}")
        g.connect(n, f"addf{k}")
        g.connect(f"ffo{k}", f"addf{k}")
        prev = g.chain((f"lnf{k}", "LayerNorm", {}), after=f"addf{k}")
    g.chain(("pool", "TimePool", {}), ("out", "Dense", {"units": 2}), after=prev)
    found = repeated(g, infer(g))
    assert [b for b, _ in found] == ["layer1", "layer2"]
    assert found[0][1] == ["att1", "add1", "ln1", "ff1", "relu1", "ffo1", "addf1", "lnf1"]


def test_a_chain_without_branches_has_no_repeated_blocks():
    g = Graph()
    g.chain(("in", "Input", {"shape": [4]}), ("a", "Dense", {"units": 4}), ("b", "ReLU", {}),
            ("c", "Dense", {"units": 4}), ("d", "ReLU", {}))
    assert repeated(g, infer(g)) == []


def test_an_imported_resnet18_offers_its_eight_basic_blocks_folded(tmp_path):
    torch = pytest.importorskip("torch")
    from engine.onnx_import import import_project
    from test_onnx_import import resnet18
    net = resnet18(torch, width=8).eval()
    f = tmp_path / "r18.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(f), dynamo=False, input_names=["x"], opset_version=17)
    g = import_project(f)[0].graph
    names = fold_repeated(g, infer(g))
    assert names == [f"block{k}" for k in range(1, 9)]
    adds = [n for n, v in g.nodes.items() if v.type == "Add"]
    assert sorted(g.nodes[a].meta["block"] for a in adds) == names          # one residual Add in each
    downs = [b for b in names if sum(g.nodes[n].type == "Conv2D" for n in g.members(b)) == 3]
    assert downs == ["block3", "block5", "block7"]                          # the stages' first blocks downsample
    assert all(len(ports(g, g.members(b)).inputs) == 1 == len(ports(g, g.members(b)).outputs) for b in names)
