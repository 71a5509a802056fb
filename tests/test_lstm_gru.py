"""LSTM, GRU and bidirectional RNN against nn.LSTM / nn.GRU / nn.RNN on packed variable-length batches (float64,
forward and every gradient), padded steps inert, taps, formulas, ONNX on mixed lengths, and a model trains."""
import numpy as np
import pytest

from engine import Graph
from engine.layers import REGISTRY
from engine.layers.recurrent import reversal
from engine.model import Model
from gradcheck import build

LENGTHS = np.array([6, 2, 4, 1, 6])


def lengths_mask(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def torch_twin(layer, torch):
    """nn.RNN / nn.LSTM / nn.GRU (float64, batch_first) holding the layer's weights, and the initial-state leaves."""
    c, d = layer.config, layer.in_shapes[0][-1]
    cls = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[layer.type]
    kw = {"nonlinearity": c["activation"]} if layer.type == "RNN" else {}
    net = cls(d, c["units"], batch_first=True, bidirectional=c["bidirectional"], **kw).double()
    names = ({"U": "weight_ih", "W": "weight_hh", "b": "bias_ih"} if layer.type == "RNN" else
             {k: v for k, v in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh"))})
    with torch.no_grad():
        for sfx, tsfx in zip(layer.suffixes, ("", "_reverse")):
            for ours, theirs in names.items():
                getattr(net, f"{theirs}_l0{tsfx}").copy_(torch.tensor(layer.p[ours + sfx]))
            if layer.type == "RNN":
                getattr(net, f"bias_hh_l0{tsfx}").zero_()
    states = {s + sfx: torch.tensor(layer.p[s + sfx] if s + sfx in layer.p else np.zeros(c["units"]),
                                    requires_grad=True) for s in layer.states for sfx in layer.suffixes}
    return net, names, states


def run_torch(layer, x, lengths, torch):
    """(output as our layer returns it, net, names, state leaves, x leaf) on a packed batch; direction reverse: the
    forward net on each sequence's valid steps flipped (PyTorch has no reverse-only layer), its steps flipped back."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    net, names, states = torch_twin(layer, torch)
    b, t, _ = x.shape
    tx = torch.tensor(x, requires_grad=True)
    rev = layer.config.get("direction") == "reverse"
    flip = torch.tensor(reversal(lengths_mask(lengths, t)).T)                # (B, T)
    flipped = lambda v: v.gather(1, flip[..., None].expand(v.shape)) if rev else v
    init = tuple(torch.stack([states[s + sfx] for sfx in layer.suffixes])[:, None].expand(-1, b, -1).contiguous()
                 for s in layer.states)                                        # (dirs, B, H) each
    packed = pack_padded_sequence(flipped(tx), torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, hn = net(packed, init if len(init) > 1 else init[0])
    if layer.config["return_sequences"]:
        y = flipped(pad_packed_sequence(out, batch_first=True, total_length=t)[0])   # (B, T, dirs·H)
    else:
        hn = hn[0] if isinstance(hn, tuple) else hn                           # (dirs, B, H)
        y = hn.transpose(0, 1).reshape(b, -1)
    return y, net, names, states, tx


CONFIGS = [(t, {"units": 4, "return_sequences": seqs, "learn_h0": True, "bidirectional": bi})
           for t in ("LSTM", "GRU", "RNN") for seqs in (False, True) for bi in (False, True)]
CONFIGS += [("RNN", {"units": 3, "activation": "relu", "return_sequences": True, "bidirectional": True}),
            ("LSTM", {"units": 3})]
CONFIGS += [(t, {"units": 3, "return_sequences": seqs, "learn_h0": True, "direction": "reverse"})
            for t in ("LSTM", "GRU", "RNN") for seqs in (False, True)]


@pytest.mark.parametrize("type,config", CONFIGS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CONFIGS)])
def test_matches_torch_with_packed_variable_lengths(type, config):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    layer = build(type, config, [(6, 3)])
    x = rng.normal(0, 1, (5, 6, 3))
    layer.in_masks = [lengths_mask(LENGTHS, 6)]
    y = layer.forward(x, training=True)
    ty, net, names, states, tx = run_torch(layer, x, LENGTHS, torch)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    u = rng.normal(0, 1, y.shape)
    (dx,) = layer.backward(u)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for sfx, tsfx in zip(layer.suffixes, ("", "_reverse")):
        for ours, theirs in names.items():
            np.testing.assert_allclose(layer.g[ours + sfx], getattr(net, f"{theirs}_l0{tsfx}").grad.numpy(),
                                       rtol=1e-10, atol=1e-12, err_msg=ours + sfx)
        if type == "RNN":                                                  # b = b_ih + b_hh: the same gradient
            np.testing.assert_allclose(layer.g["b" + sfx], getattr(net, f"bias_hh_l0{tsfx}").grad.numpy(),
                                       rtol=1e-10, atol=1e-12)
    for k, leaf in states.items():
        if k in layer.g:
            np.testing.assert_allclose(layer.g[k], leaf.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    assert set(layer.g) == set(layer.p)


@pytest.mark.parametrize("type", ["LSTM", "GRU", "RNN"])
def test_batch_chunks_on_two_threads_match_torch_and_one_thread(type):
    """A batch of 40 runs as independent slices on the granted threads; one thread and two give the same bits."""
    torch = pytest.importorskip("torch")
    from engine.parallel import use
    rng = np.random.default_rng(8)
    cfg = {"units": 3, "return_sequences": True, "bidirectional": True, "learn_h0": True}
    lengths = rng.integers(1, 7, 40)
    x, u = rng.normal(0, 1, (40, 6, 2)), rng.normal(0, 1, (40, 6, 6))
    out = []
    for n in (1, 2):
        layer = build(type, cfg, [(6, 2)])
        assert len(layer.parts(40)) > 1
        layer.in_masks = [lengths_mask(lengths, 6)]
        with use(n):
            y = layer.forward(x, training=True)
            (dx,) = layer.backward(u)
        out.append((y, dx, {k: v.copy() for k, v in layer.g.items()}))
    assert all(np.array_equal(a, b) for a, b in zip(out[0][:2], out[1][:2]))
    assert all(np.array_equal(out[0][2][k], out[1][2][k]) for k in out[0][2])
    ty, net, names, states, tx = run_torch(layer, x, lengths, torch)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for ours, theirs in names.items():
        np.testing.assert_allclose(layer.g[ours + "_rev"], getattr(net, f"{theirs}_l0_reverse").grad.numpy(),
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.g["h0"], states["h0"].grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("type", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bi,direction", [(False, "forward"), (True, "forward"), (False, "reverse")])
def test_padded_steps_change_nothing(type, bi, direction):
    """Values at padded steps reach no output, state or gradient; the same sequence alone gives the same result."""
    rng = np.random.default_rng(1)
    cfg = {"units": 3, "return_sequences": True, "bidirectional": bi, "learn_h0": True, "direction": direction}
    layer = build(type, cfg, [(6, 2)])
    x = rng.normal(0, 1, (5, 6, 2))
    m = lengths_mask(LENGTHS, 6)
    layer.in_masks = [m]
    y = layer.forward(x, training=True)
    u = rng.normal(0, 1, y.shape) * m[:, :, None]
    (dx,) = layer.backward(u)
    g = {k: v.copy() for k, v in layer.g.items()}
    x2 = x.copy()
    x2[~m] = 1e3
    np.testing.assert_array_equal(layer.forward(x2, training=True), y)
    assert np.all(y[~m] == 0) and np.all(dx[~m] == 0)
    (dx2,) = layer.backward(u)
    np.testing.assert_array_equal(dx2, dx)
    for k, v in layer.g.items():
        np.testing.assert_array_equal(v, g[k])
    for i, n in enumerate(LENGTHS):                                        # each sequence alone, unpadded
        alone = build(type, cfg, [(int(n), 2)])
        alone.p = layer.p
        alone.in_masks = [None]
        np.testing.assert_allclose(alone.forward(x[i:i + 1, :n]), y[i:i + 1, :n], rtol=1e-12, atol=1e-14)


def test_reversal_reads_each_sequence_backwards_over_its_valid_steps():
    m = lengths_mask([4, 2, 1], 5)
    perm = reversal(m)                                                     # (T, B)
    assert perm[:, 0].tolist() == [3, 2, 1, 0, 4] and perm[:, 1].tolist() == [1, 0, 2, 3, 4]
    assert perm[:, 2].tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(np.take_along_axis(perm, perm, axis=0), np.tile(np.arange(5)[:, None], (1, 3)))


@pytest.mark.parametrize("type,gates", [("LSTM", 4), ("GRU", 3)])
def test_gate_and_cell_taps(type, gates):
    """gates (B, T, n, dirs·H) in [0, 1] for the sigmoid gates, 0 at padded steps; LSTM's cell c_t gives h_t."""
    rng = np.random.default_rng(2)
    layer = build(type, {"units": 3, "return_sequences": True, "bidirectional": True}, [(6, 2)])
    m = lengths_mask(LENGTHS, 6)
    layer.in_masks = [m]
    y = layer.forward(rng.normal(0, 1, (5, 6, 2)))
    gt = layer.taps["gates"]
    assert gt.shape == (5, 6, gates, 6) and np.all(gt[~m] == 0)
    sig = gt[:, :, [0, 1, 3] if type == "LSTM" else [0, 1]]
    assert np.all((sig >= 0) & (sig <= 1)) and sig[m].min() > 0
    if type == "LSTM":
        c = layer.taps["cell"]
        assert c.shape == (5, 6, 6) and np.all(c[~m] == 0)
        np.testing.assert_allclose(y, gt[:, :, 3] * np.tanh(c), rtol=1e-12, atol=1e-15)      # h = o ⊙ tanh(c)
    layer.backward(rng.normal(0, 1, y.shape) * m[:, :, None])
    assert layer.taps["grad_hidden"].shape == (5, 6, 6) and np.all(layer.taps["grad_hidden"][~m] == 0)


def test_params_macs_and_formulas():
    from engine.shapes import infer
    g = Graph()
    g.chain(("x", "Input", {"shape": [50, 8]}), ("l", "LSTM", {"units": 64}), ("d", "Dense", {"units": 1}))
    info = infer(g)["l"]
    assert info.params == 4 * (64 * (8 + 64) + 2 * 64) and info.macs == 50 * 4 * 64 * (8 + 64)
    f = REGISTRY["LSTM"]("l", units=64).formulas([(50, 8)])
    assert f["params"] == "4·(H·(D+H) + 2H) = 4·(64·(8+64) + 2·64) = 18,944"
    assert f["macs"] == "T·4·H·(D+H) = 50·4·64·(8+64) = 921,600"
    gru = REGISTRY["GRU"]("g", units=16, bidirectional=True, return_sequences=True)
    f = gru.formulas([(10, 4)])
    assert f["params"] == f"2·(3·(H·(D+H) + 2H)) = 2·(3·(16·(4+16) + 2·16)) = {2 * 3 * (16 * 20 + 32):,}"
    assert f["shape"] == "(T, D) → (T, 2H) = (10, 32)" and gru.compute_output_shape([(10, 4)]) == (10, 32)
    rnn = REGISTRY["RNN"]("r", units=5, bidirectional=True, learn_h0=True)
    assert rnn.param_count([(7, 3)]) == 2 * (5 * 3 + 5 * 5 + 5 + 5) and rnn.compute_output_shape([(7, 3)]) == (10,)
    assert rnn.formulas([(7, 3)])["params"] == "2·(H·D + H·H + H + H) = 2·(5·3 + 5·5 + 5 + 5) = 100"


@pytest.mark.parametrize("type", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["bidirectional", "reverse"])
def test_onnx_runs_mixed_length_batches_in_onnxruntime(type, direction):
    """Two stacked layers (bidirectional or reverse sequences, then the final states), lengths 1…T in one batch."""
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx_export import to_onnx
    d = {"bidirectional": True} if direction == "bidirectional" else {"direction": "reverse"}
    g = Graph()
    g.chain(("x", "Input", {"shape": [9, 3]}),
            ("r1", type, {"units": 5, "return_sequences": True, "learn_h0": True, **d}),
            ("r2", type, {"units": 4, **d}), ("out", "Dense", {"units": 2}))
    m = Model(g, seed=0)
    rng = np.random.default_rng(0)
    m.set_weights({k: rng.normal(0, 0.6, v.shape) for k, v in m.weights().items()})
    lg = np.array([9, 1, 4, 7, 2, 9, 5], np.int32)
    x = rng.normal(0, 1, (7, 9, 3)).astype(np.float32)
    want = m.predict(x, lengths=lg)
    onx = to_onnx(m)
    assert type in {n.op_type for n in onx.graph.node}
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x, "lengths": lg})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(want, m.predict(x), atol=1e-3)                  # the lengths matter


def test_reverse_with_bidirectional_is_refused_in_one_line():
    from engine.errors import ShapeError
    layer = REGISTRY["GRU"]("g", units=3, bidirectional=True, direction="reverse")
    with pytest.raises(ShapeError, match="g.*direction reverse and bidirectional"):
        layer.compute_output_shape([(5, 2)])


def test_float32_training_matches_float64_and_learns():
    """An LSTM → GRU model in float32 follows float64, and a few Adam steps lower the loss of a masked task."""
    from engine.data import Dataset
    from engine.project import training_config
    from engine.trainer import Trainer
    g = Graph()
    g.chain(("x", "Input", {"shape": [8, 1]}), ("l", "LSTM", {"units": 8, "return_sequences": True}),
            ("g", "GRU", {"units": 6, "bidirectional": True}), ("out", "Dense", {"units": 1}))
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (64, 8, 1)).astype(np.float32)
    lengths = rng.integers(1, 9, 64)
    y = (x[..., 0] * lengths_mask(lengths, 8)).sum(1, keepdims=True).astype(np.float32)
    m = lengths_mask(lengths, 8)
    y64 = Model(g, dtype=np.float64, seed=3).forward(x, mask=m)
    y32 = Model(g, dtype=np.float32, seed=3).forward(x, mask=m)
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    model = Model(g, seed=3)
    tr = Trainer(model, training_config({"loss": "mse", "optimizer": "adam", "lr": 0.01, "batch_size": 64}),
                 Dataset(x, y, "regression", "sums", lengths=lengths))
    first = tr.train_step(x, y, mask=m)[0]
    for _ in range(30):
        last = tr.train_step(x, y, mask=m)[0]
    assert last < 0.7 * first


