"""Sentence-pairs datasets (issue 24): token ids, <end> and padding, vocabularies from the training rows only,
raw text encoded as the model was trained, and every bad file refused in one line naming file, line and column."""
import gzip

import numpy as np
import pytest

from engine import DataError
from engine.data import load
from engine.data.dataset import fit
from engine.data.pairs import END, SPECIALS, decode_targets, encode_sources, join, split
from engine.session import split as session_split

ROWS = "source,target,note\nhello world,bonjour le monde,x\ngood day,bonne journée,y\n\"a, b\",a b,z\n"


def write(tmp_path, text, name="p.csv", binary=False):
    p = tmp_path / name
    p.write_bytes(text if binary else text.encode("utf-8"))
    return p


def test_ids_end_padding_and_lengths(tmp_path):
    p = write(tmp_path, ROWS)
    ds = load({"kind": "pairs", "path": p.name, "source": "source", "target": "target", "tokens": "word"}, tmp_path)
    assert ds.vocab[:4] == SPECIALS and ds.target_vocab[:4] == SPECIALS
    assert ds.x.dtype == np.float32 and ds.x.shape == (3, 3) and ds.y.shape == (3, 4)      # T = 3 words + <end>
    assert ds.lengths.tolist() == [2, 2, 3] and ds.target_lengths.tolist() == [4, 3, 3]
    assert ds.task == "multiclass" and ds.n_classes == len(ds.target_vocab)
    for i, (src, tgt) in enumerate([("hello world", "bonjour le monde"), ("good day", "bonne journée"),
                                    ("a, b", "a b")]):
        assert [ds.vocab[int(v)] for v in ds.x[i, :ds.lengths[i]]] == split(src, "word")
        n = ds.target_lengths[i]
        assert ds.y[i, n - 1] == END and (ds.y[i, n:] == 0).all() and (ds.x[i, ds.lengths[i]:] == 0).all()
        assert decode_targets([ds.y[i, :n - 1].tolist()], {"target_vocab": ds.target_vocab,
                                                           "text": ds.text}) == [tgt]


def test_char_tokens_keep_every_character_and_tsv(tmp_path):
    p = write(tmp_path, "de\ten\nMontag, 7. Dezember 2026\tMonday\nété\tsummer\n", "d.tsv")
    ds = load({"kind": "pairs", "path": str(p), "source": "de", "target": "en"})
    assert ds.x.shape == (2, len("Montag, 7. Dezember 2026")) and ds.y.shape == (2, len("summer") + 1)
    assert "".join(ds.vocab[int(v)] for v in ds.x[1, :3]) == "été"
    assert join(split(" Montag, 7. ", "char"), "char") == "Montag, 7."
    assert split("हिन्दी भाषा! Don't", "word", lowercase=True) == ["हिन्दी", "भाषा", "!", "don", "'", "t"]
    assert split("a\u00a0b\tc\n", "char") == ["a", "\u00a0", "b", "\t", "c"]


def test_vocabularies_come_from_training_rows_only(tmp_path):
    rows = ["source,target"] + [f"a{i % 3} b,x y" for i in range(40)] + ["zzz q,only w"]
    ds = load({"kind": "pairs", "path": str(write(tmp_path, "\n".join(rows) + "\n")), "tokens": "char"})
    assert "z" in ds.vocab and "z" in ds.split(0.0)[0].vocab          # no split: every row
    idx = np.arange(len(ds))
    last = len(ds) - 1
    tr, va = fit(ds.subset(idx[:-1]), ds.subset(idx[-1:]))
    assert "z" not in tr.vocab and "q" not in tr.vocab and "o" not in tr.target_vocab
    assert va.vocab == tr.vocab and va.target_vocab == tr.target_vocab
    assert [tr.vocab[int(v)] for v in va.x[0, :5]] == ["<unk>"] * 3 + [" ", "<unk>"]
    assert va.y[0, :va.target_lengths[0]].tolist().count(1) == len("only w") - 2       # o, n, l, y unknown; ' ', w kept
    assert ds.y[last, ds.target_lengths[last] - 1] == END


def test_test_split_is_encoded_with_the_final_training_vocabulary(tmp_path):
    rows = ["source,target"] + [f"{chr(97 + i % 26)}{i},{i}" for i in range(200)]
    ds = load({"kind": "pairs", "path": str(write(tmp_path, "\n".join(rows) + "\n"))})
    train, val, test = session_split(ds, {"seed": 0, "validation_split": 0.2, "test_split": 0.2})
    assert val.vocab == train.vocab == test.vocab and test.target_vocab == train.target_vocab
    seen = {train.vocab[int(v)] for row, n in zip(train.x, train.lengths) for v in row[:n]}
    assert set(train.vocab[4:]) == seen                       # nothing from validation or test rows


