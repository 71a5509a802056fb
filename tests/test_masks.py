"""Variable-length sequence masks flow through the graph: kept along the time axis, ANDed, ended by Flatten."""
import numpy as np
import pytest

from engine import Graph, ShapeError
from engine.model import Model


def seq_graph():
    """x (5, 3) → relu → drop ┐
       x          → tanh ────┴ add → flat → out (Dense 2)"""
    g = Graph()
    for name, t, c in [("x", "Input", {"shape": [5, 3]}), ("relu", "ReLU", {}), ("drop", "Dropout", {"rate": 0.5}),
                       ("tanh", "Tanh", {}), ("add", "Add", {}), ("flat", "Flatten", {}),
                       ("out", "Dense", {"units": 2})]:
        g.add_node(t, name, c)
    for a, b in [("x", "relu"), ("relu", "drop"), ("x", "tanh"), ("drop", "add"), ("tanh", "add"),
                 ("add", "flat"), ("flat", "out")]:
        g.connect(a, b)
    return g


def test_the_mask_follows_the_time_axis_and_ends_where_it_is_folded():
    m = Model(seq_graph(), dtype=np.float64, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 5, 3))
    lengths = np.array([5, 3, 1, 4])
    mask = np.arange(5)[None, :] < lengths[:, None]                 # (B, T)
    m.forward(x, training=True, mask=mask)
    for n in ("x", "relu", "drop", "tanh", "add"):
        assert np.array_equal(m.masks[n], mask), n
    assert m.layers["add"].in_masks[0] is m.masks["drop"] and len(m.layers["add"].in_masks) == 2
    assert m.masks["flat"] is None and m.masks["out"] is None and m.layers["out"].in_masks == [None]
    m.forward(x)                                                    # no mask: none anywhere
    assert all(v is None for v in m.masks.values())


def test_several_masked_inputs_are_anded():
    add = Model(seq_graph(), seed=0).layers["add"]
    a = np.array([[1, 1, 1, 0, 0]], bool)
    b = np.array([[1, 1, 0, 0, 1]], bool)
    assert add.compute_mask([a, b]).tolist() == [[True, True, False, False, False]]
    assert add.compute_mask([None, b]) is b


def test_a_mask_of_the_wrong_shape_names_the_input():
    m = Model(seq_graph(), seed=0)
    with pytest.raises(ShapeError, match=r"\(4, 5\).*Input 'x'"):
        m.forward(np.zeros((4, 5, 3)), mask=np.ones((4, 6), bool))
