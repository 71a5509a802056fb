"""Every registered layer and every loss: analytic gradients equal float64 central differences."""
import numpy as np
import pytest

from engine import losses
from engine.layers import REGISTRY
from gradcheck import check_layer, numeric

CASES = [(t, c, s) for t, cls in sorted(REGISTRY.items()) for c, s, *o in cls.samples()
         if not (o and o[0].get("ints"))]      # integer-id samples: tests/test_recurrent.py


def test_every_layer_is_enrolled():
    """Each layer type declares sample cases, except Input (it has no gradient)."""
    missing = [t for t, cls in REGISTRY.items() if not cls.samples() and t != "Input"]
    assert not missing


@pytest.mark.parametrize("type,config,shapes", CASES, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(CASES)])
def test_layer_gradients(type, config, shapes):
    check_layer(type, config, shapes)


def _targets(name, out, rng):
    if name == "cce":
        return rng.integers(0, out.shape[1], len(out))
    if name == "bce":
        return rng.integers(0, 2, out.shape).astype(np.float64)
    return rng.normal(0, 1, out.shape)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
@pytest.mark.parametrize("fused", [False, True])
def test_loss_gradients(name, fused):
    loss = losses.get(name)
    if fused and not loss.fuses:
        pytest.skip("this loss has no fused form")
    rng = np.random.default_rng(0)
    out = rng.normal(0, 1, (5, 3 if name != "bce" else 1))
    if not fused and name == "bce":
        out = 1 / (1 + np.exp(-out))                          # probabilities
    if not fused and name == "cce":
        out = np.exp(out) / np.exp(out).sum(1, keepdims=True)
    y = _targets(name, out, rng)
    _, d = loss(out, y, fused)
    np.testing.assert_allclose(d, numeric(lambda: loss(out, y, fused)[0], out), rtol=1e-5, atol=1e-7)


def test_bce_matches_spec_formula():
    """Spec §1/§9: L = −(1/B) Σ [y ln ŷ + (1 − y) ln(1 − ŷ)], fused from logits too."""
    z = np.array([[-2.0], [0.5], [3.0]])
    y = np.array([0.0, 1.0, 1.0])
    p = 1 / (1 + np.exp(-z[:, 0]))
    want = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert losses.get("bce")(z, y, fused=True)[0] == pytest.approx(want, rel=1e-12)
    assert losses.get("bce")(p[:, None], y)[0] == pytest.approx(want, rel=1e-6)
    _, dz = losses.get("bce")(z, y, fused=True)
    np.testing.assert_allclose(dz[:, 0], (p - y) / 3)         # ∂L/∂z = ŷ − y, averaged over B


def test_mse_matches_spec_formula():
    """Spec §9: L = (1/B) Σ ||ŷ − y||²."""
    out, y = np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([[0.0, 2.0], [1.0, 1.0]])
    assert losses.get("mse")(out, y)[0] == pytest.approx((1 + 0 + 1 + 4) / 2)


def test_bce_fused_is_stable_for_large_logits():
    val, d = losses.get("bce")(np.array([[800.0], [-800.0]]), np.array([0.0, 1.0]), fused=True)
    assert val == pytest.approx(800.0) and np.all(np.isfinite(d))
