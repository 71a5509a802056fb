"""The reverse-transformer example learns to reverse variable-length token sequences; its last attention is anti-diagonal."""
import numpy as np

from engine.data.builtin import reverse
from engine.project import Project
from engine.session import prepare
from resources import path

EXAMPLE = str(path("examples", "reverse-transformer.json"))


def test_reverse_dataset_targets_are_the_valid_tokens_reversed():
    d = reverse(n=50, seed=3)
    assert d.per_step and d.vocab[0] == "<pad>" and d.n_classes == 12
    assert len(set(d.lengths.tolist())) > 3                                    # lengths vary within a batch
    for x, y, n in zip(d.x.astype(int), d.y, d.lengths):
        assert list(y[:n]) == list(x[:n][::-1]) and not x[n:].any() and not y[n:].any()
        assert x[:n].min() >= 2


def test_short_training_reverses_and_attention_turns_anti_diagonal():
    p = Project.load(EXAMPLE)
    p.training["epochs"] = 4                                                   # the example runs 10
    p.dataset["n"] = 3000
    model, tr = prepare(p, seed=0)
    res = tr.run()
    assert res["status"] == "completed"
    assert res["val_accuracy"] > 0.9                                           # per token, valid steps only
    v = tr.val
    model.forward(v.x[:200], mask=v.mask(np.arange(200)))
    a = model.layers["attention2"].taps["attention"]                          # (B, heads, T, T)
    lengths = v.lengths[:200]
    anti, rest = [], []
    for b, n in enumerate(lengths):
        blk = a[b, :, :n, :n]                                                  # (heads, n, n) valid block
        np.testing.assert_allclose(blk.sum(-1), 1.0, rtol=1e-5)
        assert not a[b, :, :, n:].any() and not a[b, :, n:, :].any()           # padding neither attends nor is attended
        flip = blk[:, np.arange(n), n - 1 - np.arange(n)]                       # α_{t → n−1−t}
        anti.append(flip.mean(-1))
        rest.append((blk.sum((-1, -2)) - flip.sum(-1)) / max(n * n - n, 1))
    anti, rest = np.mean(anti, 0), np.mean(rest, 0)                             # per head
    assert np.all(anti > 0.5), anti                                            # most weight on the anti-diagonal
    assert np.all(anti > 5 * rest), (anti, rest)


def test_cli_predict_writes_attention_per_node(tmp_path):
    import subprocess
    import sys

    from engine.model import Model
    from engine.weights import save
    model = Model(Project.load(EXAMPLE).graph, seed=2)
    save(tmp_path / "w.npz", model)
    d = reverse(n=300, seed=5)                                                  # > one predict batch of 256
    np.save(tmp_path / "x.npy", d.x)
    np.save(tmp_path / "L.npy", d.lengths)
    args = [sys.executable, "-m", "engine.cli", "predict", EXAMPLE, "--weights", str(tmp_path / "w.npz"),
            "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
            "--attention", str(tmp_path / "a.npz"), "--lengths", str(tmp_path / "L.npy")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    mask = np.arange(10)[None, :] < d.lengths[:, None]
    with np.load(tmp_path / "a.npz") as f:
        assert sorted(f.files) == ["attention1", "attention2"]
        a = f["attention2"]
    assert a.shape == (300, 2, 10, 10)
    want_y = model.forward(d.x[256:], mask=mask[256:])
    np.testing.assert_allclose(model.layers["attention2"].taps["attention"], a[256:], atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy")[256:], want_y, atol=1e-6)
    for b, n in enumerate(d.lengths):
        np.testing.assert_allclose(a[b, :, :n].sum(-1), 1.0, rtol=1e-5)
        assert not a[b, :, :, n:].any()
    bad = args[:-1] + [str(tmp_path / "x.npy")]                               # lengths file of the wrong kind
    r = subprocess.run(bad, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "one length per input row is 300 values" in r.stderr and "Traceback" not in r.stderr


def test_onnx_export_of_the_example_runs_with_mixed_lengths():
    import onnx
    import onnxruntime as ort

    from engine.model import Model
    from engine.onnx_export import to_onnx
    model = Model(Project.load(EXAMPLE).graph, seed=4)
    d = reverse(n=40, seed=9)
    mask = np.arange(10)[None, :] < d.lengths[:, None]
    want = model.forward(d.x, mask=mask)
    m = to_onnx(model)
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"tokens": d.x, "lengths": d.lengths.astype(np.int32)})[0]
    assert got.shape == (40, 10, 12)
    np.testing.assert_allclose(got[mask], want[mask], atol=1e-4, rtol=0)


def test_reviews_transformer_example_uses_the_rnn_examples_data():
    """The transformer/RNN comparison is fair: same real reviews, same split, same training settings but lr/epochs."""
    from engine.shapes import errors, infer
    t = Project.load(str(path("examples", "reviews-transformer.json")))
    r = Project.load(str(path("examples", "reviews-rnn.json")))
    assert t.dataset == r.dataset
    assert {k: v for k, v in t.training.items() if k not in ("lr", "epochs")} == \
        {k: v for k, v in r.training.items() if k not in ("lr", "epochs")}
    infos = infer(t.graph)
    assert not errors(infos) and infos["softmax"].shape == (2,)
    assert infos["attention"].params == 4 * 32 * 32 + 4 * 32
