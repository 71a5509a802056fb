"""Sentence pairs (source text → target text) from a CSV/TSV, as token ids for translation models.

`{"kind": "pairs", "path": "pairs.csv", "source": COL, "target": COL, "tokens": "char" | "word"}`. Both
vocabularies start 0 <pad>, 1 <unk>, 2 <start>, 3 <end>; they are rebuilt from the training rows only when the
data is split (Dataset.split → refit). x: source ids (N, S) float32 padded with 0, lengths (N,); y: target ids
(N, T) int64, each target followed by 3 (<end>) and padded with 0, target_lengths (N,) counting the <end>.
S and T are the longest source and target (+1) in the file.
"""
import csv
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ..errors import DataError
from .dataset import Dataset
from .files import read_bytes

SPECIALS = ["<pad>", "<unk>", "<start>", "<end>"]
PAD, UNK, START, END = 0, 1, 2, 3
LEVELS = ("char", "word")
MARK = r"([^\p{L}\p{M}\p{N}_\s\p{Z}])"      # a character that is no part of a word (any script): its own token


def tokenize(texts, level="char", lowercase=False):
    """(distinct tokens, flat (total,) int64 index into them, lengths (n,) int64) of texts (a list or an Arrow
    string array), computed in Arrow: characters, or words of any script and single punctuation marks; each
    text trimmed (and lower-cased) first."""
    a = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    a = pc.utf8_trim_whitespace(a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a)
    if lowercase:
        a = pc.utf8_lower(a)
    if level == "word":
        words = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(pc.replace_substring_regex(a, MARK, r" \1 ")))
        codes = pc.dictionary_encode(pc.list_flatten(words))
        return (codes.dictionary.to_pylist(), codes.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64))
    a = a.cast(pa.large_string())                            # one UTF-8 buffer with int64 offsets
    off = np.frombuffer(a.buffers()[1], np.int64)[a.offset:a.offset + len(a) + 1]
    raw = a.buffers()[2].to_pybytes()[off[0]:off[-1]] if len(a) and off[-1] > off[0] else b""
    points = np.frombuffer(raw.decode("utf-8").encode("utf-32-le"), np.uint32)       # (total characters,)
    seen = np.zeros(0x110000, bool)                          # every Unicode code point: a table, no sort
    seen[points] = True
    distinct = np.flatnonzero(seen)
    index = np.cumsum(seen, dtype=np.int64) - 1                # code point -> its place among the distinct
    return ([chr(c) for c in distinct], index[points],
            pc.utf8_length(a).to_numpy(zero_copy_only=False).astype(np.int64))


def split(text, level="char", lowercase=False):
    """Tokens of one text, as tokenize makes them."""
    tokens, flat, _ = tokenize([text], level, lowercase)
    return [tokens[i] for i in flat]


def join(tokens, level="char"):
    """Text of a token list (characters joined as they are, words by detokenize)."""
    return "".join(tokens) if level == "char" else detokenize(tokens)


def detokenize(words):
    """Text of word tokens: one space between tokens, none before , . ; : ! ? ) ] } and none after ( [ {.
    (Self-contained: the ONNX greedy script carries a copy of its source.)"""
    out, prev = [], None
    for w in words:
        if prev is not None and w not in (",", ".", ";", ":", "!", "?", ")", "]", "}") and prev not in ("(", "[", "{"):
            out.append(" ")
        out.append(w)
        prev = w
    return "".join(out)


