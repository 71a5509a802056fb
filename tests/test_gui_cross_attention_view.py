"""The attention view of an encoder–decoder: cross-attention as target tokens × source tokens (words on the axes),
decoder self-attention as its causal triangle, every layer and head in the grid."""
import numpy as np

from engine.model import Model
from engine.seq2seq import transformer
from gui.training.job import make_probe
from gui.training.views import AttentionView
from test_seq2seq import pairs


VOC = ["<pad>", "<unk>", "<start>", "<end>"] + list("abcde")


def translation():
    """(model, probe, i, payload): a small encoder–decoder transformer on token pairs and the attention view's
    payload of validation sample i, which has padding on both sides."""
    ds = pairs(n=12, S=6, T=7, V=9)
    ds.vocab, ds.target_vocab = VOC, VOC
    model = Model(transformer(6, 7, 9, 9, d=8, heads=2))
    probe = make_probe(ds, ds, 0)
    i = int(np.flatnonzero((probe.lengths < 6) & (probe.target_lengths > 2))[0])     # padding on both sides
    return model, probe, i, AttentionView.compute(model, probe, {"attention_sample": i})


def shown_view(qtbot, p, n_val, layer, head):
    """An AttentionView drawing payload p, on layer and head."""
    v = AttentionView()
    qtbot.addWidget(v)
    v.resize(900, 420)
    v.begin({"layers": p["layers"], "types": p["types"], "n_val": n_val})
    v.show_maps(p)
    v.choose(layer, head)
    return v


def test_cross_and_decoder_self_attention_maps_with_tokens(qtbot):
    model, probe, i, p = translation()
    voc = VOC
    S, T = int(probe.lengths[i]), int(probe.target_lengths[i])
    assert p["layers"] == ["enc1_att", "dec1_att", "dec1_cross"] and p["dims"]["dec1_cross"] == (T, S)
    cross = p["maps"]["dec1_cross"]                                          # (heads, T, S)
    assert cross.shape == (2, 7, 6)
    np.testing.assert_allclose(cross[:, :T, :S].sum(-1), 1.0, rtol=1e-5)
    assert np.all(cross[:, :, S:] == 0) and np.all(cross[:, T:] == 0)        # padded source keys, target queries
    ids = probe.y[i][:T]
    assert p["rows"]["dec1_cross"] == [voc[j] for j in ids] and p["rows"]["dec1_cross"][-1] == "<end>"
    assert p["cols"]["dec1_cross"] == [voc[int(j)] for j in probe.x[i][:S]]
    assert p["rows"]["dec1_att"][0] == "<start>" and p["dims"]["dec1_att"] == (T, T)
    tri = p["maps"]["dec1_att"][:, :T, :T]
    assert np.all(tri[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)   # causal: nothing above
    v = shown_view(qtbot, p, len(probe.x), "dec1_cross", 1)
    assert v.alpha.shape == (T, S)
    assert "source token" in v.plot.getAxis("bottom").labelText and "target" in v.plot.getAxis("left").labelText
    ticks = [t for _, t in v.plot.getAxis("left")._tickLevels[0]]
    assert ticks[-1] == "<end>"
    assert f"key s = 1 '{voc[int(probe.x[i][0])]}'" in v.cell_text(0, 0)
    v.choose("dec1_att", 0)
    assert v.alpha.shape == (T, T) and "causal mask" in v.cell_text(0, T - 1)
    assert (v.thumbs[("dec1_cross", 0)][1].image.shape) == (T, S)
