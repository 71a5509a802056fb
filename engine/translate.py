"""Translate raw source lines with a model trained on sentence pairs: `layerboard predict` for translation
projects (--text LINE or --input FILE, --beam K, --max-len N) and the window's Try-it panel."""
import sys

from .data.pairs import decode_targets, encode_sources
from .errors import LayerboardError


def decode_ids(model, x, lengths, k=1, max_len=None, alpha=0.0, batch=64):
    """Target id lists (without <start>/<end>) of source ids x (n, S) by greedy (k = 1) or beam-k decoding;
    max_len: target tokens at most (default: the longest target seen in training, <end> included)."""
    from .decode import beam, greedy
    from .seq2seq import model_step
    max_len = min(int(model.meta["text"]["target_max_len"]) if max_len is None else max_len, longest(model))
    step = model_step(model)
    ids = []
    for i in range(0, len(x), batch):
        src, lg = x[i:i + batch], lengths[i:i + batch]
        ids += greedy(step, src, lg, max_len) if k == 1 else beam(step, src, lg, max_len, k, alpha=alpha)
    return ids


def longest(model):
    """Target tokens the model can generate at most: the steps of its target (decoder) Input."""
    from .seq2seq import target_input
    return int(model.infos[target_input(model)].shape[0])


def translate(model, texts, k=1, max_len=None, alpha=0.0):
    """(decoded texts, decoded id lists, [indices of texts cut to the model's source length]) of raw source
    texts."""
    x, lengths, cut = encode_sources(texts, model.meta)
    ids = decode_ids(model, x, lengths, k, max_len, alpha)
    return decode_targets(ids, model.meta), ids, cut


def lines(path):
    """The lines of a UTF-8 text file (an error line names it when it cannot be read)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return [t.rstrip("\r\n") for t in f]
    except UnicodeDecodeError as e:
        raise LayerboardError(f"--input {path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 "
                              "with one text per line") from None
    except OSError as e:
        raise LayerboardError(f"--input {path}: cannot read it: {e.strerror or e}") from None


def cmd_predict(a, project):
    """`layerboard predict PROJECT --weights W (--text LINE … | --input FILE) [--output FILE] [--beam K]
    [--max-len N]` for a sentence-pairs project: one decoded line per source line (an empty line stays empty)."""
    from .cli import writable
    from .model import Model
    from .project import atomic_write
    from .weights import load_into
    if (a.text is None) == (a.input is None):
        raise LayerboardError("give --text \"one source sentence\" or --input FILE (one source sentence per line)")
    if a.lengths or a.attention:
        raise LayerboardError(f"{'--lengths' if a.lengths else '--attention'} is for array inputs; a translation "
                              "project reads text (--text or --input)")
    k = 1 if a.beam is None else a.beam
    if k < 1 or (a.max_len is not None and a.max_len < 1):
        raise LayerboardError(f"--beam and --max-len must be whole numbers ≥ 1, got {a.beam} and {a.max_len}")
    if a.output:
        writable(a.output, "--output")
    texts = list(a.text) if a.text is not None else lines(a.input)
    model = Model(project.graph)
    load_into(model, a.weights)
    if a.max_len is not None and a.max_len > longest(model):
        print(f"--max-len {a.max_len}: the model's target Input reads {longest(model)} steps; it generates at most "
              f"{longest(model)} tokens", file=sys.stderr)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    out = [""] * len(texts)
    if keep:
        got, _, cut = translate(model, [texts[i] for i in keep], k, a.max_len)
        for i, t in zip(keep, got):
            out[i] = t
        s = int(model.meta["text"]["max_len"])
        for j in cut[:5]:
            print(f"line {keep[j] + 1}: longer than the {s} source tokens the model reads; the rest is left out",
                  file=sys.stderr)
    text = "".join(t + "\n" for t in out)
    if a.output:
        atomic_write(a.output, text.encode("utf-8"))
        print(f"wrote {len(out)} translations to {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
