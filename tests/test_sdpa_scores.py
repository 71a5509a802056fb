"""ScaledDotProductAttention.attention_scores (the engine's, shared by the window's attention view and any other
reader): the softmax of its scores over the valid keys is the layer's own attention map, with its scale, softcap,
causal mask and grouped key/value heads; float64; None before a forward."""
import numpy as np
import pytest

from engine.layers import create


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("config,dkv", [
    ({"heads": 2, "kv_heads": 1, "scale": 0.3, "softcap": 1.5}, 4),
    ({"heads": 2, "scale": 0.7}, 8),
    ({"heads": 2, "softcap": 0.5, "causal": True}, 8),
    ({"heads": 4, "kv_heads": 2}, 4),
])
def test_softmax_of_the_scores_is_the_layers_attention(config, dkv):
    B, T, S, dq = 3, 5, 6, 8
    if config.get("causal"):
        S = T
    rng = np.random.default_rng(0)
    layer = create("ScaledDotProductAttention", "att", config)
    layer.build([(T, dq), (S, dkv), (S, dkv)])
    assert layer.attention_scores() is None
    q, k, v = (rng.normal(size=s).astype(np.float32) for s in ((B, T, dq), (B, S, dkv), (B, S, dkv)))
    layer.forward(q, k, v)
    z = layer.attention_scores([1, 2])
    assert z.dtype == np.float64 and z.shape == (2, config["heads"], T, S)
    np.testing.assert_array_equal(layer.attention_scores()[1:], z)         # all samples: the same numbers
    if config.get("softcap"):
        assert np.abs(z).max() <= config["softcap"]
    if config.get("causal"):
        z = np.where(np.tril(np.ones((T, S), bool)), z, -np.inf)
    np.testing.assert_allclose(softmax(z), layer.attention_maps([1, 2]), rtol=2e-5, atol=1e-6)


def test_the_scores_are_the_formula():
    """z_ts = scale·q_t·k_s for head j with its key head j·h_kv/h, written out in float64."""
    rng = np.random.default_rng(1)
    layer = create("ScaledDotProductAttention", "att", {"heads": 2, "kv_heads": 1, "scale": 0.25})
    layer.build([(3, 4), (2, 2), (2, 2)])
    q, k, v = rng.normal(size=(1, 3, 4)), rng.normal(size=(1, 2, 2)), rng.normal(size=(1, 2, 2))
    layer.forward(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))
    z = layer.attention_scores()[0]
    q32, k32 = q.astype(np.float32).astype(np.float64), k.astype(np.float32).astype(np.float64)
    for j in range(2):
        want = 0.25 * q32[0][:, 2 * j:2 * j + 2] @ k32[0].T           # (T, S): both heads read the one key head
        np.testing.assert_allclose(z[j], want, rtol=1e-12)
