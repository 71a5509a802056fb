"""RNN, Embedding, TimePool: gradients with random lengths in a batch, PyTorch parity (nn.RNN with
pack_padded_sequence, every gradient), padded steps inert, stacking, taps, params/MACs formulas."""
import numpy as np
import pytest

from engine import Graph
from engine.layers import REGISTRY
from engine.model import Model
from gradcheck import build, numeric

SEQ = ("RNN", "Embedding", "TimePool")
CASES = [(t, c, s, (o or [{}])[0]) for t in SEQ for c, s, *o in REGISTRY[t].samples()]


def lengths_mask(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def inputs(shape, opts, rng, batch):
    if opts.get("ints"):
        x = rng.integers(0, opts["ints"], (batch,) + tuple(shape)).astype(np.float64)
        x[:, 0] = 0                                                        # padding ids occur
        return x
    return rng.normal(0, 1, (batch,) + tuple(shape))


@pytest.mark.parametrize("type,config,shapes,opts", CASES, ids=[f"{t}-{i}" for i, (t, *_) in enumerate(CASES)])
@pytest.mark.parametrize("masked", [False, True])
def test_gradients_with_random_lengths(type, config, shapes, opts, masked):
    """Float64 central differences of L = Σ y ⊙ u; padded steps get exactly zero gradient."""
    rng = np.random.default_rng(7)
    layer = build(type, config, shapes)
    batch, t = 4, shapes[0][0]
    x = inputs(shapes[0], opts, rng, batch)
    lg = np.array([t, 1] + list(rng.integers(1, t + 1, batch - 2)))
    mask = lengths_mask(lg, t) if masked else None
    layer.in_masks = [mask]
    y = layer.forward(x, training=True)
    u = rng.normal(0, 1, y.shape)
    (dx,) = layer.backward(u.copy())
    loss = lambda: float(np.sum(layer.forward(x, training=True) * u))
    if not opts.get("ints"):
        np.testing.assert_allclose(dx, numeric(loss, x), rtol=1e-5, atol=1e-6, err_msg=f"{type} dx")
        if masked:
            assert np.all(dx[~mask] == 0)
    for k in layer.g:
        np.testing.assert_allclose(layer.g[k], numeric(loss, layer.p[k]), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{type} {config}: d{k}")
    layer.backward(u.copy())                                               # backward twice: same result
    if masked and not opts.get("ints"):
        x2 = x.copy()
        x2[~mask] = 1e3                                                    # padded steps change nothing
        np.testing.assert_allclose(layer.forward(x2, training=True), y, atol=1e-12)


# ---- PyTorch parity ----
def torch_rnn(layer, x, lg, torch):
    """nn.RNN with our weights on a packed batch: (outputs (B, T, H) padded with 0, h_n (B, H), module, x, h0)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    p, (b, t, d) = layer.p, x.shape
    h = layer.config["units"]
    rnn = torch.nn.RNN(d, h, nonlinearity=layer.config["activation"], batch_first=True).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(p["U"]))
        rnn.weight_hh_l0.copy_(torch.tensor(p["W"]))
        rnn.bias_ih_l0.copy_(torch.tensor(p["b"]))
        rnn.bias_hh_l0.zero_()
    tx = torch.tensor(x, requires_grad=True)
    h0 = torch.tensor(p["h0"] if "h0" in p else np.zeros(h), requires_grad=True)
    packed = pack_padded_sequence(tx, torch.tensor(lg), batch_first=True, enforce_sorted=False)
    out, hn = rnn(packed, h0.expand(1, b, h).contiguous())
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
    return out, hn[0], rnn, tx, h0


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("seqs", [False, True])
def test_matches_torch_rnn_with_packed_variable_lengths(act, seqs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    cfg = {"units": 5, "activation": act, "return_sequences": seqs, "learn_h0": True}
    layer = build("RNN", cfg, [(6, 3)])
    x = rng.normal(0, 1, (4, 6, 3))
    lg = np.array([6, 2, 4, 1])
    layer.in_masks = [lengths_mask(lg, 6)]
    y = layer.forward(x, training=True)
    out, hn, rnn, tx, h0 = torch_rnn(layer, x, lg, torch)
    ty = out if seqs else hn
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    u = rng.normal(0, 1, y.shape)
    (dx,) = layer.backward(u)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["U"], rnn.weight_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["W"], rnn.weight_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["b"], rnn.bias_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["b"], rnn.bias_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.g["h0"], h0.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_grad_hidden_tap_is_the_total_gradient_through_time():
    """taps['grad_hidden'][b, t] = ∂L/∂h_t including every later step (torch loop with retain_grad)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    layer = build("RNN", {"units": 3, "return_sequences": True}, [(5, 2)])
    x = rng.normal(0, 1, (2, 5, 2))
    lg = np.array([5, 3])
    layer.in_masks = [lengths_mask(lg, 5)]
    y = layer.forward(x)
    u = rng.normal(0, 1, y.shape) * lengths_mask(lg, 5)[:, :, None]
    layer.backward(u)
    hidden, grad = layer.taps["hidden"], layer.taps["grad_hidden"]
    assert hidden.shape == grad.shape == (2, 5, 3) and np.all(grad[1, 3:] == 0) and np.all(hidden[1, 3:] == 0)
    U, W, b = (torch.tensor(layer.p[k], requires_grad=True) for k in ("U", "W", "b"))
    for i in range(2):
        hs, hp = [], torch.zeros(3, dtype=torch.float64)
        for t in range(lg[i]):
            hp = torch.tanh(W @ hp + U @ torch.tensor(x[i, t]) + b)
            hp.retain_grad()
            hs.append(hp)
        sum((h * torch.tensor(u[i, t])).sum() for t, h in enumerate(hs)).backward()
        np.testing.assert_allclose(hidden[i, :lg[i]], torch.stack(hs).detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(grad[i, :lg[i]], torch.stack([h.grad for h in hs]).numpy(), rtol=1e-10)


# ---- in a model ----
def stacked():
    g = Graph()
    g.chain(("x", "Input", {"shape": [7, 2]}), ("r1", "RNN", {"units": 4, "return_sequences": True}),
            ("r2", "RNN", {"units": 3}), ("out", "Dense", {"units": 1}))
    return g


def test_two_stacked_rnns_see_each_sequence_at_its_own_length():
    m = Model(stacked(), dtype=np.float64, seed=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 2))
    lg = np.array([7, 3, 5])
    y = m.forward(x, mask=lengths_mask(lg, 7))
    assert np.array_equal(m.masks["r1"], lengths_mask(lg, 7)) and m.masks["r2"] is None
    for i in range(3):                                                     # the same sequence, unpadded
        short = Model(Graph.from_dict({**stacked().to_dict()}), dtype=np.float64, seed=1)
        g = stacked()
        g.nodes["x"].config["shape"] = [int(lg[i]), 2]
        short = Model(g, dtype=np.float64, seed=1)
        short.set_weights(m.weights())
        np.testing.assert_allclose(short.forward(x[i:i + 1, :lg[i]]), y[i:i + 1], rtol=1e-12)


def test_embedding_padding_is_zero_and_untrained():
    layer = build("Embedding", {"vocab": 5, "dim": 2}, [(4,)])
    ids = np.array([[0, 3, 3, 1]], float)
    y = layer.forward(ids)
    assert np.all(y[0, 0] == 0) and np.array_equal(y[0, 1], layer.p["E"][3])
    layer.backward(np.ones_like(y))
    assert np.all(layer.g["E"][0] == 0) and np.all(layer.g["E"][3] == 2) and np.all(layer.g["E"][2] == 0)
    from engine.errors import ShapeError
    with pytest.raises(ShapeError, match="token ids must lie in 0…4"):
        layer.forward(np.array([[0, 5, 1, 1]], float))


def test_time_pool_uses_valid_steps_only():
    x = np.arange(12, dtype=float).reshape(1, 4, 3)
    for mode, want in (("mean", x[0, :2].mean(0)), ("max", x[0, 1]), ("last", x[0, 1])):
        layer = build("TimePool", {"mode": mode}, [(4, 3)])
        layer.in_masks = [lengths_mask([2], 4)]
        np.testing.assert_allclose(layer.forward(x)[0], want)


def test_params_macs_and_formulas():
    from engine.shapes import infer
    g = Graph()
    g.chain(("x", "Input", {"shape": [50, 8]}), ("r", "RNN", {"units": 64}), ("out", "Dense", {"units": 1}))
    info = infer(g)["r"]
    assert info.params == 64 * 8 + 64 * 64 + 64 and info.macs == 50 * (64 * 8 + 64 * 64)
    f = REGISTRY["RNN"]("r", units=64).formulas([(50, 8)])
    assert f["params"] == "H·D + H·H + H = 64·8 + 64·64 + 64 = 4,672"
    assert f["macs"] == "T·(H·D + H·H) = 50·(64·8 + 64·64) = 230,400"
    assert REGISTRY["Embedding"]("e", vocab=100, dim=8).formulas([(20,)])["params"] == "V·d = 100·8 = 800"


def test_float32_kernel_matches_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 2))
    lg = lengths_mask([7, 2, 5], 7)
    y64 = Model(stacked(), dtype=np.float64, seed=2).forward(x, mask=lg)
    y32 = Model(stacked(), dtype=np.float32, seed=2).forward(x, mask=lg)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)


