"""Metrics of generated sequences against references: exact match, token accuracy, corpus BLEU.

Sequences are token lists (ids or strings). BLEU is Papineni et al. (2002) over the corpus:
BLEU = BP · exp(Σₙ ¼ log pₙ), n = 1…4, pₙ = Σ clipped n-gram matches / Σ hypothesis n-grams,
BP = 1 if c > r else exp(1 − r/c) (c, r: total hypothesis and reference lengths); reported 0…100 as sacrebleu
does, with its "exp" smoothing by default (an n with no match counts 1 / (2ᵏ · its n-gram total), k = 1, 2, …).
"""
import math
from collections import Counter

import numpy as np


def exact_match(hyps, refs):
    """Share of hypotheses equal to their reference token for token."""
    _same_count(hyps, refs)
    return sum(list(h) == list(r) for h, r in zip(hyps, refs)) / max(len(refs), 1)


def token_accuracy(hyps, refs, end=None):
    """Share of the references' tokens (plus `end` after each, when given) that the hypothesis has at the same
    position; hypothesis tokens past the reference's length do not count."""
    _same_count(hyps, refs)
    tail = [] if end is None else [end]
    right = total = 0
    for h, r in zip(hyps, refs):
        h, r = list(h) + tail, list(r) + tail
        right += sum(a == b for a, b in zip(h, r))
        total += len(r)
    return right / max(total, 1)


def _ngrams(seq, n):
    return Counter(tuple(seq[i:i + n]) for i in range(len(seq) - n + 1))


def bleu_stats(hyps, refs, max_n=4):
    """(matches (max_n,), totals (max_n,), hypothesis length, reference length) summed over the corpus."""
    _same_count(hyps, refs)
    match, total = np.zeros(max_n, np.int64), np.zeros(max_n, np.int64)
    c = r = 0
    for h, ref in zip(hyps, refs):
        h, ref = list(h), list(ref)
        c, r = c + len(h), r + len(ref)
        for n in range(1, max_n + 1):
            hn, rn = _ngrams(h, n), _ngrams(ref, n)
            match[n - 1] += sum(min(v, rn[g]) for g, v in hn.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    return match, total, c, r


def bleu(hyps, refs, max_n=4, smooth="exp"):
    """Corpus BLEU (0…100) of hypotheses against one reference each; smooth "exp" (sacrebleu's default) or
    "none" (the unsmoothed formula: 0 when some n has no match)."""
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth must be 'exp' or 'none', got {smooth!r}")
    match, total, c, r = bleu_stats(hyps, refs, max_n)
    if c == 0 or not match.any():
        return 0.0
    logs, k = [], 1
    for m, t in zip(match, total):
        if m > 0:
            logs.append(math.log(m / t))
        elif smooth == "exp" and t > 0:
            logs.append(math.log(1 / (2 ** k * t)))
            k += 1
        else:
            return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(logs) / max_n)


def _same_count(hyps, refs):
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")


def references(ds, idx=slice(None), end=3):
    """Target id lists of samples idx of a pairs dataset, without <end> and padding."""
    y, tl = ds.y[idx], ds.target_lengths[idx]
    return [[int(v) for v in row[:n] if v != end] for row, n in zip(y, tl)]


def evaluate_translation(model, ds, limit=256, step=None, k=1, batch=64):
    """{"exact_match", "token_accuracy", "bleu"} of greedy (k = 1) or beam-k decoding of the first `limit`
    samples of a pairs dataset (token accuracy counts the <end> step); step: the decoder step function
    (default engine.seq2seq.model_step(model))."""
    from .decode import beam, greedy
    if step is None:
        from .seq2seq import model_step
        step = model_step(model)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        return {}
    max_len = int(ds.y.shape[1])
    hyps = []
    for i in range(0, n, batch):
        src = np.asarray(ds.x[i:min(i + batch, n)])
        lg = ds.lengths[i:i + len(src)]
        hyps += greedy(step, src, lg, max_len) if k == 1 else beam(step, src, lg, max_len, k)
    refs = references(ds, slice(0, n))
    return {"exact_match": exact_match(hyps, refs), "token_accuracy": token_accuracy(hyps, refs, end=3),
            "bleu": bleu(hyps, refs)}
