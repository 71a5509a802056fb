"""Sequence data: series windows with a chronological split, npz with lengths, text with a training-only
vocabulary; one-line errors naming file and row; shipped real data; the examples train a few steps."""
import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from engine.data import load
from engine.errors import DataError
from engine.project import Project
from engine.session import prepare
from resources import path

EXAMPLES = {n: path("examples", f"{n}.json") for n in ("temperature-rnn", "reviews-rnn", "temperature-seq2seq-rnn")}


def series_csv(tmp_path, n=40, text=None):
    p = tmp_path / "s.csv"
    rows = text or "time,temp,hum\n" + "\n".join(f"2024-01-01T{h // 60:02d}:{h % 60:02d},{np.sin(h / 5):.4f},{h % 7}"
                                                 for h in range(n))
    p.write_text(rows)
    return p


def test_series_windows_targets_and_persistence(tmp_path):
    ds = load({"kind": "series", "path": str(series_csv(tmp_path)), "target": "temp", "features": ["temp", "hum"],
               "window": 5, "horizon": 2})
    temp = np.sin(np.arange(40) / 5)
    assert ds.x.shape == (40 - 5 - 2 + 1, 5, 2) and ds.chrono and np.all(ds.lengths == 5)
    np.testing.assert_allclose(ds.x[3, :, 0], temp[3:8], atol=1e-4)
    np.testing.assert_allclose(ds.y[3, 0], temp[3 + 5 + 2 - 1], atol=1e-4)       # horizon rows after the window
    np.testing.assert_allclose(ds.baseline[3, 0], temp[7], atol=1e-4)            # the last value seen


def test_chronological_split_leaves_no_window_straddling(tmp_path):
    ds = load({"kind": "series", "path": str(series_csv(tmp_path)), "target": "temp", "window": 5, "horizon": 1})
    tr, va = ds.split(0.25)                         # window i covers rows i … i+4, its target row i+5
    assert len(ds) == 35 and len(va) == 9 and len(tr) + len(va) + 5 == len(ds)
    assert (len(tr) - 1) + 5 < len(ds) - len(va)   # the last training target row comes before the first validation row
    np.testing.assert_allclose(va.x[0, 0, 0], np.sin((len(ds) - len(va)) / 5), atol=1e-4)


def test_series_features_are_standardised_with_training_statistics_only(tmp_path):
    p = Project.load(EXAMPLES["temperature-rnn"])
    p.training["epochs"] = 1
    ds = load(p.dataset, p.base)
    model, tr = prepare(p, data=ds)
    m = tr.train.x.reshape(-1, tr.train.x.shape[-1]).mean(0)
    np.testing.assert_allclose(model.data["x_mean"], m, rtol=1e-4, atol=1e-4)
    all_mean = ds.x.reshape(-1, ds.x.shape[-1]).mean(0)
    assert not np.allclose(model.data["x_mean"][0], all_mean[0], rtol=1e-3)      # validation not included


@pytest.mark.parametrize("text,match", [
    ("time,temp\n1,2\n2,x\n3,4\n4,5\n", r"s\.csv, line 3, column 'temp': 'x' is not a number"),
    ("time,temp\n1,2\n2,3\n", r"s\.csv: 2 data rows are too few for one window: window 3 \+ horizon 1 needs at least 4"),
    ("time,temp\n2024-01-01 01:00,2\n2024-01-01 03:00,3\n2024-01-01 02:00,4\n2024-01-01 04:00,5\n2024-01-01 05:00,5\n",
     r"s\.csv, line 4: time stamp '2024-01-01 02:00' is not after the previous row's"),
])
def test_series_errors_are_one_line_naming_file_and_row(tmp_path, text, match):
    p = series_csv(tmp_path, text=text)
    with pytest.raises(DataError, match=match) as e:
        load({"kind": "series", "path": str(p), "target": "temp", "window": 3, "horizon": 1})
    assert "\n" not in str(e.value)


