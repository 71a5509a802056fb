"""Structure search: a block (one entry, one exit) repeated k times in a trial's graph; the ranges' checks; a
search on moons that repeats a Dense+ReLU pair records trials of different sizes, also on a Pareto front."""
import json

import pytest

from engine import search, structure
from engine.cli import main as cli
from engine.errors import ConfigError
from engine.graph import GraphError
from engine.history import History
from engine.model import Model
from engine.project import Project
from engine.shapes import infer, totals
from resources import path

MOONS = str(path("examples", "moons-mlp.json"))
PAIR = ["hidden2", "relu2"]
KEY = structure.repeat_key(PAIR)


@pytest.fixture
def moons(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOARD_RUNS", str(tmp_path / "runs.sqlite"))
    p = Project.load(MOONS)
    p.search = {KEY: {"low": 1, "high": 3, "int": True, "repeat": PAIR}}
    p.save(tmp_path / "moons.json")
    return tmp_path / "moons.json"


def test_a_pair_repeated_adds_its_parameters_each_time():
    g = Project.load(MOONS).graph
    sizes = [totals(infer(structure.repeat(g, PAIR, k)))[0] for k in (1, 2, 3)]
    assert sizes[1] - sizes[0] == sizes[2] - sizes[1] == 16 * 16 + 16          # one more Dense 16→16 each time
    g3 = structure.repeat(g, PAIR, 3)
    assert g3.inputs_of("out") == ["relu2_r3"] and g3.inputs_of("hidden2_r2") == ["relu2"]
    assert g3.inputs_of("hidden2_r3") == ["relu2_r2"] and len(g.nodes) == 7       # the original is untouched
    assert g3.nodes["out"].meta["x"] > g3.nodes["relu2_r3"].meta["x"] > g3.nodes["relu2"].meta["x"]
    assert Model(g3).predict(__import__("numpy").zeros((3, 2), "float32")).shape == (3, 1)


def test_a_transformer_encoder_block_repeats_with_its_residuals():
    p = Project.load(str(path("examples", "reviews-transformer.json")))
    names = ["attention", "residual1", "norm1", "ff1", "relu", "ff2", "residual2", "norm2"]
    assert structure.block(p.graph, names)[:2] == ("positions", "norm2")
    g = structure.repeat(p.graph, names, 2)
    infos = infer(g)
    assert all(i.ok for i in infos.values()), [i.error for i in infos.values() if not i.ok]
    assert sorted(g.inputs_of("residual1_r2")) == ["attention_r2", "norm2"]         # the residual comes from block 1
    assert g.inputs_of("pool") == ["norm2_r2"]
    assert totals(infos)[0] > totals(infer(p.graph))[0]


@pytest.mark.parametrize("names, msg", [(["input", "hidden1"], "an Input cannot"),
                                        (["hidden1", "hidden2"], "exactly one layer outside"),
                                        (["hidden9"], "no node named 'hidden9'"), ([], "select the layers"),
                                        (["hidden2", "relu2", "dead"], "'dead' does not lead to 'relu2'")])
def test_blocks_that_cannot_repeat_are_one_line(names, msg):
    g = Project.load(MOONS).graph
    g.add_node("ReLU", "dead")
    g.connect("hidden2", "dead")                                         # a dead end inside the block
    with pytest.raises(GraphError, match=msg) as e:
        structure.block(g, names)
    assert "\n" not in str(e.value)


def test_ranges_are_checked_against_the_setting():
    p = Project.load(MOONS)
    for space, msg in [({"hidden1.units": {"choices": [16, 0]}}, "units must be ≥ 1"),
                       ({"training.optimizer": {"low": 1, "high": 2}}, "is a choice"),
                       ({KEY: {"low": 0, "high": 3, "repeat": PAIR}}, "1 ≤ low ≤ high"),
                       ({KEY: {"low": 1, "high": 3, "repeat": ["hidden2"]}}, "must list the block"),
                       ({"repeat:hidden1+hidden2": {"low": 1, "high": 2, "repeat": ["hidden1", "hidden2"]}},
                        "exactly one layer outside")]:
        with pytest.raises(ConfigError, match=msg):
            search.check_space(p, space)
    search.check_space(p, {KEY: {"low": 1, "high": 4, "int": True, "repeat": PAIR},
                           "training.optimizer": {"choices": ["adam", "sgd"]}})


def test_cli_search_repeats_the_block_and_records_each_trials_graph(moons, tmp_path, capsys):
    out = tmp_path / "best.json"
    assert cli(["search", str(moons), "--trials", "6", "--epochs", "2", "--pareto", "params", "--storage",
                str(tmp_path / "s.journal"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert rep["trials"] == 6 and rep["failed"] == 0
    h = History()
    runs = h.runs()
    assert len(runs) == 6
    sizes = {r["params"] for r in runs}
    assert len(sizes) >= 2 and sizes <= {337, 609, 881}                 # k = 1, 2, 3 copies of Dense(16)+ReLU
    for r in runs:                                                       # each run keeps the graph it trained
        names = {n["name"] for n in h.graph(r["id"])["nodes"]}
        k = 1 + sum(n.startswith("hidden2_r") for n in names)
        assert r["params"] == 337 + (k - 1) * 272
    front = rep["pareto"]
    assert front and all(t["values"][1] in sizes for t in front)
    assert all(not (b["values"][0] <= a["values"][0] and b["values"][1] <= a["values"][1] and b != a)
               for a in front for b in front)                            # non-dominated in (loss, params)


def test_node_names_with_dots_can_be_searched():
    p = Project.load(MOONS)
    p.graph.rename("hidden1", "layer1.0.fc")                             # as ONNX imports name nodes
    space = {"layer1.0.fc.units": {"choices": [8, 32]}}
    search.check_space(p, space)
    assert search.current(p, space) == {"layer1.0.fc.units": 16}
    assert search.apply(p, {"layer1.0.fc.units": 32}).graph.nodes["layer1.0.fc"].config["units"] == 32


def test_apply_writes_the_repeated_graph(moons, tmp_path):
    p = Project.load(moons)
    q = search.apply(p, {KEY: 2})
    q.save(tmp_path / "two.json")
    assert "hidden2_r2" in Project.load(tmp_path / "two.json").graph.nodes


def test_other_ranges_make_another_study():
    p = Project.load(MOONS)
    plain = search.study_name(p)
    p.search = {"hidden1.units": {"choices": [8, 16]}}
    a = search.study_name(p)
    p.search = {"hidden1.units": {"choices": [8, 32]}}
    assert len({plain, a, search.study_name(p)}) == 3 and a.startswith(plain)
