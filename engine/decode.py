"""Generate target sequences token by token: greedy and beam search over a `step` function.

step(src (B, S), src_len (B,), prefix (B, t) ids) -> (B, V) log-probabilities of the next target token
(engine.seq2seq.model_step makes one from a trained model). The prefix starts with `start`; a sequence ends at
`end` or after max_len tokens. Results are id lists without start and end. A step with bind(src, src_len)
(engine.seq2seq.Step) runs its encoder once per call of greedy / beam.
"""
import numpy as np


def bound(step, src, src_len):
    """run(rows, prefix) -> (len(rows), V): step on sources src[rows] (step.bind's, which encodes once, if any)."""
    if hasattr(step, "bind"):
        return step.bind(src, src_len)
    return lambda rows, prefix: step(src[rows], src_len[rows], prefix)


def greedy(step, src, src_len, max_len, start=2, end=3):
    """The most probable next token at each step, for every source at once (finished ones are not run)."""
    src, src_len = np.asarray(src), np.asarray(src_len)
    n = len(src)
    out = [[] for _ in range(n)]
    run = bound(step, src, src_len)
    live = np.arange(n)
    prefix = np.full((n, 1), start, np.int64)                              # (B, t) of the live sources
    for _ in range(max_len):
        if not len(live):
            break
        nxt = np.asarray(run(live, prefix)).argmax(axis=1)     # (B,)
        go = nxt != end
        for i, tok in zip(live[go], nxt[go]):
            out[i].append(int(tok))
        live, prefix = live[go], np.concatenate([prefix[go], nxt[go, None]], axis=1)
    return out


def beam(step, src, src_len, max_len, k=4, start=2, end=3, alpha=0.0):
    """Beam search of width k: per source the k best prefixes by summed log-probability. A hypothesis that ends
    among a step's k best candidates is kept with its score / length**alpha (length: tokens with <end>; alpha 0
    compares sums, 1 per-token means); a source is done when its k best ended hypotheses score at least what any
    live prefix still could, or at max_len (live ones then count as ended). k = 1 with alpha 0 is greedy."""
    src, src_len = np.asarray(src), np.asarray(src_len)
    n = len(src)
    hyps = [[((), 0.0)] for _ in range(n)]          # per source: live (tokens, summed log-probability)
    done = [[] for _ in range(n)]                   # per source: ended (normalised score, tokens)
    norm = (lambda s, length: s / max(length, 1) ** alpha)
    run = bound(step, src, src_len)
    for t in range(max_len):
        todo = [i for i in range(n) if hyps[i]]
        if not todo:
            break
        rows = [(i, h) for i in todo for h in hyps[i]]
        who = np.array([i for i, _ in rows])
        prefix = np.array([(start,) + h[0] for _, h in rows], np.int64).reshape(len(rows), t + 1)   # (M, t+1)
        lp = np.asarray(run(who, prefix), np.float64)                          # (M, V)
        r = 0
        for i in todo:
            m = len(hyps[i])
            score = np.array([s for _, s in hyps[i]])[:, None] + lp[r:r + m]        # (m, V)
            r += m
            flat = score.ravel()
            nxt = []
            for rank, c in enumerate(np.argsort(-flat, kind="stable")[:2 * k]):
                b, tok = divmod(int(c), score.shape[1])
                toks = hyps[i][b][0]
                if tok == end:
                    if rank < k:
                        done[i].append((norm(float(flat[c]), len(toks) + 1), toks))
                elif len(nxt) < k:
                    nxt.append((toks + (tok,), float(flat[c])))
            done[i] = sorted(done[i], key=lambda h: -h[0])[:k]
            # a live prefix only loses log-probability; with alpha > 0 its length can still grow to max_len + 1
            could = max(s for _, s in nxt) / (max_len + 1) ** alpha if nxt else -np.inf
            hyps[i] = [] if len(done[i]) >= k and done[i][-1][0] >= could else nxt
    for i in range(n):
        done[i] += [(norm(s, len(toks)), toks) for toks, s in hyps[i]]        # reached max_len without <end>
    return [list(max(d, key=lambda h: h[0])[1]) if d else [] for d in done]
