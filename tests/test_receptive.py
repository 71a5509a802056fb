"""Receptive field and effective stride on every positional rank (engine/receptive.py): hand-computed values for
1-D (sequence and signal layouts, dilation), 2-D, 3-D, transposed convolution and upsampling, the tooltip's formula
with the node's numbers, and the field found by perturbing each input position of the engine's own forward."""
from fractions import Fraction
from math import gcd

import numpy as np
import pytest

from engine import Graph
from engine.layers import create
from engine.model import Model
from engine.receptive import explain
from engine.shapes import infer, table


def net(*nodes):
    g = Graph()
    g.chain(*nodes)
    return g


def tip(g, infos, n):
    layer = create(g.nodes[n].type, n, g.nodes[n].config)
    return explain(infos[n], layer, layer.kernel_stride(), [infos[s] for s in g.inputs_of(n)])


# ---- hand-computed ----
def test_1d_sequence_with_dilation_pool_and_dense():
    g = net(("x", "Input", {"shape": [64, 4]}),
            ("c", "Conv1D", {"filters": 8, "kernel_size": [3], "dilation": [4]}),         # E = 4·2 + 1 = 9
            ("d", "Dense", {"units": 6}),                                                   # per step: unchanged
            ("p", "MaxPool1D", {"kernel_size": [2], "stride": [2]}),                        # 9 + 1·1 = 10, j = 2
            ("c2", "Conv1D", {"filters": 4, "kernel_size": [5], "stride": [3]}),            # 10 + 4·2 = 18, j = 6
            ("r", "GRU", {"units": 3, "return_sequences": True}))                           # mixes every step
    i = infer(g)
    assert [i[n].field for n in "xcdp"] + [i["c2"].field] == [(1,), (9,), (9,), (10,), (18,)]
    assert [i[n].stride for n in "xcdp"] + [i["c2"].stride] == [(1,), (1,), (1,), (2,), (6,)]
    assert i["r"].field is None and "receptive_field" not in i["r"].to_dict()
    assert tip(g, i, "c")["field"] == ("r = r_in + (K − 1)·j_in = 1 + (9 − 1)·1 = 9 (length); "
                                       "K = d·(K − 1) + 1 = 4·(3 − 1) + 1 = 9")
    assert tip(g, i, "c2")["stride"] == "j = j_in·S = 2·3 = 6 (length)"
    head, rows = table(i)
    assert head[-2:] == ["receptive field", "eff. stride"] and rows[4][-2:] == ["18", "6"]


def test_1d_signal_layout_and_a_dense_on_its_positions_ends_the_field():
    g = net(("x", "Input", {"shape": [2, 50]}),
            ("c", "Conv1D", {"layout": "signal", "filters": 3, "kernel_size": [7], "stride": [2]}),
            ("p", "AveragePool1D", {"layout": "signal", "kernel_size": [3], "stride": [3]}),
            ("d", "Dense", {"units": 4}))                      # acts on L, the positions of (C, L): no field
    i = infer(g)
    assert (i["c"].field, i["c"].stride, i["p"].field, i["p"].stride) == ((7,), (2,), (11,), (6,))
    assert i["d"].field is None


def test_3d_conv_and_pool():
    g = net(("x", "Input", {"shape": [1, 8, 12, 12]}),
            ("c", "Conv3D", {"filters": 2, "kernel_size": [3, 5, 5], "stride": [1, 2, 2]}),
            ("p", "MaxPool3D", {"kernel_size": [2], "stride": [2]}))
    i = infer(g)
    assert (i["c"].field, i["c"].stride) == ((3, 5, 5), (1, 2, 2))
    assert (i["p"].field, i["p"].stride) == ((4, 7, 7), (2, 4, 4))
    assert tip(g, i, "p")["field"] == ("r = r_in + (K − 1)·j_in = 3 + (2 − 1)·1 = 4 (depth), "
                                       "5 + (2 − 1)·2 = 7 (height), 5 + (2 − 1)·2 = 7 (width)")
    assert table(i)[1][2][-2:] == ["4×7×7", "2×4×4"]


