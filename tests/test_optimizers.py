"""Single optimizer steps against the spec §2 formulas computed by hand."""
import numpy as np
import pytest

from engine import optimizers
from engine.initializers import INITS, fans, initialize, variance


def step(name, theta, g, n=1, wd=0.0, mask=None, **cfg):
    theta = np.array(theta, float)
    opt = optimizers.get(name, wd, **cfg)
    for gi in g[:n] if isinstance(g[0], list) else [g] * n:
        opt.step(theta, np.array(gi, float), np.ones_like(theta) if mask is None else np.array(mask, float))
    return theta


def test_sgd_and_gd():
    assert step("sgd", [1.0, -2.0], [0.5, 1.0], lr=0.1) == pytest.approx([0.95, -2.1])
    assert step("gd", [1.0], [2.0], lr=0.25) == pytest.approx([0.5])
    assert optimizers.get("gd").full_batch and not optimizers.get("sgd").full_batch


def test_momentum_two_steps():
    # v1 = 0.1·1 = 0.1, θ = 0.9; v2 = 0.9·0.1 + 0.1·1 = 0.19, θ = 0.71
    assert step("momentum", [1.0], [1.0], n=2, lr=0.1, beta=0.9) == pytest.approx([0.71])


def test_adagrad_two_steps():
    # G1 = 4, θ = 1 − 0.5·2/(2 + ε) = 0.5; G2 = 4 + 1 = 5, θ = 0.5 − 0.5·1/√5
    got = step("adagrad", [1.0], [[2.0], [1.0]], n=2, lr=0.5, eps=0.0)
    assert got == pytest.approx([0.5 - 0.5 / np.sqrt(5)])


def test_rmsprop_one_step():
    # G = 0.1·4 = 0.4, θ = 1 − 0.01·2/(√0.4 + 1e-8)
    assert step("rmsprop", [1.0], [2.0], lr=0.01, beta=0.9, eps=1e-8) == pytest.approx([1 - 0.02 / (np.sqrt(0.4) + 1e-8)])


def test_adam_bias_correction():
    # step 1: m = 0.1g, v = 0.001g², m̂ = g, v̂ = g² ⇒ θ −= η·g/(|g| + ε) = η·sign(g)
    assert step("adam", [1.0, 1.0], [3.0, -0.2], lr=0.01, eps=0.0) == pytest.approx([0.99, 1.01])
    # step 2 with g = 3 then 1: m = 0.09·3·… computed explicitly
    b1, b2, g1, g2 = 0.9, 0.999, 3.0, 1.0
    m = (1 - b1) * g1
    v = (1 - b2) * g1 ** 2
    m, v = b1 * m + (1 - b1) * g2, b2 * v + (1 - b2) * g2 ** 2
    want = 1.0 - 0.01 - 0.01 * (m / (1 - b1 ** 2)) / (np.sqrt(v / (1 - b2 ** 2)) + 1e-8)
    assert step("adam", [1.0], [[3.0], [1.0]], n=2, lr=0.01) == pytest.approx([want])


def test_weight_decay_only_where_masked():
    # L2: g ← g + λθ on weights; biases (mask 0) untouched
    assert step("sgd", [2.0, 2.0], [0.0, 0.0], wd=0.5, mask=[1, 0], lr=0.1) == pytest.approx([1.9, 2.0])


def test_bad_optimizer_settings_name_the_field():
    with pytest.raises(Exception, match="lr"):
        optimizers.get("adam", lr=-1.0)
    with pytest.raises(Exception, match="unknown optimizer"):
        optimizers.get("adamw")


@pytest.mark.parametrize("init", INITS)
def test_initializer_variance_matches_spec(init):
    """Spec §8: Glorot σ² = 2/(n_in + n_out), He σ² = 2/n_in; fans as (out, in, *kernel)."""
    shape = (300, 200)
    w = initialize(init, shape, np.random.default_rng(0), np.float64)
    fi, fo = fans(shape)
    want = 2 / (fi + fo) if init.startswith("glorot") else 2 / fi
    assert variance(init, shape) == want
    assert w.var() == pytest.approx(want, rel=0.03)
    assert abs(w.mean()) < 0.01
    assert fans((8, 3, 5, 5)) == (75, 200)


def test_optimizer_settings_are_declared_once():
    """The project's training settings and every optimizer share one declaration per setting (same default)."""
    from engine.project import TRAINING
    train = {h.name: h for h in TRAINING}
    for cls in optimizers.OPTIMIZERS.values():
        for h in cls.hparams:
            assert train[h.name] is h, f"{cls.name}.{h.name}"
    assert optimizers.get("sgd").config["lr"] == train["lr"].default == optimizers.get("adam").config["lr"]
