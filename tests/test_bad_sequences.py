"""Variable-length sequences from .npz (x, y, lengths) checked like the plain .npz: every bad file is one line
naming the file, array, sample and step, with advice that fits; `layerboard train` and `predict --lengths`
print it without a traceback and leave the user's files as they were (issue 20, item 5)."""
import io
import os

import numpy as np
import pytest

from engine import DataError, Graph, cli
from engine.data import load
from engine.model import Model
from engine.project import Project, training_config
from engine.weights import save

N, T = 6, 5
LENGTHS = np.array([5, 3, 1, 4, 2, 5])


def npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def good(**change):
    a = {"x": np.random.default_rng(0).normal(size=(N, T, 2)).astype(np.float32), "y": np.array([0, 1, 2, 1, 0, 2]),
         "lengths": LENGTHS.copy()}
    a.update(change)
    return a


def edited(key, fn, **change):
    a = good(**change)
    a[key] = a[key].copy()
    fn(a[key])
    return npz(**a)


def ids(**kw):
    """(N, T) integer token ids 2 … 8, 0 at padded steps."""
    x = np.random.default_rng(1).integers(2, 9, (N, T))
    x[np.arange(T)[None, :] >= LENGTHS[:, None]] = 0
    return x


def setitem(i, v):
    def f(a):
        a[i] = v
    return f


CASES = [   # id, file bytes, extra reference options, expected text
    ("nan-x", edited("x", setitem((2, 0, 1), np.nan)), {},
     "array 'x', sample 2, step 0: NaN or infinity (1 of 6 samples hold some)"),
    ("inf-x-padded-step", edited("x", setitem((2, 3, 0), np.inf)), {},
     "array 'x', sample 2, step 3: NaN or infinity (1 of 6 samples hold some); it is a padded step (length 1): "
     "fill padding with 0"),
    ("nan-y-per-step", npz(**good(y=np.where(np.arange(30).reshape(6, 5) == 20, np.nan, 0.5))), {},
     "array 'y', sample 4, step 0: NaN or infinity"),
    ("label-1e9", edited("y", setitem(3, 1e9), y=np.array([0, 1, 2, 1, 0, 2.0])), {},
     "array 'y', sample 3: the label 1,000,000,000 means 1,000,000,001 classes for 6 samples (at most 60 here)"),
    ("negative-label", edited("y", setitem(1, -1)), {}, "array 'y', sample 1: the label -1 is negative"),
    ("fractional-label", edited("y", setitem(4, 0.5), y=np.zeros(N)), {"task": "multiclass"},
     "array 'y', sample 4: the label 0.5 is not a whole number"),
    ("negative-label-per-step", edited("y", setitem((3, 1), -4), y=np.zeros((N, T), int)), {},
     "array 'y', sample 3, step 1: the label -4 is negative"),
    ("negative-token-id", edited("x", setitem((3, 2), -3), x=ids()), {},
     "array 'x', sample 3, step 2: token id -3 is negative; token ids are 0 (padding), 1 (unknown), 2 … V−1"),
    ("huge-token-id", edited("x", setitem((0, 4), 10**9), x=ids()), {},
     "array 'x', sample 0, step 4: token id 1,000,000,000 means a vocabulary of 1,000,000,001 tokens"),
    ("length-0", edited("lengths", setitem(2, 0)), {}, "array 'lengths', sample 2: length 0 is not in 1…5"),
    ("length-too-long", edited("lengths", setitem(4, 9)), {},
     "array 'lengths', sample 4: length 9 is not in 1…5; lengths must be whole numbers 1…5"),
    ("length-fraction", edited("lengths", setitem(1, 2.5), lengths=LENGTHS.astype(float)), {},
     "array 'lengths', sample 1: length 2.5 is not in 1…5"),
    ("length-nan", edited("lengths", setitem(5, np.nan), lengths=LENGTHS.astype(float)), {},
     "array 'lengths', sample 5: length nan is not in 1…5"),
    ("lengths-shape", npz(**good(lengths=LENGTHS[:, None])), {}, "array 'lengths': one length per sample is 6 values"),
    ("targets-count", npz(**good(y=np.zeros(N - 1, int))), {}, "array 'x' holds 6 samples but"),
    ("zero-samples", npz(x=np.zeros((0, T, 2)), y=np.zeros(0), lengths=np.zeros(0, int)), {},
     "array 'x' holds no samples"),
    ("truncated", npz(**good())[:700], {}, "damaged or not an .npy/.npz file"),
    ("npy-named-npz", None, {}, "holds a single .npy array, not an .npz archive with arrays 'x', 'y', 'lengths'; "
                                "save x, y and lengths with numpy.savez('s.npz', x=…, y=…, lengths=…)"),
    ("empty-file", b"", {}, "s.npz is empty (0 bytes)"),
    ("no-lengths-array", npz(x=good()["x"], y=good()["y"]), {}, "no array named 'lengths'; it holds x, y"),
    ("object-array", None, {}, "array 'y': not a plain numeric array file"),
    ("text-file", b"x,y\n1,2\n", {}, "is not an .npy or .npz file"),
]