def test_upsampling_and_transposed_convolution_divide_the_stride():
    g = net(("x", "Input", {"shape": [1, 10, 10]}),
            ("c", "Conv2D", {"filters": 2, "kernel_size": [3], "stride": [2]}),            # 3, j = 2
            ("t", "ConvTranspose2D", {"filters": 2, "kernel_size": [4], "stride": [2]}),    # E = ⌊3/2⌋ + 1 = 2
            ("u", "Upsample2D", {"scale": [2], "mode": "bilinear"}),                        # E = 2, j = 1/2
            ("c2", "Conv2D", {"filters": 1, "kernel_size": [3]}))                           # 6 + ⌈2·(1/2)⌉ = 7
    i = infer(g)
    assert (i["t"].field, i["t"].stride) == ((5, 5), (1, 1))                              # 3 + (2 − 1)·2
    assert (i["u"].field, i["u"].stride) == ((6, 6), (Fraction(1, 2),) * 2)
    assert i["c2"].field == (7, 7) and i["c2"].to_dict()["effective_stride"] == [0.5, 0.5]
    assert tip(g, i, "t")["field"] == ("r = r_in + (K − 1)·j_in = 3 + (2 − 1)·2 = 5 (height), 3 + (2 − 1)·2 = 5 "
                                       "(width); K = ⌊(K − 1)·c/S⌋·d/c + 1 = ⌊(4 − 1)·1/2⌋·1/1 + 1 = 2, c = gcd(d, S)")
    assert tip(g, i, "u")["stride"] == "j = j_in/S = 1/2 = 1/2 (height), 1/2 = 1/2 (width)"
    assert tip(g, i, "c2")["field"].startswith("r = r_in + ⌈(K − 1)·j_in⌉ (at most) = 6 + ⌈(3 − 1)·(1/2)⌉ = 7 (height)")
    assert table(i)[1][4][-2:] == ["7×7", "1/2×1/2"]


def test_transposed_extent_counts_only_taps_on_whole_input_positions():
    """E = ⌊(K − 1)·c/S⌋·d/c + 1, c = gcd(d, S), against counting the taps k with o − d·k a multiple of S."""
    for kk in range(1, 6):
        for s in range(1, 5):
            for d in range(1, 4):
                want = max(max(ks) - min(ks) for ks in ([k * d for k in range(kk) if (o - d * k) % s == 0]
                                                         for o in range(s * d)) if ks) // s + 1
                layer = create("ConvTranspose2D", "t", {"kernel_size": [kk], "stride": [s], "dilation": [d]})
                assert layer.kernel_stride()[0] == (want, want), (kk, s, d, gcd(d, s))


def test_position_layers_keep_the_field_and_self_attention_ends_it():
    g = net(("x", "Input", {"shape": [32, 4]}),
            ("c", "Conv1D", {"filters": 4, "kernel_size": [3]}),                           # 3
            ("pe", "PositionalEncoding", {}), ("pm", "PositionEmbedding", {"max_len": 40}),  # step t reads step t
            ("ro", "RotaryEmbedding", {"heads": 2}),
            ("p", "MaxPool1D", {"kernel_size": [2], "stride": [2]}),                         # 3 + 1·1 = 4, j = 2
            ("a", "MultiHeadSelfAttention", {"heads": 2}))                                   # mixes every step
    i = infer(g)
    assert [i[n].field for n in ("c", "pe", "pm", "ro", "p")] == [(3,), (3,), (3,), (3,), (4,)]
    assert i["p"].stride == (2,) and i["a"].field is None
    assert tip(g, i, "ro") == {"field": "unchanged: field = field of the input = 3", "stride": "unchanged: stride = 1"}


def test_sequence_models_without_windows_show_no_field_columns():
    g = net(("x", "Input", {"shape": [20, 3]}), ("d", "Dense", {"units": 4}), ("r", "LSTM", {"units": 2}))
    assert "receptive field" not in table(infer(g))[0]


