"""An encoder–decoder trains in the training dock: the attention view gets cross-attention maps every probe and no
view reports an error (views that do not apply to two inputs stay empty)."""
import numpy as np

from engine.project import Project
from engine.seq2seq import transformer
from gui.training.views import AttentionView
from test_seq2seq import pairs
from test_seq_gui import train_in_dock  # noqa: F401  (fixture)


def test_dock_trains_an_encoder_decoder_without_view_errors(train_in_dock):  # noqa: F811
    ds = pairs(n=160, S=5, T=6, V=8, seed=3)
    g = transformer(5, 6, 8, 8, d=16, heads=2)
    p = Project(g)
    p.training.update({"loss": "cce", "epochs": 2, "batch_size": 32, "lr": 0.01, "validation_split": 0.25})
    d, got = train_in_dock(p, ds, front=AttentionView)
    errors = {k: pl["error"] for k, pls in got.items() for pl in pls if isinstance(pl, dict) and "error" in pl}
    assert errors == {}
    maps = [pl for pl in got["attention"] if pl]
    assert maps and maps[-1]["maps"]["dec1_cross"].shape == (2, 6, 5)
    assert d.result["val_exact_match"] >= 0.0 and "val_bleu" in d.result
    from gui.training.views import CurvesView
    cv = d.view(CurvesView)
    d.drain()
    cv.refresh()
    x, y = cv.epoch_curve(0, "val_exact_match").getData()
    assert len(x) == 2 and np.allclose(y, d.job.trainer.history["val_exact_match"])
    assert "validation exact match" in d.message.text() and "BLEU" in d.message.text()


def test_data_check_sets_each_input_from_its_side_of_the_pairs():
    from engine.shapes import infer
    from gui.training.datacheck import mismatches
    ds = pairs(n=20, S=5, T=6, V=8)
    g = transformer(7, 9, 8, 8, d=8, heads=2)                    # both Inputs too long for this data
    found = {n: (msg, fix) for n, msg, fix in mismatches(g, infer(g), ds, "cce")}
    assert "has samples of shape (5,)" in found["source"][0] and found["source"][1].config == (("shape", (5,)),)
    assert "target sequences of shape (6,)" in found["target"][0] and found["target"][1].config == (("shape", (6,)),)
    ok = transformer(5, 6, 8, 8, d=8, heads=2)
    assert mismatches(ok, infer(ok), ds, "cce") == []


def test_dock_views_of_a_recurrent_encoder_decoder(train_in_dock):  # noqa: F811
    """GRU encoder–decoder with attention: hidden states, gradient through time and attention views, no error."""
    from engine.seq2seq import recurrent
    ds = pairs(n=120, S=5, T=6, V=8, seed=4)
    p = Project(recurrent(5, 6, 8, 8, d=12))
    p.training.update({"loss": "cce", "epochs": 1, "batch_size": 32, "lr": 0.01, "validation_split": 0.25})
    d, got = train_in_dock(p, ds)
    errors = {k: pl["error"] for k, pls in got.items() for pl in pls if isinstance(pl, dict) and "error" in pl}
    assert errors == {}
    g = got["gradflow"][-1]
    assert g["layer"] == "encoder" and g["norms"].shape == (5,) and np.all(np.isfinite(g["norms"]))
    assert got["attention"][-1]["maps"]["attention"].shape == (1, 6, 5)