def test_raw_text_encodes_as_in_training(tmp_path):
    ds = load({"kind": "pairs", "path": str(write(tmp_path, ROWS)), "tokens": "word"})
    meta = {"vocab": ds.vocab, "target_vocab": ds.target_vocab, "text": ds.text}
    x, lg, cut = encode_sources(["hello world", "good unseen day and more", ""], meta)
    assert x.shape == (3, ds.x.shape[1]) and lg.tolist() == [2, 3, 1] and cut == [1]
    np.testing.assert_array_equal(x[0], ds.x[0])
    assert [ds.vocab[int(v)] for v in x[1, :3]] == ["good", "<unk>", "day"]
    with pytest.raises(DataError, match="not trained on sentence pairs"):
        encode_sources(["a"], {"vocab": ["<pad>", "<unk>"], "text": {"level": "word", "max_len": 3}})


def test_gzip_and_blank_lines_and_extra_columns_load(tmp_path):
    p = tmp_path / "p.csv.gz"
    p.write_bytes(gzip.compress(b"x,y,z\n\n12,1,9\n\n3,34,9\n"))
    ds = load({"kind": "pairs", "path": str(p), "source": "x", "target": "y"})
    assert [ds.vocab[int(v)] for v in ds.x[0, :2]] == ["1", "2"]            # digits stay text, not 12.0


BAD = [
    ("empty file", "", "p.csv", r"p\.csv is empty"),
    ("header only", "source,target\n", "p.csv", "needs a header row and at least one data row"),
    ("missing source column", "src,target\na,b\n", "p.csv", "no source column named 'source'; columns are src, target"),
    ("missing target column", "source,tgt\na,b\n", "p.csv", "no target column named 'target'"),
    ("empty source cell", "source,target\na,b\n,c\nd,e\n", "p.csv", r"p\.csv, line 3: the source cell \(column 'source'\) is empty"),
    ("blank target cell after a blank line", "source,target\na,b\n\nd,  \n", "p.csv", r"line 4: the target cell \(column 'target'\) is empty"),
    ("empty cell, CRLF lines and a BOM", "\ufeffsource,target\r\na,b\r\n,c\r\n", "p.csv", r"line 3: the source cell"),
    ("wrong number of values", "source,target\na,b\nc,d,e\n", "p.csv", r"line 3: 3 values but the header has 2 columns"),
    ("duplicate column", "source,source,target\na,b,c\n", "p.csv", "two columns are named 'source'"),
    ("binary file", b"PK\x03\x04\x00\x00\x01\x02source,target", "p.csv", "not a text file"),
    ("not UTF-8", b"source,target\na,b\n\xff\xfe,c\n", "p.csv", r"line 3: not UTF-8 text"),
    ("damaged gzip", b"\x1f\x8b\x08\x00garbage", "p.csv.gz", "damaged .gz file"),
]


@pytest.mark.parametrize("name,text,fname,want", BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_one_clear_line(tmp_path, name, text, fname, want):
    p = write(tmp_path, text, fname, binary=isinstance(text, bytes))
    with pytest.raises(DataError, match=want) as e:
        load({"kind": "pairs", "path": str(p)})
    assert "\n" not in str(e.value) and str(p.name) in str(e.value)


@pytest.mark.parametrize("ref,want", [
    ({"path": "nope.csv"}, "no such file"),
    ({"path": "."}, "a folder, not a file"),
    ({"path": "p.csv", "tokens": "byte"}, "\"tokens\" must be 'char' or 'word'"),
    ({"path": "p.csv", "target": "source"}, "both column 'source'"),
    ({"path": "p.csv", "level": "char"}, "has no option 'level'"),
    ({}, "the pairs dataset needs a 'path'"),
])
def test_bad_reference_is_one_clear_line(tmp_path, ref, want):
    write(tmp_path, ROWS)
    with pytest.raises(DataError, match=want) as e:
        load({"kind": "pairs", **ref}, tmp_path)
    assert "\n" not in str(e.value)


def test_shipped_dates_example_loads():
    from pathlib import Path
    import resources
    path = Path(resources.__file__).parent / "data" / "dates.csv"
    assert path.stat().st_size < 1 << 20
    ds = load({"kind": "pairs", "path": str(path), "source": "source", "target": "target", "tokens": "char"})
    assert len(ds) >= 10_000 and ds.y.shape[1] == 11 and (ds.target_lengths == 11).all()
    assert sorted(ds.target_vocab[4:]) == list("-0123456789")
    i = int(np.argmax(ds.lengths))
    iso = decode_targets([ds.y[i, :10].tolist()], {"target_vocab": ds.target_vocab, "text": ds.text})[0]
    assert len(iso) == 10 and iso[4] == iso[7] == "-"