# ---- against the engine: the input positions whose change moves one output value ----
def measured_field(g, axes):
    """Per positional axis (indices into the sample shape): the widest run of input positions that move one
    output value, found by perturbing each input position on its own (one batch row each)."""
    model = Model(g, dtype=np.float64, seed=3)
    shape = model.input_shape
    pos = [shape[a] for a in axes]
    grid = list(np.ndindex(*pos))
    x0 = np.random.default_rng(0).normal(0, 1, shape)
    x = np.repeat(x0[None], len(grid) + 1, axis=0)
    for b, p in enumerate(grid, 1):
        idx = [slice(None)] * len(shape)
        for a, v in zip(axes, p):
            idx[a] = v
        x[(b, *idx)] += 100.0
    y = model.forward(x)
    moved = np.abs(y[1:] - y[0]) > 1e-9                                  # (inputs, *out shape)
    out_axes = [a for a in axes]
    moved = moved.any(axis=tuple(a + 1 for a in range(len(shape)) if a not in out_axes))   # (inputs, *out positions)
    widest = [0] * len(axes)
    for o in np.ndindex(*moved.shape[1:]):
        hit = np.array([grid[b] for b in np.flatnonzero(moved[(slice(None),) + o])])
        if len(hit):
            widest = [max(w, int(hit[:, d].max() - hit[:, d].min() + 1)) for d, w in enumerate(widest)]
    return tuple(widest)


@pytest.mark.parametrize("nodes,axes,exact", [
    ((("x", "Input", {"shape": [1, 16, 16]}), ("u", "Upsample2D", {"scale": [2]}),
      ("c", "Conv2D", {"filters": 2, "kernel_size": [3], "dilation": [2]}),
      ("t", "ConvTranspose2D", {"filters": 2, "kernel_size": [3], "stride": [2]}),
      ("p", "AveragePool2D", {"kernel_size": [3], "stride": [2]})), (1, 2), False),
    ((("x", "Input", {"shape": [1, 16, 16]}), ("u", "Upsample2D", {"scale": [3], "mode": "bilinear"}),
      ("c", "Conv2D", {"filters": 2, "kernel_size": [4], "dilation": [2]})), (1, 2), True),
    ((("x", "Input", {"shape": [1, 11, 11]}), ("c", "Conv2D", {"filters": 2, "kernel_size": [3], "stride": [2]}),
      ("t", "ConvTranspose2D", {"filters": 2, "kernel_size": [4], "stride": [2]}),
      ("p", "MaxPool2D", {"kernel_size": [3], "stride": [2]})), (1, 2), True),
    ((("x", "Input", {"shape": [1, 12, 12]}), ("c", "Conv2D", {"filters": 2, "kernel_size": [3], "stride": [2]}),
      ("t", "ConvTranspose2D", {"filters": 2, "kernel_size": [2], "stride": [3], "dilation": [2]}),
      ("u", "Upsample2D", {"scale": [3], "mode": "bilinear"}), ("c2", "Conv2D", {"filters": 1, "kernel_size": [2]})),
     (1, 2), False),
    ((("x", "Input", {"shape": [40, 2]}), ("c", "Conv1D", {"filters": 3, "kernel_size": [3], "dilation": [3]}),
      ("d", "Dense", {"units": 2}), ("p", "MaxPool1D", {"kernel_size": [3], "stride": [2]}),
      ("c2", "Conv1D", {"filters": 2, "kernel_size": [2], "stride": [2]})), (0,), True),
    ((("x", "Input", {"shape": [1, 30]}), ("c", "Conv1D", {"layout": "signal", "filters": 2, "kernel_size": [4],
                                                              "stride": [3]}),
      ("p", "AveragePool1D", {"layout": "signal", "kernel_size": [2], "stride": [1]})), (1,), True),
    ((("x", "Input", {"shape": [1, 7, 9, 9]}), ("c", "Conv3D", {"filters": 2, "kernel_size": [2, 3, 3],
                                                                "dilation": [1, 2, 2]}),
      ("p", "MaxPool3D", {"kernel_size": [2], "stride": [2]})), (1, 2, 3), True),
    ((("x", "Input", {"shape": [24, 4]}), ("c", "Conv1D", {"filters": 4, "kernel_size": [3], "dilation": [2]}),
      ("pe", "PositionalEncoding", {}), ("pm", "PositionEmbedding", {"max_len": 30}),
      ("ro", "RotaryEmbedding", {"heads": 2, "rotary_dim": 2}),
      ("c2", "Conv1D", {"filters": 2, "kernel_size": [2], "stride": [2]})), (0,), True),
])
def test_the_field_is_what_the_forward_reads(nodes, axes, exact):
    """Exact with whole strides and for the first window after an upsampling; a bound after two fractional steps."""
    g = net(*nodes)
    got, want = infer(g)[nodes[-1][0]].field, measured_field(g, axes)
    assert got == want if exact else all(w <= f <= w + 1 for f, w in zip(got, want)), (got, want)
