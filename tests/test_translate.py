"""`layerboard predict` for translation projects and the Try-it panel's translation mode (issue 24): typed and
filed source lines are encoded as in training, decoded (greedy or beam) and written as text, and the panel shows
the translation with its cross-attention.

The decoder here is a stand-in engine.seq2seq whose step upper-cases the source letter by letter, so that
every expected output is known; the stand-in is installed per test (monkeypatch), never imported for real."""
import sys
import types

import numpy as np
import pytest

from engine import Graph, cli, tryit
from engine.data import load
from engine.data.pairs import END, SPECIALS
from engine.model import Model
from engine.project import Project
from engine.weights import save

ROWS = ["abc", "cab", "ba", "aabbcc", "c"]


def upper_step(model):
    """step: the target token at step t is the upper-case of source token t, <end> after the source."""
    vocab, tv = model.meta["vocab"], model.meta["target_vocab"]
    to = np.array([tv.index(t.upper()) if t.upper() in tv else 1 for t in vocab])

    def step(src, src_len, prefix):
        t = prefix.shape[1] - 1
        out = np.full((len(src), len(tv)), -9.0)
        for b in range(len(src)):
            out[b, END if t >= src_len[b] else to[int(src[b, t])]] = -0.01
        return out
    return step


def diagonal_alignment(model, src, src_len, out_ids):
    """{node: (B, heads, T, S)}: target step t attends to source step t."""
    s, t = src.shape[1], max(len(o) for o in out_ids) + 1               # the decoded ids, then <end>
    a = np.zeros((len(src), 2, t, s))
    for i in range(t):
        a[:, :, i, min(i, s - 1)] = 1.0
    return {"cross": a}


@pytest.fixture
def stand_in(monkeypatch):
    mod = types.ModuleType("engine.seq2seq")
    mod.model_step, mod.alignment = upper_step, diagonal_alignment
    mod.target_input = lambda model: "ids"                  # its steps bound the generated length
    monkeypatch.setitem(sys.modules, "engine.seq2seq", mod)
    return mod


@pytest.fixture
def project(tmp_path):
    (tmp_path / "p.csv").write_text("src,tgt\n" + "".join(f"{r},{r.upper()}\n" for r in ROWS), encoding="utf-8")
    ref = {"kind": "pairs", "path": "p.csv", "source": "src", "target": "tgt", "tokens": "char"}
    ds = load(ref, tmp_path)
    g = Graph()
    g.chain(("ids", "Input", {"shape": [ds.x.shape[1]], "standardize": False}),
            ("emb", "Embedding", {"vocab": len(ds.vocab), "dim": 4}))
    p = Project(graph=g, dataset=ref)
    p.save(tmp_path / "t.json")
    m = Model(g, seed=0)
    m.meta.update(vocab=ds.vocab, target_vocab=ds.target_vocab, text=ds.text)
    save(tmp_path / "w.npz", m)
    return tmp_path


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_text_line_to_stdout_greedy_and_beam(project, stand_in, capsys):
    base = ["predict", str(project / "t.json"), "--weights", str(project / "w.npz")]
    assert run(capsys, *base, "--text", "abc") == (0, "ABC\n", "")
    code, out, _ = run(capsys, *base, "--text", "cba", "--beam", "3")
    assert (code, out) == (0, "CBA\n")
    assert run(capsys, *base, "--text", "ccc", "--max-len", "2")[1] == "CC\n"         # stopped before <end>


def test_input_file_to_output_file_keeps_lines(project, stand_in, capsys):
    (project / "in.txt").write_text("ab\n\nzzz a\n" + "abcabcabc\n", encoding="utf-8")    # z: unknown; last: too long
    code, out, err = run(capsys, "predict", str(project / "t.json"), "--weights", str(project / "w.npz"),
                         "--input", str(project / "in.txt"), "--output", str(project / "out.txt"))
    assert code == 0 and out == ""
    s = len(max(ROWS, key=len))
    assert (project / "out.txt").read_text(encoding="utf-8").split("\n") == [
        "AB", "", "<unk><unk><unk><unk>A", "ABCABC"[:s], ""]
    assert f"line 4: longer than the {s} source tokens the model reads" in err and "wrote 4 translations" in err


