"""Sequence views fed arrays of the documented tap shapes: hidden states, gradient through time, attention."""
import numpy as np
import pytest

import pyqtgraph as pg  # noqa: E402

from engine.graph import Graph  # noqa: E402
from engine.model import Model  # noqa: E402
from gui.training.job import Probe, make_probe  # noqa: E402
from gui.training.views import VIEWS, AttentionView, GradFlowView, HiddenView  # noqa: E402
from gui.training.views.gradflow import probe_grads  # noqa: E402


def softmax_rows(z, n):
    """(heads, T, T) softmax over the first n keys of each row, padded key columns 0, padded rows 0."""
    a = np.zeros_like(z)
    e = np.exp(z[:, :n, :n] - z[:, :n, :n].max(axis=-1, keepdims=True))
    a[:, :n, :n] = e / e.sum(axis=-1, keepdims=True)
    return a


def test_views_are_registered_and_apply_only_to_their_layers():
    assert {HiddenView, GradFlowView, AttentionView} <= set(VIEWS)
    assert len({c.key for c in VIEWS if c.key}) == len([c for c in VIEWS if c.key])        # keys are unique
    plain = {"types": {"input": "Input", "fc": "Dense"}}
    rnn = {"types": {"input": "Input", "rnn": "RNN"}}
    att = {"types": {"input": "Input", "mhsa": "MultiHeadSelfAttention"}}
    assert not HiddenView.applies(None, plain) and HiddenView.applies(None, rnn)
    assert GradFlowView.applies(None, rnn) and not GradFlowView.applies(None, att)
    assert AttentionView.applies(None, att) and not AttentionView.applies(None, rnn)
    assert AttentionView.live and not getattr(HiddenView, "live", False)


def test_hidden_view_draws_valid_steps_with_tokens_on_the_axis(qtbot):
    v = HiddenView()
    qtbot.addWidget(v)
    v.begin({"layers": ["input", "rnn1", "rnn2"], "types": {"input": "Input", "rnn1": "RNN", "rnn2": "RNN"},
             "n_val": 50})
    assert [v.layer.itemText(i) for i in range(v.layer.count())] == ["rnn1", "rnn2"]
    assert v.options["hidden_layer"] == "rnn1" and v.sample.maximum() == 49
    h = np.tanh(np.random.default_rng(0).normal(size=(7, 5))).astype(np.float32)          # (T_i, H)
    v.snapshot(0, {"layer": "rnn1", "sample": 3, "h": h, "length": 7, "tokens": list("abcdefg"),
                   "activation": "tanh", "y": 1})
    v.refresh()
    img = v.image.image
    assert img.shape == (5, 7) and np.array_equal(img, h.T)          # rows: units, columns: steps
    ticks = v.plot.getAxis("bottom")._tickLevels[0]
    assert [t[1] for t in ticks] == list("abcdefg")
    assert "7 valid steps × 5 units" in v.note.text()


def test_gradflow_view_plots_the_mean_norm_on_a_log_axis(qtbot):
    v = GradFlowView()
    qtbot.addWidget(v)
    v.begin({"layers": ["input", "rnn"], "types": {"input": "Input", "rnn": "RNN"}})
    mean = 0.5 ** np.arange(10)[::-1]                                   # vanishing towards t = 1
    v.snapshot(0, {"layer": "rnn", "norms": mean, "count": np.full(10, 4), "per_seq": np.tile(mean, (4, 1)),
                   "sequences": 4})
    v.refresh()
    x, y = v.curve.getData()
    assert np.array_equal(x, np.arange(1, 11))
    assert v.plot.getPlotItem().ctrl.logYCheck.isChecked()
    assert np.allclose(10 ** np.asarray(y) if np.max(y) <= 0 else y, mean)   # pyqtgraph stores log10 in log mode
    assert "0.00195" in v.ratio.text()                                  # ‖∂L/∂h_1‖ / ‖∂L/∂h_10‖ = 2⁻⁹


