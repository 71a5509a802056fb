"""Greedy and beam decoding (issue 24) on hand-made step functions whose best sequences are known."""
import itertools

import numpy as np

from engine.decode import beam, greedy

V, START, END = 6, 2, 3


def table_step(table):
    """step(src, src_len, prefix) -> (B, V) log-probabilities from a fixed table {previous token: probs}."""
    def step(src, src_len, prefix):
        assert prefix.shape[0] == len(src) == len(src_len) and (prefix[:, 0] == START).all()
        return np.log(np.stack([table.get(int(p), SURE_END) for p in prefix[:, -1]]))
    return step


def probs(**p):
    """A (V,) distribution from {"t4": 0.5, …} with the rest spread over the other tokens."""
    out = np.full(V, 1e-6)
    for k, v in p.items():
        out[int(k[1:])] = v
    return out / out.sum()


SURE_END = probs(t3=1.0)
# from <start>: token 4 (0.6) or 5 (0.4); after 4, <end>, 4 and 5 are about equally likely, after 5 <end> is
# sure. Greedy takes 4 and then <end>: 0.6 · 0.34 ≈ 0.2 < beam's path 5, <end>: 0.4 · 1.0.
TRAP = {START: probs(t4=0.6, t5=0.4), 4: probs(t3=0.34, t4=0.33, t5=0.33), 5: SURE_END}


def path_logprob(table, toks):
    prev, s = START, 0.0
    for t in list(toks) + [END]:
        s += np.log(table.get(prev, SURE_END)[t])
        prev = t
    return s


def test_beam_beats_greedy_where_the_best_first_token_leads_nowhere():
    src, lg = np.zeros((1, 3), np.float32), np.array([3])
    g = greedy(table_step(TRAP), src, lg, max_len=5)[0]
    b = beam(table_step(TRAP), src, lg, max_len=5, k=2)[0]
    assert b == [5] and g == [4]
    assert path_logprob(TRAP, b) > path_logprob(TRAP, g) + 0.5
    # beam 2 finds the most probable sequence of all those up to 3 tokens (brute force)
    best = max((seq for n in range(4) for seq in itertools.product(range(4, V), repeat=n)),
               key=lambda s: path_logprob(TRAP, s))
    assert list(best) == b


def random_tables(seed):
    rng = np.random.default_rng(seed)
    return {p: rng.dirichlet(np.full(V, 0.3)) for p in range(V)}


def test_beam_of_width_one_is_greedy():
    """On random tables, sources of different lengths in one batch, some ending and some hitting max_len."""
    lengths = []
    for seed in range(6):
        tables = [random_tables(seed * 10 + i) for i in range(5)]

        def step(src, src_len, prefix):                 # each source has its own table (src[:, 0] picks it)
            return np.log(np.stack([tables[int(s[0])][int(p[-1])] for s, p in zip(src, prefix)]))
        src = np.arange(5, dtype=np.float32)[:, None].repeat(4, axis=1)
        lg = np.array([4, 1, 2, 3, 4])
        g = greedy(step, src, lg, max_len=7)
        assert g == beam(step, src, lg, max_len=7, k=1)
        assert all(END not in s for s in g)
        lengths += [len(s) for s in g]
    assert 7 in lengths and min(lengths) < 7


def test_greedy_stops_at_end_and_max_len_and_skips_finished_sources():
    calls = []

    def step(src, src_len, prefix):
        calls.append(len(src))
        out = np.full((len(src), V), -10.0)
        for i, s in enumerate(src[:, 0]):               # source 0 ends after 2 tokens, source 1 never ends
            out[i, END if (s == 0 and prefix.shape[1] == 3) else 4] = 0.0
        return out
    got = greedy(step, np.array([[0.0], [1.0]]), np.array([1, 1]), max_len=5)
    assert got == [[4, 4], [4, 4, 4, 4, 4]]
    assert calls == [2, 2, 2, 1, 1]                     # the finished source is not run again


def test_length_normalisation_prefers_the_longer_hypothesis_when_asked():
    # <start> → <end> at 0.5, or 4 (0.5) then 5 (0.9) then <end> (0.9): sums favour the short one,
    # per-token means (alpha 1) the long one.
    table = {START: probs(t3=0.5, t4=0.5), 4: probs(t5=0.9, t3=0.05), 5: probs(t3=0.9, t4=0.05)}
    src, lg = np.zeros((1, 1), np.float32), np.array([1])
    assert beam(table_step(table), src, lg, 6, k=3, alpha=0.0)[0] == []
    assert beam(table_step(table), src, lg, 6, k=3, alpha=1.0)[0] == [4, 5]
