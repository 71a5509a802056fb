"""Variable-length sequence masks flow through the graph (kept along the time axis, ANDed, ended by Flatten);
lengths travel with the data, the trainer feeds masks, per-step losses follow the spec's sequence formulas,
and regression reports RMSE / MAE / R² in the targets' own units."""
import json
import subprocess
import sys

import numpy as np
import pytest

from engine import Graph, ShapeError, losses
from engine.data import Dataset
from engine.model import Model
from engine.project import training_config
from engine.trainer import Trainer
from gradcheck import numeric


def seq_graph():
    """x (5, 3) → relu → drop ┐
       x          → tanh ────┴ add → flat → out (Dense 2)"""
    g = Graph()
    for name, t, c in [("x", "Input", {"shape": [5, 3]}), ("relu", "ReLU", {}), ("drop", "Dropout", {"rate": 0.5}),
                       ("tanh", "Tanh", {}), ("add", "Add", {}), ("flat", "Flatten", {}),
                       ("out", "Dense", {"units": 2})]:
        g.add_node(t, name, c)
    for a, b in [("x", "relu"), ("relu", "drop"), ("x", "tanh"), ("drop", "add"), ("tanh", "add"),
                 ("add", "flat"), ("flat", "out")]:
        g.connect(a, b)
    return g


def test_the_mask_follows_the_time_axis_and_ends_where_it_is_folded():
    m = Model(seq_graph(), dtype=np.float64, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 5, 3))
    lengths = np.array([5, 3, 1, 4])
    mask = np.arange(5)[None, :] < lengths[:, None]                 # (B, T)
    m.forward(x, training=True, mask=mask)
    for n in ("x", "relu", "drop", "tanh", "add"):
        assert np.array_equal(m.masks[n], mask), n
    assert m.layers["add"].in_masks[0] is m.masks["drop"] and len(m.layers["add"].in_masks) == 2
    assert m.masks["flat"] is None and m.masks["out"] is None and m.layers["out"].in_masks == [None]
    m.forward(x)                                                    # no mask: none anywhere
    assert all(v is None for v in m.masks.values())


def test_several_masked_inputs_are_anded():
    add = Model(seq_graph(), seed=0).layers["add"]
    a = np.array([[1, 1, 1, 0, 0]], bool)
    b = np.array([[1, 1, 0, 0, 1]], bool)
    assert add.compute_mask([a, b]).tolist() == [[True, True, False, False, False]]
    assert add.compute_mask([None, b]) is b


def test_a_mask_of_the_wrong_shape_names_the_input():
    m = Model(seq_graph(), seed=0)
    with pytest.raises(ShapeError, match=r"\(4, 5\).*Input 'x'"):
        m.forward(np.zeros((4, 5, 3)), mask=np.ones((4, 6), bool))


def lengths_mask(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


# ---- losses against the spec's formulas ----
def test_seq2seq_mse_averages_over_each_sequences_own_length():
    """L = (1/N) Σ_i (1/T_i) Σ_{t ≤ T_i} ||y_it − ŷ_it||²; padded steps change nothing."""
    rng = np.random.default_rng(0)
    out, y = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2))
    lg = np.array([4, 1, 2])
    want = np.mean([np.sum((y[i, :lg[i]] - out[i, :lg[i]]) ** 2) / lg[i] for i in range(3)])
    mse = losses.get("mse")
    val, d = mse(out, y, mask=lengths_mask(lg, 4))
    assert val == pytest.approx(want, rel=1e-12)
    out2 = out.copy()
    out2[1, 1:] = 1e6                                                  # padding garbage
    assert mse(out2, y, mask=lengths_mask(lg, 4))[0] == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(d, numeric(lambda: mse(out, y, mask=lengths_mask(lg, 4))[0], out), atol=1e-7)
    assert np.all(d[1, 1:] == 0) and np.all(d[2, 2:] == 0)


@pytest.mark.parametrize("fused", [False, True])
def test_per_step_cross_entropy_is_the_mean_over_valid_steps(fused):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 5, 4))
    p = np.exp(z) / np.exp(z).sum(2, keepdims=True)
    y = rng.integers(0, 4, (3, 5))
    lg = np.array([5, 2, 3])
    m = lengths_mask(lg, 5)
    want = -np.mean([np.log(p[i, t, y[i, t]]) for i in range(3) for t in range(lg[i])])
    cce = losses.get("cce")
    out = z if fused else p
    val, d = cce(out, y, fused, m)
    assert val == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(d, numeric(lambda: cce(out, y, fused, m)[0], out), rtol=1e-5, atol=1e-7)
    assert np.all(d[~m] == 0)
    y2 = y.copy()
    y2[~m] = 3                                                         # labels at padded steps are ignored
    assert cce(out, y2, fused, m)[0] == pytest.approx(want, rel=1e-10)