def attention_payload(T=6, n=4, heads=2, layers=("mhsa1", "mhsa2"), logits=True):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(heads, T, T))
    maps = {nm: softmax_rows(z + i, n).astype(np.float32) for i, nm in enumerate(layers)}
    lg = {nm: (z + i).astype(np.float32) for i, nm in enumerate(layers)} if logits else {}
    return {"layers": list(layers), "maps": maps, "logits": lg, "sample": 0, "length": n,
            "tokens": ["w", "x", "y", "z"][:n]}, z


def test_attention_view_heatmap_grid_and_hover_formula(qtbot):
    v = AttentionView()
    qtbot.addWidget(v)
    v.resize(900, 420)
    v.begin({"layers": ["input", "mhsa1", "mhsa2"], "n_val": 10,
             "types": {"input": "Input", "mhsa1": "MultiHeadSelfAttention", "mhsa2": "MultiHeadSelfAttention"}})
    p, z = attention_payload()
    v.snapshot(0, p)
    v.refresh()
    assert v.image.image.shape == (4, 4)                               # valid queries × valid keys only
    assert np.allclose(v.image.image.sum(axis=1), 1, atol=1e-5)
    assert len(v.thumbs) == 4                                          # 2 layers × 2 heads
    v.choose("mhsa2", 1)
    want = softmax_rows(z + 1, 4)[1, :4, :4]
    assert np.allclose(v.image.image, want, atol=1e-6)
    text = v.cell_text(2, 1)
    zz = (z + 1)[1, 2, :4]
    assert "exp(q_t·k_s/√d_k) / Σ_u exp(q_t·k_u/√d_k)" in text
    assert f"exp({zz[1]:.4g})" in text and f"{want[2, 1]:.4g}" in text
    assert f"{np.exp(zz).sum():.4g}" in text and "'y'" in text and "'x'" in text


def test_attention_hover_without_logits_shows_the_weight_and_row(qtbot):
    v = AttentionView()
    qtbot.addWidget(v)
    p, _ = attention_payload(logits=False, layers=("mhsa",))
    v.show_maps(p)
    text = v.cell_text(0, 3)
    assert f"{p['maps']['mhsa'][0, 0, 3]:.4g}" in text and "sums to 1" in text


def test_attention_export_png_and_svg(qtbot, tmp_path):
    v = AttentionView()
    qtbot.addWidget(v)
    v.resize(700, 400)
    v.show()
    v.show_maps(attention_payload()[0])
    png = v.export_image(tmp_path / "a.png")
    svg = v.export_image(tmp_path / "a.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:2000]
    with pytest.raises(ValueError):
        v.export_image(tmp_path / "a.bmp")


def dense_model():
    g = Graph()
    g.add_node("Input", "input", {"shape": [3]})
    g.add_node("Dense", "fc", {"units": 2})
    g.add_node("Softmax", "head")
    g.connect("input", "fc")
    g.connect("fc", "head")
    return Model(g)


def test_probe_backward_leaves_the_optimizer_gradient_untouched():
    from engine.losses import get
    m = dense_model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.integers(0, 2, 8)
    probe = Probe("multiclass", ["0", "1"], x, y, x, y)
    loss, calls = get("cce"), []

    def lg(out, yy, mask):
        calls.append(out.shape)
        return loss(out, yy, True)
    probe.loss_grad, probe.logits = lg, True
    m.grad[...] = 7.0
    lens = probe_grads(m, probe, np.arange(5))
    assert calls == [(5, 2)] and len(lens) == 5
    assert np.all(m.grad == 7.0)                                      # restored: the next step sees no change
    m.grad[...] = 0
    m.backward(lg(m.forward(x[:5], logits=True), y[:5], None)[1], logits=True)
    assert np.any(m.grad != 0)                                        # the same backward does write gradients


def test_make_probe_carries_lengths_and_vocab():
    from engine.data import Dataset
    x = np.repeat(np.arange(20, dtype=np.float32)[:, None], 5, axis=1)     # row i holds i: find it again
    ds = Dataset(x, np.arange(20) % 2, "binary", "seqs")
    ds.lengths = np.arange(20) % 5 + 1
    ds.vocab = ["<pad>", "<unk>", "a"]
    p = make_probe(ds, None, 0)
    assert p.vocab == ds.vocab
    rows = p.x[:, 0].astype(int)
    assert np.array_equal(p.lengths, ds.lengths[rows])


# ---- every recurrent layer type, keyed on the taps it declares ----
def gated_model(kind, bi=False):
    g = Graph()
    g.chain(("input", "Input", {"shape": [7, 2]}), ("rec", kind, {"units": 3, "bidirectional": bi}),
            ("out", "Dense", {"units": 1}))
    return Model(g, seed=0)


def seq_probe(n=10, t=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, t, 2)).astype(np.float32)
    y = rng.normal(size=(n, 1)).astype(np.float32)
    p = Probe("regression", [], x, y, x, y)
    p.lengths = rng.integers(1, t + 1, n)
    p.lengths[0] = t
    return p


