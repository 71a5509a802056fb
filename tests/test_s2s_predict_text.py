"""`layerboard predict`: --text is always a text itself (repeatable) and --input FILE always a file, for text
classifiers as for translation; the old classifier form `--text FILE` still works with a one-line note."""
import numpy as np
import pytest

from engine import Graph, cli
from engine.data import load
from engine.model import Model
from engine.project import Project
from engine.session import describe
from engine.weights import save

ROWS = [("good tasty fresh", 1), ("bad stale awful", 0), ("fresh good", 1), ("awful bad", 0)]


@pytest.fixture
def classifier(tmp_path):
    """(project path, weights path) of a word-level text classifier whose weights carry the vocabulary."""
    (tmp_path / "r.csv").write_text("review,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS), encoding="utf-8")
    ref = {"kind": "text", "path": "r.csv", "text": "review", "target": "label", "level": "word", "max_len": 5}
    ds = load(ref, tmp_path)
    g = Graph()
    g.chain(("ids", "Input", {"shape": [5], "standardize": False}),
            ("emb", "Embedding", {"vocab": len(ds.vocab), "dim": 4}), ("pool", "GlobalAveragePool", {}),
            ("fc", "Dense", {"units": 2}), ("p", "Softmax", {}))
    Project(graph=g, dataset=ref).save(tmp_path / "c.json")
    m = Model(g, seed=0)
    describe(m, ds)
    save(tmp_path / "w.npz", m)
    return str(tmp_path / "c.json"), str(tmp_path / "w.npz")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_text_is_the_text_itself_and_repeatable(classifier, capsys, tmp_path):
    proj, w = classifier
    code, out, err = run(capsys, "predict", proj, "--weights", w, "--text", "good fresh", "--text", "awful stale")
    assert code == 0, err
    assert [ln.split(":")[0] for ln in out.splitlines()] == ["text 1", "text 2"]
    code, out, err = run(capsys, "predict", proj, "--weights", w, "--text", "good fresh", "--output",
                         str(tmp_path / "y.npy"))
    assert code == 0 and np.load(tmp_path / "y.npy").shape == (1, 2)


def test_input_file_of_texts_and_the_old_form_with_a_note(classifier, capsys, tmp_path):
    proj, w = classifier
    f = tmp_path / "t.txt"
    f.write_text("good fresh\n\nawful stale\n", encoding="utf-8")
    code, new, err = run(capsys, "predict", proj, "--weights", w, "--input", str(f))
    assert code == 0 and err == "" and len(new.splitlines()) == 2                    # the blank line is skipped
    code, old, err = run(capsys, "predict", proj, "--weights", w, "--text", str(f))
    assert code == 0 and old == new and new.startswith("line 1:")
    assert len(err.strip().splitlines()) == 1 and "deprecated" in err and f"--input {f}" in err
    code, lit, _ = run(capsys, "predict", proj, "--weights", w, "--text", "good fresh", "--text", "awful stale")
    assert [ln.split(": ")[1] for ln in lit.splitlines()] == [ln.split(": ")[1] for ln in new.splitlines()]


def test_texts_that_cannot_be_read_give_one_line(classifier, capsys, tmp_path):
    proj, w = classifier
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    code, _, err = run(capsys, "predict", proj, "--weights", w, "--input", str(tmp_path / "bad.txt"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not UTF-8" in err
    code, _, err = run(capsys, "predict", proj, "--weights", w)
    assert code == 2 and "--text" in err and "--input" in err
    code, _, err = run(capsys, "predict", proj, "--weights", w, "--text", "good", "--input", str(tmp_path / "bad.txt"))
    assert code == 2 and "not both" in err