@pytest.mark.parametrize("type", ["LSTM", "GRU", "RNN"])
def test_a_non_sequence_input_offers_a_reshape(type):
    """An image (1, 28, 28) reads its rows as 28 steps; a vector (F,) as F steps of one feature; the fix applies."""
    from engine.errors import ShapeError
    from engine.shapes import infer
    for shape, seq in (([1, 28, 28], (28, 28)), ([10], (10, 1))):
        with pytest.raises(ShapeError) as e:
            REGISTRY[type]("r", units=4).compute_output_shape([tuple(shape)])
        fix = e.value.fix
        assert fix.type == "Reshape" and dict(fix.config) == {"shape": seq} and "Reshape to" in str(e.value)
        assert ("return_sequences" in str(e.value)) == (len(shape) == 1) and "\n" not in str(e.value)
        g = Graph()
        g.chain(("x", "Input", {"shape": shape}), ("rs", "Reshape", {"shape": list(seq)}), ("r", type, {"units": 4}))
        assert infer(g)["r"].shape == (4,)


@pytest.mark.parametrize("config", [{"return_sequences": True, "learn_h0": True}, {"bidirectional": True},
                                    {"direction": "reverse", "return_sequences": True}])
def test_gru_linear_before_reset_0_matches_its_torch_module_on_variable_lengths(config):
    """ONNX's GRU form (r ⊙ h before W_hn) against the exported GRUResetFirst module: outputs and every gradient."""
    torch = pytest.importorskip("torch")
    from engine.layers.recurrent_torch import FLIP_VALID, GRU_RESET_FIRST
    scope = {"torch": torch, "nn": torch.nn}
    exec(FLIP_VALID + GRU_RESET_FIRST, scope)
    rng = np.random.default_rng(3)
    layer = build("GRU", {"units": 3, "linear_before_reset": False, **config}, [(6, 2)])
    x, m = rng.normal(0, 1, (5, 6, 2)), lengths_mask(LENGTHS, 6)
    layer.in_masks = [m]
    y = layer.forward(x, training=True)
    u = rng.normal(0, 1, y.shape)
    (dx,) = layer.backward(u)
    em = layer.to_torch()
    net = eval(em.module, scope).double()
    with torch.no_grad():
        for ours, theirs in em.params.items():
            getattr(net, theirs).copy_(torch.tensor(layer.p[ours]))
    tx = torch.tensor(x, requires_grad=True)
    ty = net(tx, torch.tensor(m))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for ours, theirs in em.params.items():
        np.testing.assert_allclose(layer.g[ours], getattr(net, theirs).grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=ours)
    assert set(em.params) == set(layer.p)
    nn_gru = build("GRU", {"units": 3, **config}, [(6, 2)])                  # the PyTorch form differs
    nn_gru.p, nn_gru.in_masks = layer.p, [m]
    assert not np.allclose(nn_gru.forward(x), y, atol=1e-6)