def test_sequence_views_follow_the_declared_taps():
    from engine.layers import REGISTRY
    from gui.training.views import GateView
    assert {"RNN", "LSTM", "GRU"} <= set(HiddenView.needs) and {"RNN", "LSTM", "GRU"} <= set(GradFlowView.needs)
    assert set(GateView.needs) == {t for t, c in REGISTRY.items() if "gates" in c.taps_doc} >= {"LSTM", "GRU"}
    assert "RNN" not in GateView.needs and GateView in VIEWS
    for kind in ("LSTM", "GRU"):
        ctx = {"types": {"input": "Input", "r": kind}}
        assert HiddenView.applies(None, ctx) and GradFlowView.applies(None, ctx) and GateView.applies(None, ctx)
    assert not GateView.applies(None, {"types": {"input": "Input", "r": "RNN"}})


@pytest.mark.parametrize("kind,gates", [("LSTM", 4), ("GRU", 3)])
def test_gate_view_means_over_valid_steps_and_draws_one_curve_per_gate(qtbot, kind, gates):
    from gui.training.views import GateView
    m, probe = gated_model(kind, bi=True), seq_probe()
    p = GateView.compute(m, probe, {})
    assert p["layer"] == "rec" and p["gates"] == list(m.layers["rec"].gate_names) and p["mean"].shape == (gates, 7)
    m.forward(probe.x, mask=np.arange(7)[None, :] < probe.lengths[:, None])
    g = m.layers["rec"].taps["gates"]                                  # (n, T, gates, 2H)
    for t in (0, 3, 6):
        rows = probe.lengths > t
        np.testing.assert_allclose(p["mean"][:, t], g[rows, t].mean(axis=(0, 2)), rtol=1e-5)
        assert p["count"][t] == rows.sum()
    v = GateView()
    qtbot.addWidget(v)
    v.begin({"layers": ["input", "rec", "out"], "types": {"input": "Input", "rec": kind, "out": "Dense"}})
    assert v.options["gates_layer"] == "rec"
    v.snapshot(0, p)
    v.refresh()
    assert len(v.curves) == gates and [c.name() for c in v.curves] == p["gates"]
    x, y = v.curves[1].getData()
    assert np.array_equal(x, np.arange(1, 8)) and np.allclose(y, p["mean"][1])
    assert kind in v.note.text()


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_hidden_and_gradflow_views_compute_for_gated_layers(kind):
    from engine.losses import get
    m, probe = gated_model(kind), seq_probe()
    h = HiddenView.compute(m, probe, {"hidden_sample": 1})
    n = int(probe.lengths[1])
    assert h["layer"] == "rec" and h["h"].shape == (n, 3) and h["formula"].startswith("h_t = ")
    loss = get("mse")
    probe.loss_grad, probe.logits = (lambda out, y, mask: loss(out, y, False, mask)), False
    f = GradFlowView.compute(m, probe, {})
    assert f["layer"] == "rec" and f["norms"].shape == (7,) and np.all(np.isfinite(f["norms"]))


