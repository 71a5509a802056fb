"""`layerboard predict --input TABLE`: a new file encoded with the training's column plan, read in blocks,
predictions written as CSV; one clear line for a missing column or a bad cell."""
import json

import numpy as np
import pytest

from engine import data as engine_data
from engine.cli import main
from engine.data import plan as planmod
from engine.weights import load_into


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOARD_CACHE", str(tmp_path / "cache"))


ISLANDS = ["Biscoe", "Dream", "Torgersen"]


def rows(n, seed=0, missing=True):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        bill = f"{30 + rng.normal(5, 3):.2f}" if not (missing and i % 17 == 3) else ""
        isl = ISLANDS[i % 3]
        out.append([bill, isl, f"{rng.normal():.3f}", "Gentoo" if (float(bill or 35) > 35) ^ (isl == "Dream")
                    else "Adelie"])
    return out


def write(path, header, body):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(r) for r in body) + "\n")
    return path


def project(tmp_path, csv_name, shape="auto", task_loss="cce", units=2):
    nodes = [{"name": "x", "type": "Input", "config": {"shape": shape, "standardize": True}},
             {"name": "h", "type": "Dense", "config": {"units": 8}}, {"name": "r", "type": "ReLU", "config": {}},
             {"name": "o", "type": "Dense", "config": {"units": units}},
             {"name": "s", "type": "Softmax", "config": {}}]
    edges = [{"src": a, "dst": b} for a, b in (("x", "h"), ("h", "r"), ("r", "o"), ("o", "s"))]
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"format": "layerboard-project", "version": 1, "graph": {"nodes": nodes, "edges": edges},
                             "training": {"loss": task_loss, "epochs": 3, "batch_size": 16, "lr": 0.01},
                             "dataset": {"kind": "csv", "path": csv_name, "target": "species"}}))
    return p


@pytest.fixture
def trained(tmp_path):
    write(tmp_path / "train.csv", ["bill", "island", "noise", "species"], rows(120))
    p = project(tmp_path, "train.csv")
    w = tmp_path / "w.npz"
    assert main(["train", str(p), "--out", str(w)]) == 0
    return p, w


def test_predict_table_matches_the_model_on_training_encoding(tmp_path, trained, capsys):
    p, w = trained
    new = write(tmp_path / "new.csv", ["noise", "island", "bill"],                  # other order, no target
                [[r[2], r[1], r[0]] for r in rows(40, seed=1, missing=False)])
    before = new.read_bytes()
    out = tmp_path / "pred.csv"
    assert main(["predict", str(p), "--weights", str(w), "--input", str(new), "--output", str(out)]) == 0
    assert "wrote 40 predictions" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0].replace('"', "") == "row,species,p(Adelie),p(Gentoo)"
    assert len(lines) == 41 and new.read_bytes() == before
    got = np.array([[float(v) for v in ln.split(",")[2:]] for ln in lines[1:]])
    assert np.allclose(got.sum(1), 1, atol=1e-5)
    # the training file itself: its rows as the training loader encoded them give the same probabilities
    out2 = tmp_path / "pred2.csv"
    assert main(["predict", str(p), "--weights", str(w), "--input", str(tmp_path / "train.csv"), "--output",
                 str(out2)]) == 0
    got = np.array([[float(v) for v in ln.split(",")[2:]] for ln in out2.read_text().splitlines()[1:]])
    ds = engine_data.load({"kind": "csv", "path": str(tmp_path / "train.csv"), "target": "species"})
    from engine.session import model_for
    from engine.project import Project
    m = model_for(Project.load(p), w)
    load_into(m, w)
    assert [c["name"] for c in m.meta["table"]["columns"]] == ["bill", "island", "noise"]
    whole = np.array([r[0] != "" for r in rows(120)])                # rows without a filled cell
    assert len(got) == 120
    assert np.allclose(m.predict(np.asarray(ds.x))[whole], got[whole], atol=1e-5)


def test_missing_cells_filled_and_unseen_level_noted(tmp_path, trained, capsys):
    p, w = trained
    body = [r[:3] for r in rows(10, seed=2, missing=False)]
    body[4][0] = ""                                      # training had missing bills: filled with its median
    body[6][1] = "Mars"                                  # a level never seen: no level set, one note
    new = write(tmp_path / "new.csv", ["bill", "island", "noise"], body)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(p), "--weights", str(w), "--input", str(new), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 rows have a level of column 'island' not seen in training (first: line 8, 'Mars')" in err
    assert len(out.read_text().splitlines()) == 11


@pytest.mark.parametrize("case,expect", [
    ("no column", "new.csv: no column named 'island'; the model was trained on the columns bill, island, noise"),
    ("bad cell", "new.csv, line 4, column 'bill': 'tall' is not a number"),
    ("no fill", "new.csv, line 3, column 'noise': the value is missing and the training data had no missing"),
])
def test_bad_table_is_one_line(tmp_path, trained, capsys, case, expect):
    p, w = trained
    body = [r[:3] for r in rows(5, seed=3, missing=False)]
    header = ["bill", "island", "noise"]
    if case == "no column":
        header, body = ["bill", "noise"], [[r[0], r[2]] for r in body]
    elif case == "bad cell":
        body[2][0] = "tall"
    else:
        body[1][2] = "NA"
    new = write(tmp_path / "new.csv", header, body)
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", str(p), "--weights", str(w), "--input", str(new), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".layerboard-predict*"))


def test_weights_without_a_plan_say_so(tmp_path):
    with pytest.raises(Exception, match="not trained on a table"):
        planmod.predict_table(type("M", (), {"meta": {}})(), tmp_path / "x.csv", tmp_path / "o.csv")


def test_regression_table_blocks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(planmod, "BLOCK", 7)                 # many blocks
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    write(tmp_path / "r.csv", ["a", "b", "y"], [[f"{u:.4f}", f"{v:.4f}", f"{u - v:.4f}"] for u, v in x])
    nodes = [{"name": "x", "type": "Input", "config": {"shape": [2]}}, {"name": "o", "type": "Dense",
                                                                        "config": {"units": 1}}]
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"format": "layerboard-project", "version": 1,
                             "graph": {"nodes": nodes, "edges": [{"src": "x", "dst": "o"}]},
                             "training": {"loss": "mse", "epochs": 2, "batch_size": 8},
                             "dataset": {"kind": "csv", "path": "r.csv", "target": "y"}}))
    w = tmp_path / "w.npz"
    assert main(["train", str(p), "--out", str(w)]) == 0
    out = tmp_path / "o.csv"
    assert main(["predict", str(p), "--weights", str(w), "--input", str(tmp_path / "r.csv"), "--output",
                 str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].replace('"', "") == "row,y" and len(lines) == 51
    assert [int(ln.split(",")[0]) for ln in lines[1:]] == list(range(1, 51))