def load_pairs(path, source="source", target="target", tokens="char", lowercase=False, delimiter=None):
    """Source/target text pairs from a CSV or TSV (plain or .gz), read with Apache Arrow."""
    path = Path(path)
    if tokens not in LEVELS:
        raise DataError(f"{path}: \"tokens\" must be 'char' or 'word', got {tokens!r}")
    if source == target:
        raise DataError(f"{path}: source and target are both column {source!r}; name two different columns")
    raw, sep = _bytes(path, delimiter)
    header = next(csv.reader(io.StringIO(raw.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")), delimiter=sep), [])
    header = [h.strip() for h in header]
    if not any(header):
        raise DataError(f"{path}: needs a header row and at least one data row")
    for h in set(header):
        if h and header.count(h) > 1:
            raise DataError(f"{path}: two columns are named {h!r}; give each column its own name")
    for role, name in (("source", source), ("target", target)):
        if name not in header:
            raise DataError(f"{path}: no {role} column named {name!r}; columns are {', '.join(header)}")
    src, tgt = _columns(path, raw, sep, source, target)
    if not len(src):
        raise DataError(f"{path}: needs a header row and at least one data row")
    opts = {"kind": "pairs", "tokens": tokens, "lowercase": bool(lowercase)}
    (x, lengths, vocab), (y, tlen, tvocab) = (
        _encode(path, raw, sep, cells, role, name, opts) for cells, role, name in
        ((src, "source", source), (tgt, "target", target)))
    y = np.concatenate([y, np.zeros((len(y), 1), y.dtype)], axis=1)          # (N, T + 1): room for <end>
    y[np.arange(len(y)), tlen] = END
    tlen = tlen + 1
    opts.update(max_len=int(x.shape[1]), target_max_len=int(y.shape[1]))
    ds = Dataset(x.astype(np.float32), y, "multiclass", path.name, lengths=lengths, vocab=vocab, text=opts,
                 target_lengths=tlen, target_vocab=tvocab)
    train, = refit(ds, [])                        # vocabularies ordered by frequency (all rows: a preview)
    return train


def _bytes(path, delimiter):
    """(the file's UTF-8 bytes, BOM dropped; the delimiter): one DataError for a missing, binary, damaged or
    non-UTF-8 file."""
    if not path.is_file():
        raise DataError(f"cannot read {path}: " + ("it is a folder, not a file" if path.is_dir() else "no such file"))
    raw = read_bytes(path)
    if not raw.strip():
        raise DataError(f"{path} is empty; it needs a header row and at least one data row")
    if b"\x00" in raw[:1 << 16]:
        raise DataError(f"{path} is not a text file (it holds binary bytes; starts with {raw[:8]!r})")
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        raw.decode("utf-8")                                  # checked here, so that the error names the line
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte {raw[e.start]:#04x}); save the file as UTF-8") \
            from None
    name = path.name.lower().removesuffix(".gz")
    sep = delimiter or ("\t" if name.endswith((".tsv", ".tab")) else ",")
    return raw, sep


def _columns(path, raw, sep, source, target):
    """The source and target columns as Arrow string arrays (every cell read as text)."""
    from .table import _check_rows
    bad = []
    parse = pcsv.ParseOptions(delimiter=sep, invalid_row_handler=lambda r: bad.append(r) or "skip")
    conv = pcsv.ConvertOptions(column_types={source: pa.string(), target: pa.string()},
                               include_columns=[source, target], strings_can_be_null=False)
    try:
        t = pcsv.read_csv(pa.BufferReader(raw), parse_options=parse, convert_options=conv,
                          read_options=pcsv.ReadOptions(block_size=1 << 20))
    except pa.ArrowInvalid as e:
        raise DataError(f"{path} is not a readable CSV text file: {str(e).splitlines()[0]}") from None
    if bad:
        _check_rows(path, bad, sep)
    return t.column(source), t.column(target)


def _line(raw, sep, i):
    """The file's line number of data row i (Arrow skips empty lines; a quoted cell may span lines)."""
    rows = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), delimiter=sep)
    k = -1
    for r in rows:
        if r:
            k += 1
            if k == i + 1:
                return rows.line_num
    return i + 2


def _encode(path, raw, sep, cells, role, name, opts):
    """(ids (N, L) int64 padded with 0, lengths (N,), vocabulary) of one column (an Arrow string array)."""
    tokens, flat, lengths = tokenize(cells, opts["tokens"], opts["lowercase"])
    if (lengths == 0).any():
        i = int(np.argmin(lengths))
        raise DataError(f"{path}, line {_line(raw, sep, i)}: the {role} cell (column {name!r}) is empty")
    ids = np.zeros((len(lengths), int(lengths.max())), np.int64)            # (N, L)
    ids[np.arange(ids.shape[1])[None, :] < lengths[:, None]] = flat + len(SPECIALS)
    return ids, lengths, SPECIALS + tokens


def vocabulary(ids, lengths, vocab):
    """SPECIALS + the tokens that occur in the valid steps of ids, most frequent first (ties by text)."""
    valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    counts = np.bincount(np.asarray(ids)[valid].astype(np.int64), minlength=len(vocab))
    keep = [i for i in range(len(SPECIALS), len(vocab)) if counts[i]]
    return SPECIALS + [vocab[i] for i in sorted(keep, key=lambda i: (-counts[i], vocab[i]))]


def _lut(old, new):
    """(len(old),) int64: each old token's id in new; 1 (<unk>) for tokens new lacks."""
    ix = {t: i for i, t in enumerate(new)}
    return np.array([ix.get(t, UNK) for t in old], np.int64)


def refit(train, others):
    """Train and the other parts (None allowed) re-encoded with vocabularies of train's own tokens."""
    src = vocabulary(train.x, train.lengths, train.vocab)
    tgt = vocabulary(train.y, train.target_lengths, train.target_vocab)
    out = []
    for part in [train] + list(others):
        if part is not None:
            part.x = _lut(part.vocab, src)[np.asarray(part.x).astype(np.int64)].astype(np.float32)
            part.y = _lut(part.target_vocab, tgt)[part.y]
            part.vocab, part.target_vocab, part.classes = src, tgt, list(tgt)
        out.append(part)
    return out


def encode_sources(texts, meta):
    """(ids (n, S) float32, lengths (n,), [indices of texts cut to S tokens]) of raw source texts with the
    vocabulary and options saved with a model's weights; an empty text becomes one <unk>."""
    opts, vocab = meta.get("text") or {}, meta.get("vocab")
    if opts.get("kind") != "pairs" or not vocab or not meta.get("target_vocab"):
        raise DataError("these weights were not trained on sentence pairs: they carry no source and target "
                        "vocabularies")
    tokens, flat, lg = tokenize(list(texts), opts["tokens"], opts.get("lowercase", False))
    ids = _lut(tokens, vocab)[flat] if len(flat) else flat                    # (total,) training ids
    s = int(opts["max_len"])
    x = np.zeros((len(texts), s), np.float32)
    starts = np.concatenate([[0], np.cumsum(lg)])
    for i, n in enumerate(lg):
        x[i, :min(n, s)] = ids[starts[i]:starts[i] + min(n, s)]
    lengths = np.clip(lg, 1, s)
    x[lg == 0, 0] = UNK                                                      # an empty text: one <unk>
    return x, lengths, [int(i) for i in np.flatnonzero(lg > s)]


def decode_targets(seqs, meta):
    """Texts of target id lists (without <start>/<end>) with the target vocabulary saved with the weights."""
    vocab, level = meta["target_vocab"], (meta.get("text") or {}).get("tokens", "char")
    return [join([vocab[i] if 0 <= i < len(vocab) else SPECIALS[UNK] for i in s if i != PAD], level)
            for s in seqs]