def test_lstm_example_feeds_the_gate_view_in_the_dock(qtbot, tmp_path):
    """One epoch of resources/examples/temperature-lstm.json on its first 600 hours: the Gates tab is shown and
    gets the mean of i, f, g, o over 24 steps; the RNN example has no Gates tab."""
    import gzip

    from engine.project import Project
    from gui.document import Document
    from gui.training import TrainingDock
    from gui.training.views import GateView
    from resources import path
    p = Project.load(path("examples", "temperature-lstm.json"))
    with gzip.open(p.base / p.dataset["path"], "rt", encoding="utf-8") as f:
        (tmp_path / "hours.csv").write_text("".join(f.readlines()[:601]), encoding="utf-8")
    p.dataset = dict(p.dataset, path=str(tmp_path / "hours.csv"))
    p.training["epochs"] = 1
    d = TrainingDock(Document(p))
    qtbot.addWidget(d)
    v = d.view(GateView)
    assert d.tabs.isTabVisible(d.tabs.indexOf(v))
    got = []
    v.snapshot = (lambda orig: lambda f, pl: (got.append(pl), orig(f, pl)))(v.snapshot)
    try:
        d.start()
        qtbot.waitUntil(lambda: (d.drain(), d.status != "running")[1], timeout=180000)
    finally:
        d.shutdown()
    assert d.status == "completed", d.message.text()
    g = got[-1]
    assert g["layer"] == "lstm" and g["mean"].shape == (4, 24) and np.all((g["mean"][[0, 1, 3]] > 0) & (g["mean"][[0, 1, 3]] < 1))
    assert [c.name() for c in v.curves] == ["input i", "forget f", "cell g", "output o"]
    rnn = TrainingDock(Document(Project.load(path("examples", "temperature-rnn.json"))))
    qtbot.addWidget(rnn)
    assert not rnn.tabs.isTabVisible(rnn.tabs.indexOf(rnn.view(GateView)))


def test_palette_lists_lstm_and_gru_under_recurrent_and_finds_them(qtbot):
    from gui.palette import TYPE_ROLE, PaletteTree
    t = PaletteTree()
    qtbot.addWidget(t)
    groups = {t.topLevelItem(i).text(0): t.topLevelItem(i) for i in range(t.topLevelItemCount())}
    rec = groups["Recurrent"]
    kids = {rec.child(j).data(0, TYPE_ROLE): rec.child(j) for j in range(rec.childCount())}
    assert {"RNN", "LSTM", "GRU"} <= set(kids) and "c_t = f⊙c_{t−1} + i⊙g" in kids["LSTM"].toolTip(0)
    t.filter("lstm")
    assert not rec.isHidden() and not kids["LSTM"].isHidden() and kids["RNN"].isHidden()
    t.filter("gated")
    assert not kids["GRU"].isHidden()


def _tap_cases():
    from gui.training.views import GateView
    return sorted(set(HiddenView.needs) | set(GradFlowView.needs) | set(GateView.needs))


@pytest.mark.parametrize("kind", _tap_cases())
def test_every_layer_declaring_sequence_taps_feeds_its_views(kind):
    """Registry-driven: each layer type whose taps_doc names hidden / grad_hidden / gates gets its views computed on
    a small masked model built from its first masked sample."""
    from engine.layers import REGISTRY
    from engine.losses import get
    from gui.training.views import GateView
    cls = REGISTRY[kind]
    cfg, shapes = next((c, s) for c, s, *o in cls.samples() if o and o[0].get("mask"))
    cfg = dict(cfg, **({"return_sequences": False} if any(h.name == "return_sequences" for h in cls.hparams) else {}))
    g = Graph()
    g.chain(("input", "Input", {"shape": [7, shapes[0][1]]}), ("rec", kind, cfg), ("out", "Dense", {"units": 1}))
    m = Model(g, seed=0)
    probe = seq_probe()
    probe.x = np.random.default_rng(3).normal(size=(10, 7, shapes[0][1])).astype(np.float32)
    loss = get("mse")
    probe.loss_grad, probe.logits = (lambda out, y, mask: loss(out, y, False, mask)), False
    for view in (HiddenView, GradFlowView, GateView):
        if kind in view.needs:
            p = view.compute(m, probe, {})
            assert p is not None and p["layer"] == "rec", view.title