def test_per_step_cross_entropy_matches_torch_ignore_index():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    z = rng.normal(size=(2, 6, 3))
    y = rng.integers(0, 3, (2, 6))
    m = lengths_mask([6, 3], 6)
    ref = torch.nn.functional.cross_entropy(torch.tensor(z).reshape(-1, 3),
                                            torch.tensor(np.where(m, y, -100)).reshape(-1), ignore_index=-100)
    assert losses.get("cce")(z, y, True, m)[0] == pytest.approx(ref.item(), rel=1e-10)


# ---- data and trainer ----
def seq_data(n=12, t=5, f=2, seed=0, per_step=False):
    rng = np.random.default_rng(seed)
    lg = rng.integers(1, t + 1, n)
    x = rng.normal(size=(n, t, f)).astype(np.float32)
    y = rng.integers(0, 3, (n, t)) if per_step else rng.integers(0, 3, n)
    return Dataset(x, y, "multiclass", "seqs", lengths=lg, vocab=["<pad>", "<unk>", "a"])


def test_subset_and_split_carry_lengths_and_vocab():
    ds = seq_data()
    tr, va = ds.split(0.25, seed=0)
    for part in (tr, va):
        assert part.vocab == ds.vocab and part.lengths is not None
    idx = np.array([3, 0, 7])
    sub = ds.subset(idx)
    assert np.array_equal(sub.lengths, ds.lengths[idx]) and np.array_equal(sub.mask(), lengths_mask(ds.lengths[idx], 5))


def test_chronological_split_keeps_time_order():
    x = np.arange(20, dtype=np.float32).reshape(10, 2, 1)
    ds = Dataset(x, np.arange(10.0), "regression", "s", lengths=np.full(10, 2), chrono=True)
    tr, va = ds.split(0.3)
    assert tr.y[:, 0].tolist() == list(range(7)) and va.y[:, 0].tolist() == [7, 8, 9]


def test_bad_lengths_are_a_clear_error():
    from engine.errors import DataError
    with pytest.raises(DataError, match="lengths must be whole numbers 1…5"):
        Dataset(np.zeros((2, 5, 1)), [0, 1], "binary", "s", lengths=np.array([0, 5]))


def per_step_graph(t=5, f=2, c=3):
    g = Graph()
    g.chain(("x", "Input", {"shape": [t, f]}), ("d", "Dense", {"units": c}), ("s", "Softmax", {}))
    return g


def test_trainer_feeds_the_mask_and_padding_never_counts():
    ds = seq_data(per_step=True)
    cfg = training_config({"loss": "cce", "batch_size": 4, "epochs": 1})
    tr = Trainer(Model(per_step_graph(), dtype=np.float64), cfg, ds)
    assert tr.fast is None                                              # masks: the per-layer path
    seen = []
    orig = tr.model.forward
    tr.model.forward = lambda x, **k: (seen.append(k.get("mask")), orig(x, **k))[1]
    loss, acc = tr.evaluate(ds)
    assert all(m is not None and m.shape == (len(ds), 5) for m in seen)
    noisy = Dataset(ds.x.copy(), ds.y.copy(), "multiclass", "seqs", lengths=ds.lengths)
    noisy.x[~ds.mask()] = 1e3                                           # garbage in padded steps
    assert tr.evaluate(noisy) == pytest.approx((loss, acc), rel=1e-12)
    out = Model.predict(tr.model, ds.x, lengths=ds.lengths)
    m = ds.mask()
    assert acc == pytest.approx(np.mean(np.argmax(out, 2)[m] == ds.y[m]))   # per-token accuracy
    tr.train_step(ds.x[:4], ds.y[:4], ds.mask(slice(0, 4)))
    assert np.array_equal(tr.model.masks["d"], ds.mask(slice(0, 4)))


