"""The reverse-transformer example learns to reverse variable-length token sequences; its last attention is anti-diagonal."""
import numpy as np

from engine.data.builtin import reverse
from engine.project import Project
from engine.session import prepare
from resources import path

EXAMPLE = str(path("examples", "reverse-transformer.json"))


def test_reverse_dataset_targets_are_the_valid_tokens_reversed():
    d = reverse(n=50, seed=3)
    assert d.per_step and d.vocab[0] == "<pad>" and d.n_classes == 12
    assert len(set(d.lengths.tolist())) > 3                                    # lengths vary within a batch
    for x, y, n in zip(d.x.astype(int), d.y, d.lengths):
        assert list(y[:n]) == list(x[:n][::-1]) and not x[n:].any() and not y[n:].any()
        assert x[:n].min() >= 2


def test_short_training_reverses_and_attention_turns_anti_diagonal():
    p = Project.load(EXAMPLE)
    p.training["epochs"] = 4                                                   # the example runs 10
    p.dataset["n"] = 3000
    model, tr = prepare(p, seed=0)
    res = tr.run()
    assert res["status"] == "completed"
    assert res["val_accuracy"] > 0.9                                           # per token, valid steps only
    v = tr.val
    model.forward(v.x[:200], mask=v.mask(np.arange(200)))
    a = model.layers["attention2"].taps["attention"]                          # (B, heads, T, T)
    lengths = v.lengths[:200]
    anti, rest = [], []
    for b, n in enumerate(lengths):
        blk = a[b, :, :n, :n]                                                  # (heads, n, n) valid block
        np.testing.assert_allclose(blk.sum(-1), 1.0, rtol=1e-5)
        assert not a[b, :, :, n:].any() and not a[b, :, n:, :].any()           # padding neither attends nor is attended
        flip = blk[:, np.arange(n), n - 1 - np.arange(n)]                       # α_{t → n−1−t}
        anti.append(flip.mean(-1))
        rest.append((blk.sum((-1, -2)) - flip.sum(-1)) / max(n * n - n, 1))
    anti, rest = np.mean(anti, 0), np.mean(rest, 0)                             # per head
    assert np.all(anti > 0.5), anti                                            # most weight on the anti-diagonal
    assert np.all(anti > 5 * rest), (anti, rest)
