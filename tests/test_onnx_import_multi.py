"""ONNX import of models with several inputs or outputs and of mask inputs (lengths, key padding): models built
and exported by torch.onnx.export (both exporters) in each test; predict equals onnxruntime on the original file
for every output (relative error 1e-4), and the re-exported model runs in onnxruntime with equal results."""
import numpy as np
import pytest

from engine.cli import main as cli
from engine.model import Model
from engine.onnx_import import ImportFailed, read

import onnxruntime as ort  # noqa: E402  (a test dependency)

EXPORTERS = [False, True]
IDS = ["torchscript-exporter", "dynamo-exporter"]


def close(got, want, rel=1e-4):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rel * max(1.0, np.abs(want).max())


def export(torch, net, args, names, f, dynamo, outputs=None):
    """net(*args) written to f with a symbolic batch axis on every input."""
    if dynamo:
        pytest.importorskip("onnxscript")
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)      # attention as MatMul/Softmax, not one fused kernel
    try:
        if dynamo:
            B = torch.export.Dim("batch")
            torch.onnx.export(net, args, str(f), dynamo=True, input_names=names, output_names=outputs,
                              dynamic_shapes=tuple({0: B} for _ in names), opset_version=18)
        else:
            torch.onnx.export(net, args, str(f), dynamo=False, input_names=names, output_names=outputs,
                              dynamic_axes={n: {0: "batch"} for n in names + (outputs or [])}, opset_version=17,
                              do_constant_folding=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def imported(path):
    g, w, _ = read(path)
    m = Model(g)
    m.set_weights({**m.weights(), **w})
    return m


def run(path_or_bytes, feeds):
    s = ort.InferenceSession(path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes),
                             providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    return s.run(None, {k: v for k, v in feeds.items() if k in names}), names


def reexported(m):
    from engine.onnx_export import to_onnx
    return to_onnx(m).SerializeToString()


# ---- several inputs, several outputs ----
def two_inputs(torch):
    nn = torch.nn

    class TwoIn(nn.Module):
        """Two encodings, concatenated and added."""

        def __init__(self):
            super().__init__()
            self.a, self.b, self.h, self.g = nn.Linear(6, 8), nn.Linear(4, 8), nn.Linear(16, 3), nn.Linear(8, 3)

        def forward(self, x, y):
            a, b = torch.relu(self.a(x)), torch.tanh(self.b(y))
            return self.h(torch.cat([a, b], -1)) + self.g(a + b)
    return TwoIn().eval()


def two_heads(torch):
    nn = torch.nn

    class TwoHead(nn.Module):
        """A shared trunk, a classification head (probabilities) and a regression head."""

        def __init__(self):
            super().__init__()
            self.t, self.c, self.r = nn.Linear(6, 16), nn.Linear(16, 4), nn.Linear(16, 1)

        def forward(self, x):
            h = torch.relu(self.t(x))
            return torch.softmax(self.c(h), -1), self.r(h)
    return TwoHead().eval()


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=IDS)
def test_two_inputs_import_as_two_inputs_and_predict_like_onnxruntime(dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = two_inputs(torch)
    f = tmp_path / "two_in.onnx"
    export(torch, net, (torch.randn(3, 6), torch.randn(3, 4)), ["x", "y"], f, dynamo)
    m = imported(f)
    assert m.inputs == ["x", "y"] and len(m.outputs) == 1
    assert [v.type for v in m.graph.nodes.values()].count("Concatenate") == 1
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 6)).astype(np.float32), rng.normal(size=(9, 4)).astype(np.float32)
    (want,), _ = run(f, {"x": x, "y": y})
    close(m.predict({"x": x, "y": y}), want)
    with torch.no_grad():
        close(m.predict({"x": x, "y": y}), net(torch.from_numpy(x), torch.from_numpy(y)).numpy())
    (again,), names = run(reexported(m), {"x": x, "y": y})
    assert names == ["x", "y"]
    close(again, want)


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=IDS)
def test_two_outputs_are_both_predicted_exported_and_only_the_first_trains(dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = two_heads(torch)
    f = tmp_path / "two_heads.onnx"
    export(torch, net, (torch.randn(3, 6),), ["x"], f, dynamo, outputs=["probs", "value"])
    m = imported(f)
    assert len(m.outputs) == 2 and m.graph.nodes[m.outputs[0]].type == "Softmax"
    assert m.infos[m.outputs[0]].shape == (4,) and m.infos[m.outputs[1]].shape == (1,)
    x = np.random.default_rng(2).normal(size=(11, 6)).astype(np.float32)
    want, _ = run(f, {"x": x})
    ys = m.predict_all(x)
    for o, w in zip(m.outputs, want):
        close(ys[o], w)
    close(m.predict(x), want[0])                                     # predict: the first output
    again, _ = run(reexported(m), {"x": x})
    assert len(again) == 2
    for a, w in zip(again, want):
        close(a, w)
    from engine.data import Dataset
    from engine.project import training_config
    from engine.trainer import Trainer
    head = m.outputs[1]                                              # the regression head: kept as imported
    before = {k: v.copy() for k, v in m.weights().items()}
    tr = Trainer(m, training_config({"loss": "cce", "epochs": 1, "batch_size": 8, "lr": 0.05}),
                 Dataset(np.random.default_rng(3).normal(size=(32, 6)).astype(np.float32),
                         np.random.default_rng(4).integers(0, 4, 32), "multiclass", "random"))
    assert tr.run()["status"] == "completed"
    after = m.weights()
    assert all(np.array_equal(after[k], before[k]) for k in before if k.startswith(head + "/"))
    trunk = [k for k in before if k.split("/")[0] not in (head, m.outputs[0]) and k.endswith("/W")]
    assert trunk and all(not np.array_equal(after[k], before[k]) for k in trunk)
    again, _ = run(reexported(m), {"x": x})                          # the trained model exports both outputs
    for a, o in zip(again, m.outputs):
        close(a, m.predict_all(x)[o])


def test_cli_predicts_several_inputs_and_outputs_from_and_to_npz(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    rng = np.random.default_rng(5)
    f = tmp_path / "two_in.onnx"
    export(torch, two_inputs(torch), (torch.randn(3, 6), torch.randn(3, 4)), ["x", "y"], f, False)
    x, y = rng.normal(size=(7, 6)).astype(np.float32), rng.normal(size=(7, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, y=y)
    assert cli(["import", str(f), "-o", str(tmp_path / "a.json")]) == 0
    assert cli(["predict", str(tmp_path / "a.json"), "--weights", str(tmp_path / "a.weights.safetensors"),
                "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "a.npy")]) == 0
    close(np.load(tmp_path / "a.npy"), run(f, {"x": x, "y": y})[0][0])
    g = tmp_path / "two_heads.onnx"
    export(torch, two_heads(torch), (torch.randn(3, 6),), ["x"], g, False, outputs=["probs", "value"])
    np.save(tmp_path / "x.npy", x)
    assert cli(["import", str(g), "-o", str(tmp_path / "b.json")]) == 0
    assert "2 outputs" in capsys.readouterr().out
    assert cli(["predict", str(tmp_path / "b.json"), "--weights", str(tmp_path / "b.weights.safetensors"),
                "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "b.npz")]) == 0
    got, (want, _) = np.load(tmp_path / "b.npz"), run(g, {"x": x})
    m = imported(g)
    for o, w in zip(m.outputs, want):
        close(got[o], w)
    assert cli(["predict", str(tmp_path / "a.json"), "--weights", str(tmp_path / "a.weights.safetensors"),
                "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "c.npy")]) != 0
    assert "holds a single .npy array" in capsys.readouterr().err


# ---- mask inputs: lengths and key padding ----
def padded_encoder(torch, takes):
    """nn.TransformerEncoder (batch_first, d_model 16, 2 heads) on (x, lengths) or (x, key_padding_mask), a linear
    head on every step."""
    nn = torch.nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.fc = nn.Linear(16, 3)

        def forward(self, x, m):
            pad = torch.arange(x.shape[1])[None, :] >= m[:, None] if takes == "lengths" else m
            return self.fc(self.enc(x, src_key_padding_mask=pad))
    return Encoder().eval()


@pytest.mark.parametrize("takes", ["lengths", "key_padding_mask"])
@pytest.mark.parametrize("dynamo", EXPORTERS, ids=IDS)
def test_key_padding_mask_inputs_become_the_inputs_mask(takes, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(4)
    net = padded_encoder(torch, takes)
    T = 7
    lengths = np.array([7, 4, 1, 5])
    valid = np.arange(T)[None, :] < lengths[:, None]                 # (B, T)
    m_in = lengths if takes == "lengths" else ~valid
    f = tmp_path / "enc.onnx"
    export(torch, net, (torch.randn(2, T, 16), torch.as_tensor(m_in[:2])), ["x", takes], f, dynamo)
    m = imported(f)
    nodes = m.graph.nodes
    assert m.inputs == ["x"] and [v.type for v in nodes.values()].count("MultiHeadSelfAttention") == 2
    assert nodes["x"].meta["onnx_masks"] == {takes: "lengths" if takes == "lengths" else "padding"}
    x = np.random.default_rng(6).normal(size=(4, T, 16)).astype(np.float32)
    (want,), _ = run(f, {"x": x, takes: m_in})
    got = m.predict(x, lengths=lengths)
    close(got[valid], want[valid])                                   # padded steps: ours 0, theirs anything
    with torch.no_grad():
        close(got[valid], net(torch.from_numpy(x), torch.as_tensor(m_in)).numpy()[valid])
    assert np.abs(m.predict(x)[valid] - want[valid]).max() > 1e-3     # the mask matters on this batch
    (again,), names = run(reexported(m), {"x": x, "lengths": lengths.astype(np.int32)})
    assert names == ["x", "lengths"]
    close(again[valid], want[valid])


def test_mask_used_outside_attention_is_reported_by_name(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class MaskedMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 2)

        def forward(self, x, lengths):
            keep = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).float()     # (B, T)
            return self.fc((x * keep[..., None]).sum(1))

    f = tmp_path / "mean.onnx"
    export(torch, MaskedMean().eval(), (torch.randn(2, 4, 5), torch.tensor([4, 2])), ["x", "lengths"], f, False)
    with pytest.raises(ImportFailed) as e:
        read(f, strict=True)
    assert any("mask input 'lengths'" in why for _, _, why in e.value.problems)


# ---- an encoder–decoder: cross-attention ----
def encoder_decoder(torch, masked):
    """nn.TransformerEncoder + nn.TransformerDecoder (causal self-attention, cross-attention to the encoder's
    output), d_model 16, 2 heads; masked: the source's lengths are its key padding (encoder and cross-attention)."""
    nn = torch.nn

    class EncDec(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True), 1,
                                             enable_nested_tensor=False)
            self.dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(16, 2, 32, 0.0, batch_first=True), 1)
            self.fc = nn.Linear(16, 5)

        def forward(self, src, tgt, src_lengths=None):
            pad = torch.arange(src.shape[1])[None, :] >= src_lengths[:, None] if masked else None
            mem = self.enc(src, src_key_padding_mask=pad)
            causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
            return self.fc(self.dec(tgt, mem, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=pad))
    return EncDec().eval()


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "source-lengths"])
@pytest.mark.parametrize("dynamo", EXPORTERS, ids=IDS)
def test_encoder_decoder_cross_attention_imports_as_cross_attention(masked, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(5)
    net = encoder_decoder(torch, masked)
    S, T = 6, 4
    names = ["src", "tgt"] + (["src_lengths"] if masked else [])
    f = tmp_path / "encdec.onnx"
    export(torch, net, (torch.randn(2, S, 16), torch.randn(2, T, 16)) + ((torch.tensor([6, 3]),) if masked else ()),
           names, f, dynamo)
    m = imported(f)
    types = [v.type for v in m.graph.nodes.values()]
    assert m.inputs == ["src", "tgt"] and types.count("CrossAttention") == 1
    assert types.count("MultiHeadSelfAttention") == 2
    cross = next(n for n in m.order if m.layers[n].type == "CrossAttention")
    assert m.layers[m.srcs[cross][1]].type == "LayerNorm"            # keys and values: the encoder's output
    ca = net.dec.layers[0].multihead_attn
    np.testing.assert_allclose(m.layers[cross].p["Wk"], ca.in_proj_weight.detach().numpy()[16:32], atol=1e-6)
    dec_att = [n for n in m.order if m.layers[n].type == "MultiHeadSelfAttention" and m.layers[n].config["causal"]]
    assert len(dec_att) == 1
    rng = np.random.default_rng(7)
    src, tgt, lengths = rng.normal(size=(3, S, 16)).astype(np.float32), rng.normal(size=(3, T, 16)).astype(
        np.float32), np.array([6, 2, 4])
    feeds = {"src": src, "tgt": tgt, "src_lengths": lengths}
    (want,), _ = run(f, feeds)
    got = m.predict({"src": src, "tgt": tgt}, lengths={"src": lengths} if masked else None)
    close(got, want)
    with torch.no_grad():
        close(got, net(*[torch.as_tensor(feeds[k]) for k in names]).numpy())
    full = np.full(3, S if not masked else 0, np.int32) + (lengths.astype(np.int32) if masked else 0)
    (again,), ins = run(reexported(m), {"src": src, "tgt": tgt, "lengths": full, "tgt_lengths": np.full(3, T, np.int32)})
    assert ins == ["src", "tgt", "lengths", "tgt_lengths"]          # each Input its own lengths
    close(again, want)


def test_encoder_decoder_cli_import_and_predict_with_lengths(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.manual_seed(8)
    f = tmp_path / "encdec.onnx"
    export(torch, encoder_decoder(torch, True), (torch.randn(2, 6, 16), torch.randn(2, 4, 16), torch.tensor([6, 3])),
           ["src", "tgt", "src_lengths"], f, False)
    assert cli(["import", str(f), "-o", str(tmp_path / "p.json")]) == 0
    assert "ONNX input 'src_lengths' (valid steps) is the mask of Input 'src'" in capsys.readouterr().out
    rng = np.random.default_rng(9)
    src, tgt, lengths = rng.normal(size=(5, 6, 16)).astype(np.float32), rng.normal(size=(5, 4, 16)).astype(
        np.float32), np.array([6, 1, 3, 5, 2])
    np.savez(tmp_path / "in.npz", src=src, tgt=tgt)
    np.savez(tmp_path / "lengths.npz", src=lengths)
    assert cli(["predict", str(tmp_path / "p.json"), "--weights", str(tmp_path / "p.weights.safetensors"),
                "--input", str(tmp_path / "in.npz"), "--lengths", str(tmp_path / "lengths.npz"),
                "--output", str(tmp_path / "y.npy")]) == 0
    close(np.load(tmp_path / "y.npy"), run(f, {"src": src, "tgt": tgt, "src_lengths": lengths})[0][0])


def test_window_opens_a_two_output_encoder_decoder(tmp_path):
    """gui/importer.load_onnx (what File ▸ Open runs in its thread) lays out and loads such a model."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("PySide6")
    from gui.importer import load_onnx
    nn = torch.nn
    torch.manual_seed(9)

    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.ed, self.value = encoder_decoder(torch, False), nn.Linear(16, 1)

        def forward(self, src, tgt):
            return self.ed(src, tgt), self.value(src).mean(1)

    f = tmp_path / "both.onnx"
    export(torch, Both().eval(), (torch.randn(2, 6, 16), torch.randn(2, 4, 16)), ["src", "tgt"], f, False,
           outputs=["tokens", "value"])
    project, model, _, kept = load_onnx(f, 900, 700, 0.7)
    assert not kept and model.inputs == ["src", "tgt"] and len(model.outputs) == 2
    assert all("x" in v.meta and "y" in v.meta for v in project.graph.nodes.values())
    rng = np.random.default_rng(10)
    src, tgt = rng.normal(size=(2, 6, 16)).astype(np.float32), rng.normal(size=(2, 4, 16)).astype(np.float32)
    want, _ = run(f, {"src": src, "tgt": tgt})
    ys = model.predict_all({"src": src, "tgt": tgt})
    for o, w in zip(model.outputs, want):
        close(ys[o], w)
