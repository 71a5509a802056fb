"""Momentum's v and RMSProp's G under zero gradients decay to 0 without passing through subnormal numbers (as Adam's
moments, tests/test_adam_subnormal.py), and the weights follow the spec's formulas (float64, no flushing) within
float32 rounding, also when gradients return after the moment was flushed."""
import numpy as np
import pytest

from engine import optimizers

LR, BETA, EPS = 1e-3, 0.9, 1e-8


def spec(name, theta, g, s):
    """One step of spec §2 in float64 without flushing: (theta, slot)."""
    if name == "momentum":
        s = BETA * s + LR * g
        return theta - s, s
    s = BETA * s + (1 - BETA) * g * g
    return theta - LR * g / (np.sqrt(s) + EPS), s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["momentum", "rmsprop"])
def test_moments_under_zero_gradients_skip_subnormals_and_follow_the_formula(name, dtype):
    tiny = np.finfo(dtype).tiny
    theta = np.array([0.5, -0.25, 1.0], dtype)
    ref, s_ref = theta.astype(np.float64), np.zeros(3)
    cfg = {"lr": LR, "beta": BETA} | ({"eps": EPS} if name == "rmsprop" else {})
    opt = optimizers.get(name, **cfg)
    steps = 800 if dtype == np.float32 else 7000              # the slot passes the subnormal range: 0.9^k·1e-6 < tiny
    flushed = False
    for k in range(1, steps + 1):
        g = np.array([1e-3, -2e-3, 0.0]) if k <= 3 or k == steps else np.zeros(3)   # dead units, then back
        opt.step(theta, g.astype(dtype), np.ones(3, dtype))
        ref, s_ref = spec(name, ref, g, s_ref)
        s = opt.slots[0]
        assert not np.any((s != 0) & (np.abs(s) < tiny)), f"subnormal {name} slot at step {k}"
        flushed = flushed or (s[0] == 0 and s_ref[0] != 0)
    assert flushed                                             # the slot reached 0 where the formula's is tiny
    np.testing.assert_allclose(theta, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