# ---- ONNX ----
def seq_model(kind, seed=0):
    g = Graph()
    if kind == "text":
        g.chain(("x", "Input", {"shape": [9]}), ("emb", "Embedding", {"vocab": 12, "dim": 4}),
                ("r1", "RNN", {"units": 5, "return_sequences": True, "learn_h0": True}),
                ("r2", "RNN", {"units": 4, "activation": "relu", "return_sequences": True}),
                ("pool", "TimePool", {"mode": "mean"}), ("logits", "Dense", {"units": 3}), ("soft", "Softmax", {}))
    elif kind in ("max", "last"):
        g.chain(("x", "Input", {"shape": [9, 3]}), ("r1", "RNN", {"units": 5, "return_sequences": True}),
                ("pool", "TimePool", {"mode": kind}), ("out", "Dense", {"units": 2}))
    else:
        g.chain(("x", "Input", {"shape": [9, 3]}), ("r1", "RNN", {"units": 6}), ("out", "Dense", {"units": 1}))
    m = Model(g, seed=seed)
    rng = np.random.default_rng(seed)
    m.set_weights({k: rng.normal(0, 0.6, v.shape) for k, v in m.weights().items()})
    return m


@pytest.mark.parametrize("kind", ["text", "max", "last", "regression"])
def test_onnx_runs_variable_length_batches_in_onnxruntime(kind):
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx_export import to_onnx
    m = seq_model(kind)
    rng = np.random.default_rng(1)
    lg = np.array([9, 1, 4, 7, 2], np.int32)
    if kind == "text":
        x = rng.integers(1, 12, (5, 9)).astype(np.float32) * lengths_mask(lg, 9)
    else:
        x = rng.normal(0, 1, (5, 9, 3)).astype(np.float32)
    if kind == "regression":                     # data statistics kept with the weights: raw units in and out
        m.data = {"x_mean": np.float32([1, -2, 3]), "x_std": np.float32([2, 0.5, 4]),
                  "y_mean": np.float32([1e4]), "y_std": np.float32([500.0])}
        x = x * 3 + 1
    want = m.predict(x, lengths=lg)
    onx = to_onnx(m)
    ops = {n.op_type for n in onx.graph.node}
    assert "RNN" in ops and ("Gather" in ops) == (kind == "text")
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x, "lengths": lg})[0]
    assert sess.get_outputs()[0].name == m.output
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * (1 if kind != "regression" else 500))
    assert np.ptp(want) > 0.1


def test_weight_files_keep_data_statistics_and_vocab(tmp_path):
    from engine.weights import load_into, save
    m = seq_model("text")
    m.data = {"y_mean": np.float32([3.0]), "y_std": np.float32([2.0])}
    m.meta = {"vocab": ["<pad>", "<unk>", "good"], "text": {"level": "word", "max_len": 9, "vocab": 12}}
    for ext in ("npz", "safetensors"):
        save(tmp_path / f"w.{ext}", m)
        m2 = seq_model("text", seed=5)
        load_into(m2, tmp_path / f"w.{ext}")
        assert m2.meta == m.meta and np.array_equal(m2.data["y_std"], m.data["y_std"])
        x = np.random.default_rng(0).integers(0, 12, (3, 9)).astype(np.float32)
        np.testing.assert_array_equal(m2.predict(x, lengths=[9, 2, 5]), m.predict(x, lengths=[9, 2, 5]))