def test_clip_norm_scales_the_gradient_to_the_global_norm():
    ds = seq_data()
    g = Graph()
    g.chain(("x", "Input", {"shape": [5, 2]}), ("f", "Flatten", {}), ("d", "Dense", {"units": 3}),
            ("s", "Softmax", {}))
    cfg = training_config({"loss": "cce", "optimizer": "sgd", "lr": 1.0, "clip_norm": 0.01})
    m = Model(g, dtype=np.float64)
    tr = Trainer(m, cfg, Dataset(ds.x, ds.y, "multiclass", "flat"))
    assert tr.fast is None
    before = m.theta.copy()
    _, _, gn = tr.train_step(ds.x, ds.y)
    assert np.sqrt(gn) > 0.01
    assert np.linalg.norm(m.theta - before) == pytest.approx(0.01, rel=1e-9)      # step = lr · clipped g


# ---- regression in original units ----
def regression_csv(tmp_path, n=300):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    y = 20000 + 8000 * x[:, 0] - 3000 * x[:, 1] + rng.normal(0, 500, n)          # ~1e4-scale target
    p = tmp_path / "houses.csv"
    p.write_text("a,b,c,price\n" + "\n".join(",".join(f"{v:.6g}" for v in (*r, t)) for r, t in zip(x, y)))
    return p


def regression_project(tmp_path):
    from engine.project import Project
    g = Graph()
    g.chain(("x", "Input", {"shape": [3], "standardize": True}), ("h", "Dense", {"units": 8}),
            ("r", "ReLU", {}), ("out", "Dense", {"units": 1}))
    p = Project(g, training_config({"loss": "mse", "epochs": 30, "batch_size": 32, "lr": 0.01}),
                {"kind": "csv", "path": str(regression_csv(tmp_path)), "target": "price"})
    p.save(tmp_path / "houses.json")
    return p


def test_regression_metrics_are_in_the_targets_units(tmp_path):
    from engine.session import prepare
    model, tr = prepare(regression_project(tmp_path))
    seen = []
    tr.subscribe(lambda ev: seen.append(ev) if ev.kind == "epoch_end" else None)
    res = tr.run()
    assert model.data["y_mean"][0] == pytest.approx(tr.train.y.mean(), rel=1e-5)  # training statistics
    pred = model.predict(tr.val.x)
    err = pred - tr.val.y
    assert np.abs(pred.mean() - 20000) < 2000                                    # original units
    assert res["val_rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-4)
    assert res["val_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-4)
    sst = np.sum((tr.val.y - tr.val.y.mean()) ** 2)
    assert res["val_r2"] == pytest.approx(1 - np.sum(err ** 2) / sst, rel=1e-4) and res["val_r2"] > 0.8
    assert res["val_rmse"] < 2000                                               # learnt (noise is 500)
    for k in ("train_rmse", "val_rmse", "train_mae", "val_mae", "train_r2", "val_r2"):
        assert len(tr.history[k]) == 30 and k in seen[-1].data and k in res
    assert tr.history["val_rmse"][-1] < tr.history["val_rmse"][0]


def test_train_json_carries_rmse_and_weights_predict_in_units(tmp_path):
    regression_project(tmp_path)
    cmd = [sys.executable, "-m", "engine.cli"]
    r = subprocess.run(cmd + ["train", str(tmp_path / "houses.json"), "--json", "--epochs", "3",
                              "--out", str(tmp_path / "w.npz")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(s) for s in r.stdout.splitlines()]                      # strict JSON (no NaN)
    assert "NaN" not in r.stdout and "Infinity" not in r.stdout
    assert all("val_rmse" in d and "train_mae" in d for d in lines)
    x = np.random.default_rng(5).normal(size=(7, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run(cmd + ["predict", str(tmp_path / "houses.json"), "--weights", str(tmp_path / "w.npz"),
                              "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert np.abs(np.load(tmp_path / "y.npy").mean() - 20000) < 8000                # original units, not ~0


def test_an_unmasked_forward_after_a_masked_one_leaves_no_mask_behind():
    """Unmasked steps take the masks worked out once from the graph (Model._unmasked): every layer's in_masks and
    every node's mask are None again after a masked forward, and the output is a fresh model's."""
    m, fresh = Model(seq_graph(), dtype=np.float64, seed=0), Model(seq_graph(), dtype=np.float64, seed=0)
    x = np.random.default_rng(1).normal(size=(4, 5, 3))
    mask = np.arange(5)[None, :] < np.array([5, 3, 1, 4])[:, None]
    for _ in range(2):
        m.forward(x, training=False, mask=mask)
        assert m.masks["add"] is not None and m.layers["add"].in_masks[0] is not None
        y = m.forward(x, training=False)
        assert all(v is None for v in m.masks.values())
        assert all(v is None for n in m.order for v in m.layers[n].in_masks)
        np.testing.assert_array_equal(y, fresh.forward(x, training=False))
