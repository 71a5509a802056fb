"""Shape inference: shapes, parameter counts, MACs and errors that say how to fix them."""

from engine import Graph, infer
from engine.layers import create


def net(*specs):
    g = Graph()
    prev = None
    for t, c in specs:
        n = g.add_node(t, config=c).name
        if prev:
            g.connect(prev, n)
        prev = n
    return g


def test_mlp_shapes_params_macs():
    g = net(("Input", {"shape": [64]}), ("Dense", {"units": 128}), ("ReLU", {}), ("Dense", {"units": 10}))
    info = infer(g)
    assert [i.shape for i in info.values()] == [(64,), (128,), (128,), (10,)]
    assert info["dense"].params == 64 * 128 + 128 and info["dense1"].params == 128 * 10 + 10
    assert info["dense"].macs == 64 * 128 and info["dense1"].macs == 1280


def test_dense_on_a_feature_map_says_insert_flatten():
    g = net(("Input", {"shape": [16, 7, 7]}), ("Dense", {"units": 10}))
    g.rename("dense", "fc1")
    i = infer(g)["fc1"]
    assert i.shape is None
    assert "Dense 'fc1' needs a 1-D input" in i.error and "(16, 7, 7)" in i.error and "Flatten" in i.error
    assert i.fix.action == "insert_before" and i.fix.type == "Flatten"


def test_errors_block_downstream_nodes_without_blaming_them():
    g = net(("Input", {"shape": [4, 4, 4]}), ("Dense", {"units": 3}), ("ReLU", {}))
    info = infer(g)
    assert info["relu"].error is None and info["relu"].blocked == "dense"


def test_bad_hyperparameter_is_a_node_error():
    g = net(("Input", {"shape": [3]}), ("Dense", {"units": 0}))
    assert "units must be ≥ 1" in infer(g)["dense"].error


def test_merge_errors_and_shapes():
    g = Graph()
    g.add_node("Input", "a", {"shape": [4]})
    g.add_node("Dense", "b", {"units": 3})
    g.add_node("Add", "add")
    g.add_node("Concatenate", "cat")
    g.connect("a", "b")
    for s in ("a", "b"):
        g.connect(s, "add")
        g.connect(s, "cat")
    info = infer(g)
    assert "does not broadcast" in info["add"].error and "(4,)" in info["add"].error and "(3,)" in info["add"].error
    assert info["cat"].shape == (7,)


def test_reshape_checks_the_value_count():
    assert create("Reshape", config={"shape": [2, -1]}).compute_output_shape([(6,)]) == (2, 3)
    g = net(("Input", {"shape": [6]}), ("Reshape", {"shape": [4, 2]}))
    assert "6 values" in infer(g)["reshape"].error


def test_sequence_dense_applies_to_last_axis():
    g = net(("Input", {"shape": [5, 8]}), ("Dense", {"units": 4}))
    i = infer(g)["dense"]
    assert i.shape == (5, 4) and i.params == 36 and i.macs == 5 * 8 * 4
