"""PCA of an encoder–decoder's hidden vectors (engine.pca.pair_activations): each pair's mean over the layer's valid
steps, source steps on the encoder side and target steps on the decoder side, fed as in training; padding never
counts. The PCA view shows them (offscreen)."""
import numpy as np
import pytest

from engine.errors import DataError
from engine.model import Model
from engine.pca import PCA, pair_activations
from engine.seq2seq import recurrent, transformer

S, T, V, W = 7, 6, 11, 9


def pairs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    sl, tl = rng.integers(2, S + 1, n), rng.integers(2, T + 1, n)
    x = np.where(np.arange(S) < sl[:, None], rng.integers(4, V, (n, S)), 0).astype(np.float32)
    y = np.where(np.arange(T) < tl[:, None], rng.integers(4, W, (n, T)), 0).astype(np.int64)
    return x, sl, y, tl


@pytest.fixture(params=["transformer", "recurrent"])
def model(request):
    g = transformer(S, T, V, W, d=8, heads=2) if request.param == "transformer" else recurrent(S, T, V, W, d=8)
    return Model(g, seed=1)


def test_embedding_vectors_are_the_mean_of_the_valid_steps(model):
    x, sl, y, tl = pairs()
    src = pair_activations(model, "src_embed", x, sl, y, tl, batch_size=16)              # (n, d) encoder side
    E = model.layers["src_embed"].p["E"].astype(np.float64)                            # (V, d)
    want = np.stack([E[x[i, :sl[i]].astype(int)].mean(0) for i in range(len(x))])
    np.testing.assert_allclose(src, want, rtol=1e-5, atol=1e-6)
    dec = pair_activations(model, "tgt_embed", x, sl, y, tl)                           # decoder side: <start> + y
    E = model.layers["tgt_embed"].p["E"].astype(np.float64)
    fed = [np.r_[2, y[i, :tl[i] - 1]] for i in range(len(y))]                          # teacher forcing
    np.testing.assert_allclose(dec, np.stack([E[f].mean(0) for f in fed]), rtol=1e-5, atol=1e-6)


def test_padding_never_counts_on_either_side(model):
    x, sl, y, tl = pairs()
    junk_x, junk_y = x.copy(), y.copy()
    junk_x[np.arange(S)[None, :] >= sl[:, None]] = 5
    junk_y[np.arange(T)[None, :] >= tl[:, None]] = 7
    layers = [n for n in model.order if model.layers[n].type not in ("Input", "Softmax")]
    for layer in layers:
        a = pair_activations(model, layer, x, sl, y, tl)
        b = pair_activations(model, layer, junk_x, sl, junk_y, tl)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=layer)
        assert a.ndim == 2 and len(a) == len(x) and np.isfinite(a).all()
    p = PCA(2).fit(pair_activations(model, layers[-1], x, sl, y, tl))
    assert p.components.shape[0] == 2 and 0 < p.explained_variance_ratio[:2].sum() <= 1 + 1e-9


def test_bad_input_gives_one_line(model):
    x, sl, y, tl = pairs()
    with pytest.raises(Exception, match="expects samples of shape"):
        pair_activations(model, "src_embed", x[:, :3], sl, y, tl)
    with pytest.raises(DataError, match="no sentence pairs"):
        pair_activations(model, "src_embed", x[:0], sl[:0], y[:0], tl[:0])


def test_pca_view_draws_an_encoder_decoder(qtbot):
    from gui.training.job import Probe
    from gui.training.views.pca import PCAView
    model = Model(transformer(S, T, V, W, d=8, heads=2), seed=1)
    x, sl, y, tl = pairs()
    probe = Probe("multiclass", list(range(W)), x, y, x, y, lengths=sl, target_lengths=tl)
    view = PCAView()
    qtbot.addWidget(view)
    layers = list(model.order)
    view.begin({"layers": layers, "features": {n: int(np.prod(model.infos[n].shape)) for n in layers},
                "types": {n: model.graph.nodes[n].type for n in layers}, "n_val": len(x), "classes": [],
                "classify": False})
    for layer in ("enc1_ff_norm", "dec1_ff_norm"):
        payload = PCAView.compute(model, probe, {"pca_layer": layer})
        assert payload is not None and payload["layer"] == layer and payload["scores"].shape == (len(x), 2)
        view.snapshot(0, payload)
        view.refresh()
        assert view.scatter.xy.shape == (len(x), 2) and np.ptp(view.scatter.xy[:, 0]) > 0
        assert f"'{layer}'" in view.evr_label.text() and "mean over valid steps" in view.evr_label.text()
