"""Encoder–decoder models: two Inputs, teacher forcing, per-token loss over valid target steps only (padding in
source and target changes nothing), the incremental step, alignments, clear errors, a short training run."""
import numpy as np
import pytest

from engine import ShapeError
from engine.data.dataset import Dataset
from engine.errors import TrainingError
from engine.model import Model
from engine.project import training_config
from engine.seq2seq import END, START, Batch, alignment, model_step, teacher_inputs, transformer
from engine.trainer import Trainer


def pairs(n=64, S=6, T=7, V=9, seed=0, pad_s=0, pad_t=0, noise=False):
    """Synthetic sentence pairs: the target is the source reversed, then <end>; pad_s / pad_t extra padded steps;
    noise: random ids in the padding (which must change nothing)."""
    rng = np.random.default_rng(seed)
    L = rng.integers(1, S + 1, n)
    L[0] = S
    x = np.zeros((n, S + pad_s), np.float32)
    y = np.zeros((n, T + pad_t), np.int64)
    for i in range(n):
        s = rng.integers(4, V, L[i])
        x[i, :L[i]] = s
        y[i, :L[i]] = s[::-1]
        y[i, L[i]] = END
    if noise:                                   # a separate stream: the valid steps stay those of the clean data
        junk = np.random.default_rng(seed + 99)
        x[:] = np.where(np.arange(S + pad_s) < L[:, None], x, junk.integers(0, V, x.shape))
    voc = ["<pad>", "<unk>", "<start>", "<end>"] + [str(i) for i in range(4, V)]
    ds = Dataset(x, y, "multiclass", "reverse pairs", classes=voc, lengths=L, target_lengths=L + 1, target_vocab=voc,
                 vocab=voc)
    if noise:                                   # targets after <end> (a loader writes 0 there) are garbage too
        ds.y[:] = np.where(np.arange(T + pad_t) < (L + 1)[:, None], ds.y, junk.integers(0, V, ds.y.shape))
    return ds


CFG = training_config({"loss": "cce", "optimizer": "adam", "lr": 0.003, "batch_size": 16, "epochs": 1})


def grads(model, ds):
    """(loss, gradient) of one training-mode step on the whole of ds (no optimizer step)."""
    t = Trainer(model, CFG, ds)
    xb, yb, mb = t._batch(ds, np.arange(len(ds)))
    out = model.forward(xb, training=True, logits=t.fused, mask=mb)
    loss, d = t.loss(out, yb, t.fused, mb.loss)
    model.backward(d, logits=t.fused)
    return loss, model.grad.copy()


def test_teacher_inputs_shift_right_and_start_with_start():
    y = np.array([[5, 6, END, 0], [7, END, 0, 0]])
    np.testing.assert_array_equal(teacher_inputs(y), [[START, 5, 6, END], [START, 7, END, 0]])
    assert teacher_inputs(y).dtype == np.float32


def test_model_has_two_inputs_with_their_feeds():
    m = Model(transformer(6, 7, 9, 9, d=8, heads=2))
    assert m.inputs == ["source", "target"] and m.feeds == {"source": "source", "target": "target"}
    assert m.output_shape == (7, 9)


def test_padded_steps_change_neither_loss_nor_gradients():
    """Garbage in the padded source and target steps, and extra padded steps on both sides, give the loss and the
    gradient of the clean data (the position tables are sized for the longest so the weights are the same)."""
    g = transformer(6, 7, 9, 9, d=8, heads=2, max_len=10)
    base = grads(Model(g, dtype=np.float64), pairs())
    noisy = grads(Model(g, dtype=np.float64), pairs(noise=True))
    assert base[0] == pytest.approx(noisy[0], rel=1e-12)
    np.testing.assert_allclose(noisy[1], base[1], rtol=1e-10, atol=1e-13)
    long = Model(transformer(9, 10, 9, 9, d=8, heads=2, max_len=10), dtype=np.float64)
    wide = grads(long, pairs(pad_s=3, pad_t=3, noise=True))
    assert wide[0] == pytest.approx(base[0], rel=1e-10)
    np.testing.assert_allclose(wide[1], base[1], rtol=1e-8, atol=1e-12)
    assert np.abs(base[1]).max() > 0


def test_loss_counts_valid_target_steps_only():
    ds = pairs(n=8)
    m = Model(transformer(6, 7, 9, 9, d=8, heads=2), dtype=np.float64)
    t = Trainer(m, CFG, ds)
    xb, yb, mb = t._batch(ds, np.arange(8))
    assert isinstance(xb, Batch) and mb.loss.sum(1).tolist() == (ds.target_lengths).tolist()
    p = m.forward(xb, mask=mb)                                           # (8, T, V) probabilities
    want = -np.mean(np.log(p[mb.loss, yb[mb.loss]]))                    # mean over valid target tokens
    assert t.evaluate(ds)[0] == pytest.approx(want, rel=1e-9)


def test_step_gives_the_teacher_forced_next_token_distribution():
    ds = pairs(n=5)
    m = Model(transformer(6, 7, 9, 9, d=8, heads=2), dtype=np.float64)
    step = model_step(m)
    full = np.log(m.forward({"source": ds.x, "target": teacher_inputs(ds.y)},
                            mask={"source": ds.mask(), "target": None}))            # (5, T, V)
    prefix = teacher_inputs(ds.y)[:, :3].astype(np.int64)               # <start>, y0, y1
    np.testing.assert_allclose(step(ds.x, ds.lengths, prefix), full[:, 2], rtol=1e-9, atol=1e-12)


