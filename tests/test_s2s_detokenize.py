"""Word outputs of translation models read as text: no space before , . ; : ! ? ) ] } and none after ( [ {, the
same in `layerboard predict` / Try it (engine.data.pairs.decode_targets) and in the ONNX greedy script."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from engine.data import load
from engine.data.pairs import decode_targets, detokenize, split
from engine.model import Model
from engine.seq2seq import transformer
from engine.session import describe
from engine.translate import translate


@pytest.mark.parametrize("words, text", [
    (["a", ",", "b"], "a, b"),
    (["Hello", ",", "world", "!"], "Hello, world!"),
    (["f", "(", "x", ")", "=", "y", "."], "f (x) = y."),
    (["[", "1", ";", "2", "]", ":", "{", "k", "}", "?"], "[1; 2]: {k}?"),
    (["(", ")", "("], "() ("),
    ([], ""),
    (["word"], "word"),
])
def test_detokenize(words, text):
    assert detokenize(words) == text


def test_detokenize_undoes_the_word_tokenizer_on_ordinary_punctuation():
    for s in ("Montag, 7. Dezember 2026.", "Il a dit: oui (enfin)!", "Что? Да; нет.", "a [b] {c}, d"):
        assert detokenize(split(s, "word")) == s


def test_decoded_word_targets_are_detokenized():
    meta = {"target_vocab": ["<pad>", "<unk>", "<start>", "<end>", "a", ",", "b", "(", ")"],
            "text": {"tokens": "word"}}
    assert decode_targets([[4, 5, 6], [7, 4, 8, 0]], meta) == ["a, b", "(a)"]
    assert decode_targets([[4, 5, 6]], dict(meta, text={"tokens": "char"})) == ["a,b"]


@pytest.fixture
def word_model(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["source,target"]
    for _ in range(40):
        a, b = rng.choice(["un", "deux", "trois", "quatre"], 2)
        rows.append(f"{a} {b},\"( {a} , {b} ) .\"")
    (tmp_path / "w.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = load({"kind": "pairs", "path": "w.csv", "source": "source", "target": "target", "tokens": "word"}, tmp_path)
    g = transformer(ds.x.shape[1], ds.y.shape[1], len(ds.vocab), len(ds.target_vocab), d=16, heads=2)
    m = Model(g, seed=3)
    describe(m, ds)
    return m, tmp_path


def test_onnx_greedy_script_reads_and_writes_words_as_the_engine(word_model):
    pytest.importorskip("onnxruntime")
    m, d = word_model
    from engine.onnx_export import save_onnx
    save_onnx(d / "w.onnx", m)
    spec = importlib.util.spec_from_file_location("w_greedy", d / "w_greedy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for s in ("deux, trois (quatre)!", "Ünïcode_x 12:3 «ok»", "  un   deux  "):
        assert mod.words(s) == split(s, "word")
    assert mod.detokenize(["a", ",", "(", "b", ")"]) == "a, (b)"
    want = translate(m, ["un trois"])[0][0]
    r = subprocess.run([sys.executable, "w_greedy.py", "un trois"], cwd=d, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want.strip()