def write_case(tmp_path, name, data):
    f = tmp_path / "s.npz"
    if name == "npy-named-npz":
        np.save(tmp_path / "s.npy", good()["x"])
        os.replace(tmp_path / "s.npy", f)
    elif name == "object-array":
        np.savez(f, x=good()["x"], y=np.array([0, "a", None, 1, 0, 2], dtype=object), lengths=LENGTHS)
    else:
        f.write_bytes(data)
    return f


def project(tmp_path, dataset):
    g = Graph()
    g.add_node("Input", "in", {"shape": [T, 2]})
    g.add_node("RNN", "rnn", {"units": 4})
    g.add_node("Dense", "out", {"units": 3})
    g.add_node("Softmax", "p")
    for a, b in (("in", "rnn"), ("rnn", "out"), ("out", "p")):
        g.connect(a, b)
    p = Project(graph=g, dataset=dataset, training=training_config({"epochs": 1, "loss": "cce"}))
    p.save(tmp_path / "p.json")
    return tmp_path / "p.json"


def fingerprint(f):
    return f.read_bytes(), f.stat().st_mtime_ns


def one_line(capsys, cmd):
    err = capsys.readouterr().err
    assert err.startswith(f"layerboard {cmd}: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("name,data,opts,want", CASES, ids=[c[0] for c in CASES])
def test_bad_sequence_file_is_one_line(tmp_path, capsys, monkeypatch, name, data, opts, want):
    f = write_case(tmp_path, name, data)
    ref = {"kind": "npz", "path": "s.npz", "lengths": "lengths", **opts}
    before = fingerprint(f)
    with pytest.raises(DataError) as e:
        load(ref, base=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "s.npz" in msg and want in msg, msg
    assert "raise its vocab" not in msg
    monkeypatch.setattr("engine.trainer.Trainer.run", lambda self: pytest.fail("training started"))
    assert cli.main(["train", str(project(tmp_path, ref))]) == 2
    assert want in one_line(capsys, "train")
    assert fingerprint(f) == before                                        # the user's file is unchanged


def test_what_is_not_refused(tmp_path):
    """Labels and NaN only count where they are read: a negative per-step label at a padded step becomes 0,
    and padded token ids of 0 with the largest id below the cap give a vocabulary up to that id."""
    y = np.zeros((N, T), int)
    y[2, 3] = -5                                                            # sample 2 has length 1
    (tmp_path / "a.npz").write_bytes(npz(**good(y=y)))
    ds = load({"kind": "npz", "path": "a.npz", "lengths": "lengths"}, base=tmp_path)
    assert ds.per_step and ds.y[2, 3] == 0 and ds.task == "binary"
    x = ids()
    x[0, 0] = 999_999
    (tmp_path / "b.npz").write_bytes(npz(**good(x=x)))
    ds = load({"kind": "npz", "path": "b.npz", "lengths": "lengths"}, base=tmp_path)
    assert len(ds.vocab) == 1_000_000 and ds.vocab[:3] == ["<pad>", "<unk>", "2"]
    (tmp_path / "c.npz").write_bytes(npz(**good(y=np.array([0, 1, 2, 3, 4, 59.0]))))   # 60 classes, 6 samples: allowed
    assert load({"kind": "npz", "path": "c.npz", "lengths": "lengths"}, base=tmp_path).n_classes == 60


# ---- layerboard predict --lengths ----
@pytest.fixture
def trained(tmp_path):
    p = project(tmp_path, {"kind": "npz", "path": "s.npz", "lengths": "lengths"})
    save(tmp_path / "w.npz", Model(Project.load(p).graph))
    np.save(tmp_path / "x.npy", good()["x"])
    return p


@pytest.mark.parametrize("lengths,want", [
    ("npz", "lg.npz is an .npz archive, not a single .npy array; --lengths takes an .npy file of one whole number "
            "per input row"),
    (np.array([5, 3, 0, 4, 2, 5]), "--lengths {f}, sample 2: length 0 is not in 1…5"),
    (np.array([5, 3, 1, 4, 2, 6]), "--lengths {f}, sample 5: length 6 is not in 1…5"),
    (np.array([5, 3, 1.5, 4, 2, 5]), "--lengths {f}, sample 2: length 1.5 is not in 1…5"),
    (np.array([5, 3, 1]), "--lengths {f}: one length per input row is 6 values, got shape (3,)"),
    (b"", "lg.npy is empty (0 bytes)"),
])
def test_bad_lengths_for_predict(tmp_path, capsys, trained, lengths, want):
    f = tmp_path / ("lg.npz" if isinstance(lengths, str) else "lg.npy")
    if isinstance(lengths, str):
        np.savez(f, lengths=LENGTHS)
    elif isinstance(lengths, bytes):
        f.write_bytes(lengths)
    else:
        np.save(f, lengths)
    (tmp_path / "out.npy").write_bytes(b"previous predictions")
    before, out = fingerprint(f), fingerprint(tmp_path / "out.npy")
    assert cli.main(["predict", str(trained), "--weights", str(tmp_path / "w.npz"), "--input",
                     str(tmp_path / "x.npy"), "--lengths", str(f), "--output", str(tmp_path / "out.npy")]) == 2
    assert want.format(f=f) in one_line(capsys, "predict")
    assert fingerprint(f) == before and fingerprint(tmp_path / "out.npy") == out


def test_good_lengths_for_predict(tmp_path, capsys, trained):
    np.save(tmp_path / "lg.npy", LENGTHS)
    assert cli.main(["predict", str(trained), "--weights", str(tmp_path / "w.npz"), "--input",
                     str(tmp_path / "x.npy"), "--lengths", str(tmp_path / "lg.npy"), "--output",
                     str(tmp_path / "out.npy")]) == 0
    y = np.load(tmp_path / "out.npy")
    assert y.shape == (N, 3) and np.all(np.isfinite(y))


def test_predict_refuses_nan_input_and_negative_token_ids_in_one_line(tmp_path, capsys, trained):
    x = good()["x"]
    x[4, 2, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    argv = ["predict", str(trained), "--weights", str(tmp_path / "w.npz"), "--output", str(tmp_path / "o.npy")]
    assert cli.main(argv + ["--input", str(tmp_path / "nan.npy")]) == 2
    assert f"--input {tmp_path / 'nan.npy'}, sample 4, step 2: NaN or infinity (1 of 6 samples hold some)" in \
        one_line(capsys, "predict")
    g = Graph()
    g.add_node("Input", "in", {"shape": [T]})
    g.add_node("Embedding", "embed", {"vocab": 9, "dim": 3})
    g.add_node("TimePool", "pool", {"mode": "mean"})
    g.connect("in", "embed")
    g.connect("embed", "pool")
    Project(graph=g).save(tmp_path / "e.json")
    save(tmp_path / "e.npz", Model(g))
    x = ids()
    x[1, 2] = -3
    np.save(tmp_path / "ids.npy", x)
    assert cli.main(["predict", str(tmp_path / "e.json"), "--weights", str(tmp_path / "e.npz"), "--input",
                     str(tmp_path / "ids.npy"), "--output", str(tmp_path / "o.npy")]) == 2
    err = one_line(capsys, "predict")
    assert "found -3 at batch row 1, step 2; negative ids are an error in the data" in err and "raise" not in err
    assert not (tmp_path / "o.npy").exists()