@pytest.mark.parametrize("args,want", [
    (["--text", "a", "--input", "x.txt"], "give --text \"one source sentence\" or --input FILE"),
    ([], "give --text"),
    (["--text", "a", "--beam", "0"], "--beam and --max-len must be whole numbers ≥ 1"),
    (["--input", "bin.txt"], "--input {d}/bin.txt: not UTF-8 text"),
    (["--input", "nope.txt"], "--input {d}/nope.txt: cannot read it"),
    (["--text", "a", "--lengths", "l.npy"], "--lengths is for array inputs"),
    (["--text", "a", "--output", "{d}/missing/o.txt"], "the folder {d}/missing does not exist"),
])
def test_bad_arguments_are_one_line(project, stand_in, capsys, args, want):
    (project / "bin.txt").write_bytes(b"ab\n\xff\xfe\n")
    args = [a.format(d=project) if "{d}" in a else (str(project / a) if a.endswith(".txt") else a) for a in args]
    code, out, err = run(capsys, "predict", str(project / "t.json"), "--weights", str(project / "w.npz"), *args)
    assert code == 2 and out == "" and want.format(d=project) in err and err.count("\n") == 1


def test_weights_without_pairs_vocabularies_are_refused(project, stand_in, capsys):
    m = Model(Project.load(project / "t.json").graph, seed=0)
    save(project / "plain.npz", m)
    code, _, err = run(capsys, "predict", str(project / "t.json"), "--weights", str(project / "plain.npz"),
                       "--text", "ab")
    assert code == 2 and "not trained on sentence pairs" in err


def test_tryit_translation_and_its_alignment(project, stand_in):
    from engine.weights import load_into
    m = Model(Project.load(project / "t.json").graph)
    load_into(m, project / "w.npz")
    r = tryit.translation(m, "bca")
    assert r["text"] == "BCA" and r["source_tokens"] == list("bca") and r["target_tokens"] == list("BCA") + ["<end>"]
    assert r["maps"]["cross"].shape == (2, 4, 3)
    assert tryit.translation(m, "bca", k=4)["text"] == "BCA"
    with pytest.raises(Exception, match="type a sentence first"):
        tryit.translation(m, "  ")


def test_tryit_panel_translates_typed_text_and_data_rows(project, stand_in, qtbot, tmp_path):
    from PySide6.QtCore import Qt
    from engine.weights import load_into
    from gui.tryit_panel import TryItPanel
    m = Model(Project.load(project / "t.json").graph)
    load_into(m, project / "w.npz")
    ds = load({"kind": "pairs", "path": str(project / "p.csv"), "source": "src", "target": "tgt"})
    w = TryItPanel()
    qtbot.addWidget(w)
    w.resize(420, 560)
    w.set_model(m, None, ds)
    assert w.tabs.currentIndex() == 2 and w.beam.isVisibleTo(w) and not w.bars.isVisibleTo(w)
    w.text.setText("cab")
    qtbot.keyClick(w.text, Qt.Key.Key_Return)
    assert "CAB" in w.answer.text() and w.align.isVisibleTo(w)
    assert w.align.pick.count() == 3 and w.align.pick.currentText() == "cross: mean of 2 heads"
    img = w.align.image.image                                  # (source, target) as drawn
    assert img.shape == (3, 4) and np.allclose(img[:, :3], np.eye(3))
    labels = [t for _, t in w.align.plot.getAxis("bottom")._tickLevels[0]]
    assert labels == ["c", "a", "b"]
    w.beam.setValue(3)                                         # beam re-translates at once
    assert w.result["text"] == "CAB"
    w.tabs.setCurrentIndex(3)
    w.row.setValue(3)
    assert "✓" in w.answer.text() and ROWS[3].upper() in w.answer.text()
    w.beam.setValue(2)                                         # on the Data row tab: the row again, not the text
    assert w.result["text"] == ROWS[3].upper()
    w.show()
    qtbot.waitExposed(w)
    w.grab().save(str(tmp_path / "tryit-translation.png"))
    assert (tmp_path / "tryit-translation.png").stat().st_size > 1000
    assert SPECIALS[END] in w.result["target_tokens"]


# ---- end to end: a real encoder–decoder (engine.seq2seq) trained a few steps on pairs from a file ----

def trained_pairs(tmp_path, epochs=1):
    """(project path, weights path, model, trainer) of a small transformer trained on reversed letter strings."""
    from engine.seq2seq import transformer
    from engine.session import prepare
    from engine.weights import save as save_weights
    rng = np.random.default_rng(0)
    rows = ["".join(rng.choice(list("abcdef"), rng.integers(2, 6))) for _ in range(120)]
    (tmp_path / "r.csv").write_text("src,tgt\n" + "".join(f"{r},{r[::-1]}\n" for r in rows), encoding="utf-8")
    ref = {"kind": "pairs", "path": "r.csv", "source": "src", "target": "tgt", "tokens": "char"}
    ds = load(ref, tmp_path)
    g = transformer(ds.x.shape[1], ds.y.shape[1], len(ds.vocab), len(ds.target_vocab), d=16, heads=2)
    p = Project(graph=g, dataset=ref)
    p.training.update(loss="cce", optimizer="adam", lr=0.01, batch_size=16, epochs=epochs, seed=0)
    p.save(tmp_path / "r.json")
    model, tr = prepare(p, seed=0)
    tr.run()
    save_weights(tmp_path / "r.npz", model)
    return tmp_path / "r.json", tmp_path / "r.npz", model, tr


