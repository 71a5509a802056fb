"""The RNN's time-loop kernels (engine/layers/rnn.py): the grad_hidden tap recomputed after the step, masks with
padded steps between valid ones, float32 against float64, learn_h0 with and without."""
import numpy as np
import pytest
from gradcheck import build, numeric


def _loss(layer, x, u):
    return float((layer.forward(x, training=True) * u).sum())


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("seqs", [False, True])
@pytest.mark.parametrize("h0", [False, True])
def test_gradients_with_padded_steps_between_valid_ones(act, seqs, h0):
    """A padded step keeps the state and passes the gradient on unchanged, wherever it is (float64 differences)."""
    rng = np.random.default_rng(7)
    layer = build("RNN", {"units": 4, "activation": act, "return_sequences": seqs, "learn_h0": h0}, [(6, 3)])
    x = rng.normal(0, 1, (3, 6, 3))
    m = np.array([[1, 0, 1, 1, 0, 1], [1, 1, 0, 0, 1, 0], [0, 1, 1, 1, 1, 1]], bool)
    layer.in_masks = [m]
    y = layer.forward(x, training=True)
    u = rng.normal(0, 1, y.shape)
    (dx,) = layer.backward(u)
    grads = {k: v.copy() for k, v in layer.g.items()}
    np.testing.assert_allclose(dx, numeric(lambda: _loss(layer, x, u), x), rtol=1e-6, atol=1e-8)
    for k, p in layer.p.items():
        np.testing.assert_allclose(grads[k], numeric(lambda: _loss(layer, x, u), p), rtol=1e-6, atol=1e-8,
                                   err_msg=k)
    if seqs:                                         # padded outputs are 0 and their upstream gradient is ignored
        assert np.all(y[~m] == 0)


def test_grad_hidden_tap_read_after_the_weights_moved_is_the_steps_gradient():
    """The tap reruns the δ recurrence when read: it must use the weights of the step, not the updated ones."""
    rng = np.random.default_rng(8)
    layer = build("RNN", {"units": 5}, [(7, 2)], dtype=np.float32)
    x = rng.normal(0, 1, (4, 7, 2)).astype(np.float32)
    u = rng.normal(0, 1, (4, 5)).astype(np.float32)
    lengths = np.array([7, 3, 5, 1])
    layer.in_masks = [np.arange(7)[None, :] < lengths[:, None]]
    layer.forward(x, training=True)
    layer.backward(u)
    first = layer.taps["grad_hidden"].copy()
    layer.forward(x, training=True)
    layer.backward(u)
    layer.p["W"][...] += 0.5                         # as the optimizer does, in place, before a view reads the tap
    layer.p["U"][...] -= 0.5
    later = layer.taps["grad_hidden"]
    assert later.shape == (4, 7, 5) and np.array_equal(first, later)
    assert np.all(later[1, 3:] == 0) and np.all(later[3, 1:] == 0) and np.any(later[1, :3] != 0)


def test_float32_kernels_match_float64():
    """The float32 path (rational tanh with FMAs, BLAS GEMMs) agrees with float64 within float32 rounding."""
    rng = np.random.default_rng(9)
    out = {}
    for dt in (np.float32, np.float64):
        layer = build("RNN", {"units": 64, "return_sequences": False}, [(50, 8)], seed=3, dtype=dt)
        x = rng.normal(0, 1, (32, 50, 8)) if dt is np.float32 else out[np.float32][0]
        y = layer.forward(x.astype(dt), training=True)
        layer.backward(np.ones_like(y))
        out[dt] = (x, y, {k: v.copy() for k, v in layer.g.items()})
    (_, y32, g32), (_, y64, g64) = out[np.float32], out[np.float64]
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=2e-5)
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-3 * np.abs(g64[k]).max(), err_msg=k)
