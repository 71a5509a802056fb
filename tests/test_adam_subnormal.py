"""Adam's moments under zero gradients decay to 0 without passing through subnormal numbers (each subnormal operand
costs ~100 cycles), and the weights follow the spec's formula (float64, no flushing) within float32 rounding."""
import numpy as np
import pytest

from engine import optimizers


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_moments_under_zero_gradients_skip_subnormals_and_follow_the_formula(dtype):
    tiny = np.finfo(dtype).tiny
    theta = np.array([0.5, -0.25, 1.0], dtype)
    ref = theta.astype(np.float64)
    m_ref, v_ref = np.zeros(3), np.zeros(3)
    opt = optimizers.get("adam", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    steps = 7000 if dtype == np.float32 else 7500           # m passes the subnormal range: 0.9^k·1e-3 < tiny
    for k in range(1, steps + 1):
        g = np.array([1e-3, -2e-3, 0.0]) if k <= 3 else np.zeros(3)   # then zero gradients, as for dead units
        opt.step(theta, g.astype(dtype), np.ones(3, dtype))
        m_ref = b1 * m_ref + (1 - b1) * g
        v_ref = b2 * v_ref + (1 - b2) * g * g
        ref -= lr * (m_ref / (1 - b1 ** k)) / (np.sqrt(v_ref / (1 - b2 ** k)) + eps)
        for s in opt.slots:
            assert not np.any((s != 0) & (np.abs(s) < tiny)), f"subnormal moment at step {k}"
    assert opt.slots[0][0] == 0 and opt.slots[0][1] == 0                 # m reached 0
    np.testing.assert_allclose(theta, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
