"""The attention view's hover formula is the one the layer computes: a ScaledDotProductAttention with its own
scale or softcap shows it with the node's numbers, and its scores give back the maps drawn."""
import numpy as np
import pytest

from engine import Graph
from engine.model import Model


def sdpa_graph(config, Tn=5, F=3, kv_units=8):
    """x → Dense q (8) and Dense k, v (kv_units) → ScaledDotProductAttention(config)."""
    g = Graph()
    g.add_node("Input", "x", {"shape": [Tn, F]})
    for k, units in (("q", 8), ("k", kv_units), ("v", kv_units)):
        g.chain((k, "Dense", {"units": units}), after="x")
    g.add_node("ScaledDotProductAttention", "att", config)
    for i, k in enumerate("qkv"):
        g.connect(k, "att", i)
    return g


def payload(config, kv_units=8):
    from gui.training.job import Probe
    x = np.random.default_rng(3).normal(size=(4, 5, 3)).astype(np.float32)
    probe = Probe("regression", [], x, x[:, :1, 0], x, x[:, :1, 0])
    probe.lengths = np.array([5, 4, 3, 5])
    model = Model(sdpa_graph(config, kv_units=kv_units), seed=0)
    from gui.training.views import AttentionView
    return AttentionView.compute(model, probe, {"attention_sample": 1})


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("config,kv_units,term", [
    ({"heads": 2, "kv_heads": 1, "scale": 0.3, "softcap": 1.5}, 4, "1.5·tanh(0.3·q_t·k_{}/1.5)"),
    ({"heads": 2, "scale": 0.7}, 8, "0.7·q_t·k_{}"),
    ({"heads": 2, "softcap": 0.5, "causal": True}, 8, "0.5·tanh(q_t·k_{}/√d_k/0.5)"),
    ({"heads": 2}, 8, "q_t·k_{}/√d_k"),
])
def test_hover_shows_the_layers_own_scale_and_softcap_with_its_numbers(qtbot, tmp_path, config, kv_units, term):
    p = payload(config, kv_units)
    n = p["length"]                                                     # 4 valid steps of sample 1
    z, A = p["logits"]["att"][:, :n, :n].astype(np.float64), p["maps"]["att"][:, :n, :n]
    if config.get("causal"):
        z = np.where(np.tril(np.ones((n, n), bool)), z, -np.inf)
    np.testing.assert_allclose(softmax(z), A, rtol=2e-5, atol=1e-6)     # the scores are the layer's own
    if config.get("softcap"):
        assert np.abs(p["logits"]["att"]).max() <= config["softcap"] * (1 + 1e-6)
    from test_gui_cross_attention_view import shown_view
    v = shown_view(qtbot, p, 4, "att", 1)
    want = f"α_{{t→s}} = exp({term.format('s')}) / Σ_u exp({term.format('u')})"
    assert v.hover.text() == "Hover a cell: " + want + (" (d_k = 4, 1/√d_k = 0.5)" if "√d_k" in term else " (d_k = 4)")
    text = v.cell_text(2, 1)
    assert want in text and "d_k = 4" in text
    assert ("√d_k" in text) == ("√d_k" in term)                         # never /√d_k for a layer with a scale
    zz = p["logits"]["att"][1, 2, :3 if config.get("causal") else n].astype(np.float64)
    assert f"exp({zz[1]:.4g})" in text and f"{np.exp(zz).sum():.4g}" in text
    assert f"{A[1, 2, 1]:.4g}" in text
    v.hover.setText(text)
    v.show()
    v.grab().save(str(tmp_path / "attention_scores.png"))


def test_cross_attention_hover_shows_its_scores_for_the_sample_shown(qtbot, tmp_path):
    """CrossAttention computes z_ts = q_t·k_s/√d_k of the shown sample from its own q and k (engine:
    attention_scores); softmax over the valid source keys gives back the maps drawn, and the hover writes the
    formula with that cell's numbers (target × source tokens, padding on both sides)."""
    from test_gui_cross_attention_view import VOC, shown_view, translation
    model, probe, i, p = translation()
    S, T = int(probe.lengths[i]), int(probe.target_lengths[i])
    layer = model.layers["dec1_cross"]
    z = p["logits"]["dec1_cross"]                                                    # (heads, 7, 6)
    assert z.shape == (2, 7, 6) and p["scores"]["dec1_cross"]["d_k"] == 4
    np.testing.assert_allclose(softmax(z[:, :T, :S].astype(np.float64)), p["maps"]["dec1_cross"][:, :T, :S],
                               rtol=2e-5, atol=1e-6)                                 # the kernel's own weights
    x, m = _inputs(model, probe, [0, i])
    model.forward(x, training=False, mask=m)                                         # two samples: only the asked one
    np.testing.assert_allclose(layer.attention_scores([1])[0], z, rtol=1e-5, atol=1e-6)
    v = shown_view(qtbot, p, len(probe.x), "dec1_cross", 1)
    want = "α_{t→s} = exp(q_t·k_s/√d_k) / Σ_u exp(q_t·k_u/√d_k)"
    assert v.hover.text() == f"Hover a cell: {want} (d_k = 4, 1/√d_k = 0.5)"
    text = v.cell_text(1, S - 1)
    zz = z[1, 1, :S].astype(np.float64)
    assert want in text and f"exp({zz[S - 1]:.4g})" in text and f"Σ_(u=1…{S})" in text
    assert f"{np.exp(zz).sum():.4g}" in text and f"{softmax(zz)[S - 1]:.4g}" in text
    assert f"key s = {S} '{VOC[int(probe.x[i][S - 1])]}'" in text
    v.hover.setText(text)
    v.show()
    v.grab().save(str(tmp_path / "cross_attention_scores.png"))


def _inputs(model, probe, idx):
    from gui.training.views.sequence import model_inputs
    x, m, _ = model_inputs(model, probe, np.asarray(idx))
    return x, m
