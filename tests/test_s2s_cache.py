"""Decoding with the encoder's output cached (engine.seq2seq.Step.bind): the source side runs once per batch of
sources, only the decoder re-runs per token, and greedy and beam give the same tokens as re-running the whole
model, on the shipped dates example trained a few steps."""
from pathlib import Path

import numpy as np
import pytest

from engine.decode import beam, greedy
from engine.project import Project
from engine.seq2seq import encoder_nodes, model_step
from engine.session import prepare
from engine.translate import decode_ids

EXAMPLE = Path(__file__).resolve().parents[1] / "resources" / "examples" / "dates-translation.json"


@pytest.fixture(scope="module")
def dates():
    """(model, validation pairs) of the dates example after 30 training steps."""
    model, trainer = prepare(Project.load(EXAMPLE))
    rng = np.random.default_rng(0)
    for _ in range(30):
        xb, yb, mb = trainer._batch(trainer.train, np.sort(rng.choice(len(trainer.train), 32, replace=False)))
        trainer.train_step(xb, trainer._scaled(yb), mb)
    return model, trainer.val


def count_calls(model, node, monkeypatch):
    """A list that grows by one at every forward of `node` (of the fusion group that runs it, if any)."""
    calls = []
    layer = next((g for g in model.groups.values() if node in g.nodes), model.layers[node])
    run = layer.forward

    def counted(*a, **k):
        calls.append(1)
        return run(*a, **k)
    monkeypatch.setattr(layer, "forward", counted)
    return calls


def test_encoder_nodes_are_the_source_side(dates):
    model, _ = dates
    enc = encoder_nodes(model)
    assert "source" in enc and "src_embed" in enc and "target" not in enc
    assert model.output not in enc and not any(model.feeds.get(n) == "target" for n in enc)


@pytest.mark.parametrize("k", [1, 3])
def test_cached_decoding_gives_the_tokens_of_the_whole_model(dates, k):
    model, va = dates
    src, lg, T = np.asarray(va.x[:24]), va.lengths[:24], va.y.shape[1]
    run = (lambda step: greedy(step, src, lg, T)) if k == 1 else (lambda step: beam(step, src, lg, T, k))
    cached, whole = run(model_step(model)), run(model_step(model, cache=False))
    assert cached == whole
    assert sum(map(len, cached)) > 0
    # and the log-probabilities themselves agree at every decoded prefix of a few sources
    step, full = model_step(model), model_step(model, cache=False)
    rows, prefix = np.array([0, 5, 5, 7]), np.array([[2, 5, 6], [2, 4, 4], [2, 9, 1], [2, 3, 7]])
    got = step.bind(src, lg)(rows, prefix)
    np.testing.assert_allclose(got, full(src[rows], lg[rows], prefix), atol=1e-4)


@pytest.mark.parametrize("k", [1, 4])
def test_the_encoder_runs_once_per_batch_of_sources(dates, monkeypatch, k):
    model, va = dates
    enc = [n for n in encoder_nodes(model) if model.layers[n].type == "MultiHeadSelfAttention"]
    dec = [n for n in model.order if n not in encoder_nodes(model) and model.layers[n].type == "CrossAttention"]
    enc_calls, dec_calls = count_calls(model, enc[0], monkeypatch), count_calls(model, dec[0], monkeypatch)
    ids = decode_ids(model, np.asarray(va.x[:40]), va.lengths[:40], k=k)
    assert len(enc_calls) == 1                              # one batch of 40 sources: one encoder run
    assert len(dec_calls) >= max(map(len, ids)) + 1         # the decoder: once per generated token
    enc_calls.clear()
    model_step(model, cache=False)                          # the uncached step re-runs the encoder per token
    greedy(model_step(model, cache=False), np.asarray(va.x[:40]), va.lengths[:40], va.y.shape[1])
    assert len(enc_calls) > 1
