"""Exact match, token accuracy and corpus BLEU (issue 24): the formula by hand, and against sacrebleu."""
import math
import random

import numpy as np
import pytest

from engine.data.dataset import Dataset
from engine.text_metrics import bleu, bleu_stats, evaluate_translation, exact_match, token_accuracy


def test_exact_match_and_token_accuracy():
    hyps, refs = [[1, 2, 3], [4, 5], [6]], [[1, 2, 3], [4, 6, 7], []]
    assert exact_match(hyps, refs) == pytest.approx(1 / 3)
    assert token_accuracy(hyps, refs) == pytest.approx((3 + 1) / 6)           # the empty reference counts nothing
    # with <end> (9) after each: [1,2,3,9]/[1,2,3,9] 4, [4,5,9]/[4,6,7,9] 1, [6,9]/[9] 0
    assert token_accuracy(hyps, refs, end=9) == pytest.approx(5 / 9)
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        exact_match(hyps[:2], refs)


def test_bleu_by_hand():
    hyp, ref = "the cat sat on the mat".split(), "the cat is on the mat".split()
    match, total, c, r = bleu_stats([hyp], [ref])
    assert match.tolist() == [5, 3, 1, 0] and total.tolist() == [6, 5, 4, 3] and (c, r) == (6, 6)
    assert bleu([hyp], [ref], smooth="none") == 0.0                 # no 4-gram matches: the plain formula gives 0
    want = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4) + math.log(1 / (2 * 3))) / 4)
    assert bleu([hyp], [ref]) == pytest.approx(want)
    # a short hypothesis: brevity penalty exp(1 − r/c), clipped counts ("the the the" matches "the" twice)
    hyp2, ref2 = "the the the".split(), "the cat the mat on it".split()
    m2, t2, _, _ = bleu_stats([hyp2], [ref2])
    assert m2[0] == 2 and t2[0] == 3
    short = 100 * math.exp(1 - 6 / 4) * math.exp((math.log(3 / 4) + math.log(1 / 3) + math.log(1 / (2 * 2))
                                                  + math.log(1 / (4 * 1))) / 4)
    assert bleu([hyp[:4]], [ref]) == pytest.approx(short)              # "the cat sat on": BP exp(1 − 6/4)
    corpus = 100 * math.exp((math.log(11 / 12) + math.log(8 / 10) + math.log(5 / 8) + math.log(3 / 6)) / 4)
    assert bleu([hyp, ref], [ref, ref]) == pytest.approx(corpus)       # corpus counts, not a mean of sentences
    assert bleu([ref], [ref]) == pytest.approx(100.0) and bleu([[]], [ref]) == 0.0


def corpora():
    rng = random.Random(5)
    words = "the a cat dog sat on mat red blue ran über café 2026 - .".split()
    out = []
    for n, keep, short in [(30, 0.8, False), (50, 0.5, True), (10, 0.95, False), (5, 0.2, True), (40, 1.0, True)]:
        refs = [[rng.choice(words) for _ in range(rng.randint(1, 15))] for _ in range(n)]
        hyps = [[w if rng.random() < keep else rng.choice(words) for w in r] for r in refs]
        if short:
            hyps = [h[:rng.randint(0, len(h))] for h in hyps]
        out.append((hyps, refs))
    return out


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("smooth", ["exp", "none"])
def test_bleu_equals_sacrebleu(case, smooth):
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = corpora()[case]
    want = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]], tokenize="none",
                                 smooth_method=smooth).score
    assert bleu(hyps, refs, smooth=smooth) == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_evaluate_translation_decodes_and_scores():
    # targets: the source ids + 10, then <end> (3); the step knows them and errs on sample 1's second token
    src = np.array([[4, 5, 6, 4, 5], [7, 8, 0, 0, 0], [9, 0, 0, 0, 0]], np.float32)
    lengths = np.array([5, 2, 1])
    y = np.zeros((3, 6), np.int64)
    for i, n in enumerate(lengths):
        y[i, :n], y[i, n] = src[i, :n] + 10, 3
    ds = Dataset(src, y, "multiclass", "t", lengths=lengths, target_lengths=lengths + 1,
                 target_vocab=[str(i) for i in range(20)])

    def step(s, sl, prefix):
        out = np.full((len(s), 20), -5.0)
        t = prefix.shape[1] - 1
        for b in range(len(s)):
            want = int(s[b, t]) + 10 if t < sl[b] else 3
            out[b, 5 if (int(s[b, 0]) == 7 and t == 1) else want] = 0.0
        return out
    res = evaluate_translation(None, ds, limit=None, step=step)
    assert res["exact_match"] == pytest.approx(2 / 3)
    assert res["token_accuracy"] == pytest.approx(10 / 11)   # sample 1 decodes 17, 5, <end> ≠ 17, 18, <end>
    assert res["bleu"] == pytest.approx(bleu([[14, 15, 16, 14, 15], [17, 5], [19]],
                                             [[14, 15, 16, 14, 15], [17, 18], [19]]))
    assert 0 < res["bleu"] < 100
    assert evaluate_translation(None, ds, limit=1, step=step)["exact_match"] == 1.0