def test_cli_names_the_bad_row_without_traceback(tmp_path):
    p = series_csv(tmp_path, text="time,temp\n1,2\n3,2\n2,4\n4,5\n5,6\n6,7\n")
    proj = Project.load(EXAMPLES["temperature-rnn"])
    proj.dataset = {"kind": "series", "path": str(p), "target": "temp", "window": 2, "horizon": 1}
    proj.save(tmp_path / "p.json")
    r = subprocess.run([sys.executable, "-m", "engine.cli", "train", str(tmp_path / "p.json")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "s.csv, line 4" in r.stderr


def test_npz_sequences_with_lengths(tmp_path):
    rng = np.random.default_rng(0)
    lg = np.array([3, 5, 1, 4])
    x = rng.normal(size=(4, 5, 2)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x=x, y=np.array([0, 1, 2, 1]), lengths=lg)
    ds = load({"kind": "npz", "path": str(tmp_path / "s.npz"), "x": "x", "y": "y", "lengths": "lengths"})
    assert ds.task == "multiclass" and np.array_equal(ds.lengths, lg) and ds.n_classes == 3
    np.savez(tmp_path / "t.npz", x=rng.integers(0, 9, (4, 5)), y=rng.integers(0, 3, (4, 5)), lengths=lg)
    ds = load({"kind": "npz", "path": str(tmp_path / "t.npz"), "lengths": "lengths"})
    assert ds.per_step and ds.y.shape == (4, 5) and np.all(ds.y[2, 1:] == 0) and ds.vocab[:2] == ["<pad>", "<unk>"]
    np.savez(tmp_path / "r.npz", x=x, y=rng.normal(size=(4, 5)), lengths=lg)
    ds = load({"kind": "npz", "path": str(tmp_path / "r.npz"), "lengths": "lengths"})
    assert ds.task == "regression" and ds.y.shape == (4, 5, 1) and ds.per_step
    np.savez(tmp_path / "bad.npz", x=x, y=np.zeros(4), lengths=np.array([3, 9, 1, 1]))
    with pytest.raises(DataError, match=r"lengths must be whole numbers 1…5"):
        load({"kind": "npz", "path": str(tmp_path / "bad.npz"), "lengths": "lengths"})


def test_text_vocabulary_comes_from_the_training_split_only(tmp_path):
    p = tmp_path / "t.csv"
    rows = [f"common words here {'trainonly' if i % 5 else 'zzz'},{'pos' if i % 2 else 'neg'}" for i in range(40)]
    p.write_text("review,label\n" + "\n".join(rows))
    ds = load({"kind": "text", "path": str(p), "text": "review", "target": "label", "max_len": 6, "vocab": 50})
    assert ds.x.shape == (40, 6) and ds.lengths.max() == 4 and ds.classes == ["neg", "pos"]
    tr, va = ds.split(0.5, seed=0)
    seen = {t for ts in tr.tokens for t in ts}
    assert set(tr.vocab[2:]) == seen and tr.vocab is va.vocab
    unk = [i for i, ts in enumerate(va.tokens) if any(t not in seen for t in ts)]
    assert all(1 in va.x[i] for i in unk)                                      # unseen words → <unk>


def test_shipped_real_data():
    """Real observations (not smoothed normals): hourly steps, irregular weather, gzip under 2 MB; real reviews."""
    ds = load({"kind": "series", "path": str(path("data", "ewr-weather-2013.csv.gz")), "target": "temp",
               "features": ["temp"], "window": 2, "horizon": 1})
    t = np.r_[ds.x[:, 0, 0], ds.x[-1, 1, 0]]
    assert len(t) > 8000 and 5 < t.std() < 30
    d = np.diff(t)
    assert np.mean(d == 0) > 0.05 and np.abs(d).max() > 8                   # instrument steps and fronts
    for f in ("ewr-weather-2013.csv.gz", "fine-food-reviews.csv.gz"):
        assert path("data", f).stat().st_size < 2_000_000 and f in path("data", "LICENSES.md").read_text()
    text = gzip.decompress(path("data", "fine-food-reviews.csv.gz").read_bytes()).decode()
    assert text.count("\n") >= 5000 and "great" in text


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_train_a_few_steps(name):
    p = Project.load(EXAMPLES[name])
    p.training["epochs"] = 1
    model, tr = prepare(p)
    seen, taps = [], []
    rnn = model.layers["rnn"]

    def on(ev):
        if ev.kind == "batch_end":
            seen.append(ev.data["loss"])
            taps.append((rnn.taps["hidden"].shape, rnn.taps["grad_hidden"].shape))
            if len(seen) == 3:
                tr.stop()
    tr.subscribe(on)
    tr.run()
    assert tr.step == 3 and np.all(np.isfinite(seen))
    b, t, h = tr.batch_size, model.input_shape[0], rnn.config["units"]
    assert taps == [((b, t, h), (b, t, h))] * 3


def test_train_prints_persistence_and_predict_reads_raw_text(tmp_path):
    for n in ("temperature-rnn", "reviews-rnn"):
        d = json.loads(EXAMPLES[n].read_text())
        d["dataset"]["path"] = str(path("data", d["dataset"]["path"].split("/")[-1]))
        d["training"]["epochs"] = 1
        if n == "reviews-rnn":
            d["graph"]["nodes"][0]["config"]["shape"] = [20]
            d["dataset"]["max_len"] = 20
        (tmp_path / f"{n}.json").write_text(json.dumps(d))
    cmd = [sys.executable, "-m", "engine.cli"]
    r = subprocess.run(cmd + ["train", str(tmp_path / "temperature-rnn.json"), "--json"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.splitlines()[-1])
    assert last["baseline_val_rmse"] > 0.5 and last["val_rmse"] > 0
    r = subprocess.run(cmd + ["train", str(tmp_path / "reviews-rnn.json"), "--out", str(tmp_path / "w.npz")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (tmp_path / "t.txt").write_text("I love it, delicious and fresh\nawful, stale, never again\n")
    r = subprocess.run(cmd + ["predict", str(tmp_path / "reviews-rnn.json"), "--weights", str(tmp_path / "w.npz"),
                              "--text", str(tmp_path / "t.txt"), "--output", str(tmp_path / "y.npy")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (2, 2) and np.allclose(y.sum(1), 1, atol=1e-5) and "line 1:" in r.stdout