def test_predict_end_to_end_matches_engine_greedy_and_beam_one(tmp_path, capsys):
    from engine.data.pairs import decode_targets, encode_sources
    from engine.decode import beam, greedy
    from engine.seq2seq import model_step
    from engine.translate import translate
    from engine.weights import load_into
    proj, w, model, tr = trained_pairs(tmp_path)
    assert model.meta["target_vocab"] == tr.train.target_vocab and model.meta["vocab"] == tr.train.vocab
    lines = ["abc", "fed", "cab", "aaf"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "predict", str(proj), "--weights", str(w), "--input", str(tmp_path / "in.txt"))
    assert code == 0
    got = out.split("\n")[:-1]
    fresh = Model(Project.load(proj).graph)
    load_into(fresh, w)                                       # what predict read: the weights file alone
    x, lg, _ = encode_sources(lines, fresh.meta)
    step = model_step(fresh)
    ids = greedy(step, x, lg, fresh.meta["text"]["target_max_len"])
    assert got == decode_targets(ids, fresh.meta) == translate(model, lines)[0]
    assert beam(step, x, lg, fresh.meta["text"]["target_max_len"], k=1) == ids
    code, out3, _ = run(capsys, "predict", str(proj), "--weights", str(w), "--text", "abc", "--beam", "3")
    assert code == 0 and len(out3.split("\n")) == 2
    T = fresh.meta["text"]["target_max_len"]
    code, out4, err = run(capsys, "predict", str(proj), "--weights", str(w), "--text", "abc", "--max-len", "99")
    assert code == 0 and f"the model's target Input reads {T} steps" in err and len(out4) <= T + 1


def test_evaluate_translation_on_a_real_model_agrees_with_decoding(tmp_path):
    from engine.text_metrics import evaluate_translation, exact_match, references
    from engine.decode import greedy
    from engine.seq2seq import model_step
    _, _, model, tr = trained_pairs(tmp_path)
    val = tr.val
    res = evaluate_translation(model, val, limit=10)
    ids = greedy(model_step(model), np.asarray(val.x[:10]), val.lengths[:10], val.y.shape[1])
    assert res["exact_match"] == pytest.approx(exact_match(ids, references(val, slice(0, 10))))
    assert 0 <= res["token_accuracy"] <= 1 and 0 <= res["bleu"] <= 100


def test_tryit_alignment_from_the_real_cross_attention(tmp_path):
    _, _, model, tr = trained_pairs(tmp_path)
    r = tryit.translation(model, "abcd")
    (name, a), = r["maps"].items()
    assert name == "dec1_cross" and a.shape == (2, len(r["target_tokens"]), 4)
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, rtol=1e-5)           # each row: weights over the source


def test_dataset_panel_imports_sentence_pairs(qtbot, tmp_path):
    """The dataset panel's sequence import builds a pairs reference (TSV columns read), undoable, and previews
    a sample's source and target tokens."""
    from engine.project import Project as P
    from gui.document import Document
    from gui.training.dataset_panel import DatasetPanel
    p = P()
    p.path = tmp_path / "p.json"
    doc = Document(p)
    w = DatasetPanel(doc)
    qtbot.addWidget(w)
    f = tmp_path / "d.tsv"
    f.write_text("id\tde\ten\n1\tguten Tag\tgood day\n2\tdanke\tthanks\n", encoding="utf-8")
    s = w.sequences
    s.setChecked(True)
    s.kind.setCurrentIndex([s.kind.itemData(i) for i in range(s.kind.count())].index("pairs"))
    s.open(f)
    assert [s.p_source.itemText(i) for i in range(s.p_source.count())] == ["id", "de", "en"]
    s.p_source.setCurrentText("de")
    s.p_target.setCurrentText("en")
    s.p_tokens.setCurrentText("word")
    ref = s.reference()
    assert ref == {"kind": "pairs", "path": "d.tsv", "source": "de", "target": "en", "tokens": "word"}
    old = dict(doc.project.dataset)
    s.use()
    assert doc.project.dataset == ref
    qtbot.waitUntil(lambda: "→" in s.tokens.text(), timeout=60_000)
    assert "guten · Tag → good · day · <end>" in s.tokens.text()
    doc.undo_stack.undo()
    assert doc.project.dataset == old