def test_alignment_gives_one_map_per_output_token_and_source_token():
    ds = pairs(n=3)
    m = Model(transformer(6, 7, 9, 9, d=8, heads=2, dec=2), dtype=np.float64)
    out = [[5, 6], [7], []]
    al = alignment(m, ds.x[:3], ds.lengths[:3], out)
    assert sorted(al) == ["dec1_cross", "dec2_cross"]
    for i, a in enumerate(al["dec1_cross"]):
        assert a.shape == (2, len(out[i]) + 1, ds.lengths[i])
        np.testing.assert_allclose(a.sum(-1), 1.0)


def test_mismatched_data_gives_one_clear_line():
    m = Model(transformer(6, 7, 9, 9, d=8, heads=2))
    with pytest.raises(TrainingError, match="Input 'target' expects"):
        Trainer(m, CFG, pairs(pad_t=2))
    with pytest.raises(TrainingError, match=r"needs shape \(7, 12\)"):
        ds = pairs()
        ds.target_vocab = [str(i) for i in range(12)]
        Trainer(m, CFG, ds)
    x = np.zeros((4, 6), np.float32)
    with pytest.raises(TrainingError, match="no target sequences"):
        Trainer(m, CFG, Dataset(x, np.zeros((4, 7), np.int64), "multiclass", "plain", lengths=np.full(4, 6)))
    with pytest.raises(ShapeError, match="got no data for"):
        m.forward(np.zeros((2, 6), np.float32))


def test_a_few_epochs_learn_to_reverse():
    ds = pairs(n=400, S=5, T=6, V=8, seed=1)
    m = Model(transformer(5, 6, 8, 8, d=16, heads=2))
    t = Trainer(m, training_config({"loss": "cce", "optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 4}),
                ds)
    first = t.evaluate(ds)[0]
    r = t.run()
    assert r["status"] == "completed" and r["train_loss"] < 0.5 * first


def test_validation_reports_exact_match_token_accuracy_and_bleu():
    ds = pairs(n=120, S=4, T=5, V=7, seed=2)
    tr, va = ds.split(0.25)
    m = Model(transformer(4, 5, 7, 7, d=16, heads=2))
    t = Trainer(m, training_config({"loss": "cce", "optimizer": "adam", "lr": 0.01, "batch_size": 16, "epochs": 2}),
                tr, va)
    r = t.run()
    for k in ("val_exact_match", "val_token_accuracy", "val_bleu"):
        assert len(t.history[k]) == 2 and k in r
    from engine.decode import greedy
    from engine.text_metrics import exact_match, references
    hyps = greedy(model_step(m), va.x, va.lengths, 5)
    assert r["val_exact_match"] == pytest.approx(exact_match(hyps, references(va)))


def test_canvas_errors_understand_the_two_streams():
    from engine.shapes import errors, infer
    g = transformer(6, 7, 9, 9, d=8, heads=2)
    assert errors(infer(g)) == []
    g.nodes["source"].config["feed"] = "target"                          # two target Inputs: one-click fix
    info = infer(g)["target"]
    assert "fed by the target like Input 'source'" in info.error and info.fix.config == (("feed", "source"),)
    g2 = transformer(6, 6, 9, 9, d=8, heads=2)            # decoder + encoder step by step (same lengths: shapes pass)
    g2.add_node("Add", "mix")
    g2.connect("dec1_att_norm", "mix", 0)
    g2.connect("enc1_ff_norm", "mix", 1)
    info = infer(g2)["mix"]
    assert "combines the source sequence (from 'enc1_ff_norm') and the target sequence" in info.error
    assert infer(g2)["probs"].shape == (6, 9)                           # the rest of the graph is unaffected
    g3 = transformer(6, 7, 9, 9, d=8, heads=2)                           # cross-attention the wrong way round
    for e in [e for e in g3.edges if e.dst == "dec1_cross"]:
        g3.disconnect(e)
    g3.connect("enc1_ff_norm", "dec1_cross", 0)
    g3.connect("dec1_att_norm", "dec1_cross", 1)
    assert "the encoder would read the target" in infer(g3)["dec1_cross"].error


def copy_pairs(n, S, T, V, seed):
    """Pairs whose target is the source itself, then <end>."""
    ds = pairs(n=n, S=S, T=T, V=V, seed=seed)
    for i, L in enumerate(ds.lengths):
        ds.y[i, :L] = ds.x[i, :L]
    return ds


@pytest.mark.parametrize("cell", ["GRU", "LSTM"])
def test_recurrent_encoder_decoder_with_attention(cell):
    """A GRU/LSTM encoder–decoder with Luong attention (one-head CrossAttention): padding changes nothing, the
    step is exact, and a few epochs learn to copy (greedy exact match)."""
    from engine.seq2seq import recurrent
    g = recurrent(6, 7, 9, 9, d=8, cell=cell)
    base = grads(Model(g, dtype=np.float64), pairs())
    noisy = grads(Model(g, dtype=np.float64), pairs(noise=True))
    np.testing.assert_allclose(noisy[1], base[1], rtol=1e-10, atol=1e-13)
    ds = copy_pairs(600, 6, 7, 9, 1)
    tr, va = ds.split(0.2)
    m = Model(recurrent(6, 7, 9, 9, d=24, cell=cell))
    t = Trainer(m, training_config({"loss": "cce", "optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 6}),
                tr, va)
    r = t.run()
    assert r["val_exact_match"] > 0.5                    # measured 0.85 (GRU), 0.83 (LSTM)
