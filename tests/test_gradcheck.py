"""Every registered layer and every loss: analytic gradients equal float64 central differences (training and
evaluation mode), non-contiguous, read-only and float32 inputs, backward twice, output shapes and config round-trip."""
import numpy as np
import pytest

from engine import losses
from engine.layers import REGISTRY, Layer, create
from gradcheck import (cases, check_backward_twice, check_config, check_float32, check_layer, check_non_contiguous,
                       check_read_only, check_shapes, declares_samples, exempt, numeric)

CASES = cases()
IDS = [f"{t}-{i}" for i, (t, *_) in enumerate(CASES)]



def params(check):
    """CASES as pytest params (without the layers exempted from gradients for the gradient checks)."""
    grad = check in ("train", "eval")
    return [pytest.param(t, c, s, o, id=i) for (t, c, s, o), i in zip(CASES, IDS) if not (grad and exempt(t, "gradient"))]


def test_gradient_exemptions_name_a_reason():
    """Exempted layers are listed with why (tests/gradcheck.py EXEMPT); all others are checked."""
    assert {t for t in REGISTRY if exempt(t, "gradient")} == {"OnnxNode"}
    assert all(len(exempt(t, "gradient")) > 40 for t in REGISTRY if exempt(t, "gradient"))


def test_every_layer_is_enrolled():
    """Each layer type declares its own sample cases (not the base class default), except Input."""
    missing = [t for t, cls in REGISTRY.items() if t != "Input" and not (declares_samples(cls) and cls.samples())]
    assert not missing

    class Undeclared(Layer):                                  # inherits Layer.samples: must count as missing
        pass

    class Family(Layer):
        @classmethod
        def samples(cls):
            return [({}, [(2,)])]

    class Member(Family):                                     # a family's shared samples count
        pass
    assert not declares_samples(Undeclared) and declares_samples(Member)


@pytest.mark.parametrize("type,config,shapes,opts", params("train"))
def test_layer_gradients(type, config, shapes, opts):
    check_layer(type, config, shapes, opts, training=True)


@pytest.mark.parametrize("type,config,shapes,opts", params("eval"))
def test_layer_gradients_in_eval_mode(type, config, shapes, opts):
    """Evaluation-mode forward, then backward (e.g. a gradient map of a trained model)."""
    check_layer(type, config, shapes, opts, training=False)


@pytest.mark.parametrize("type,config,shapes,opts", params("strided"))
def test_non_contiguous_input(type, config, shapes, opts):
    check_non_contiguous(type, config, shapes, opts)


@pytest.mark.parametrize("type,config,shapes,opts", params("read-only"))
def test_read_only_input(type, config, shapes, opts):
    """As batches of a read-only memory map: no layer writes into its input or needs it writable."""
    check_read_only(type, config, shapes, opts)


@pytest.mark.parametrize("type,config,shapes,opts", params("float32"))
def test_float32_agrees_with_float64(type, config, shapes, opts):
    check_float32(type, config, shapes, opts)


@pytest.mark.parametrize("type,config,shapes,opts", params("twice"))
def test_backward_twice_gives_the_same_gradients(type, config, shapes, opts):
    check_backward_twice(type, config, shapes, opts)


@pytest.mark.parametrize("type,config,shapes,opts", params("shape"))
def test_output_shape_is_compute_output_shape(type, config, shapes, opts):
    check_shapes(type, config, shapes, opts)


@pytest.mark.parametrize("type,config,shapes,opts", params("config"))
def test_config_round_trip(type, config, shapes, opts):
    check_config(type, config)


@pytest.mark.parametrize("x", [np.asfortranarray(np.linspace(-3, 3, 24).reshape(2, 3, 4)),
                               np.linspace(-3, 3, 24).reshape(4, 3, 2).T,
                               np.linspace(-3, 3, 48).reshape(2, 3, 8)[:, :, ::2]])
def test_sigmoid_of_non_contiguous_input(x):
    """σ(x) = 1/(1 + e^(−x)) for Fortran-ordered, transposed and strided x (once the output of a copy)."""
    s = create("Sigmoid", "s")
    s.build([x.shape[1:]])
    np.testing.assert_allclose(s.forward(x), 1 / (1 + np.exp(-x)), rtol=1e-12)


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


def test_cce_from_logits_stays_finite_when_a_probability_underflows():
    """L = ln Σ e^(z_j) − z_y: for z = (0, 1000), y = 0 the loss is 1000, though softmax(z)_0 = e^-1000 is 0."""
    for dt in (np.float32, np.float64):
        val, d = losses.get("cce")(np.array([[0.0, 1000.0]], dt), np.array([0]), fused=True)
        assert val == pytest.approx(1000.0, rel=1e-6) and np.allclose(d, [[-1.0, 1.0]])


# ---- the checks themselves can fail: each catches a layer with one known kind of bug ----
class _Scale(Layer):
    """y = 2x (correct); subclasses below break one rule each."""

    def forward(self, x, training=False):
        self.shape = x.shape
        return 2 * x

    def backward(self, dy):
        return (2 * dy,)


class _RavelCopy(_Scale):                                     # writes into a .ravel() copy of non-contiguous x
    def forward(self, x, training=False):
        y = np.empty_like(x)
        flat = y.ravel()
        flat[...] = 2 * x.ravel()
        return y


class _Accumulates(Layer):                                   # y = w·x with dw accumulated: not reentrant
    def params(self, in_shapes):
        from engine.layers import Param
        return {"w": Param((1,), 1.0)}

    def forward(self, x, training=False):
        self.x = x
        return self.p["w"][0] * x

    def backward(self, dy):
        self.g["w"] += np.sum(dy * self.x)
        return (self.p["w"][0] * dy,)


class _StaleEval(_Scale):                                    # y = x·|x|; |x| cached by training forwards only
    def forward(self, x, training=False):
        if training:
            self.a = np.abs(x)
        return x * np.abs(x)

    def backward(self, dy):
        return (2 * dy * self.a,)


class _InPlace(_Scale):                                      # y = relu(x) computed in x's own memory
    def forward(self, x, training=False):
        self.x = np.maximum(x, 0, out=x)
        return self.x

    def backward(self, dy):
        return (dy * (self.x > 0),)


class _WrongShape(_Scale):
    def compute_output_shape(self, in_shapes):
        return in_shapes[0][:-1] + (in_shapes[0][-1] + 1,)


class _LossyConfig(_Scale):
    from engine.hparams import HP
    hparams = (HP("k", "int", 1, min=1),)

    def get_config(self):
        return {"k": self.config["k"] + 1}


class _LeaksIntoPadding(_Scale):                             # y_t = Σ_{s ≥ t} x_s reads padded steps
    def forward(self, x, training=False):
        return np.cumsum(x[:, ::-1], axis=1)[:, ::-1]

    def backward(self, dy):
        return (np.cumsum(dy, axis=1),)


class _MaskedCumsum(_Scale):                                  # y_t = Σ_{s ≤ t, s valid} x_s, 0 at padded steps
    def forward(self, x, training=False):
        m = self.in_masks[0] if self.in_masks and self.in_masks[0] is not None else np.ones(x.shape[:2], bool)
        self.m = m[..., None]                                 # (B, T, 1)
        return np.cumsum(x * self.m, axis=1) * self.m

    def backward(self, dy):
        return (np.cumsum((dy * self.m)[:, ::-1], axis=1)[:, ::-1] * self.m,)


@pytest.mark.parametrize("cls,check", [
    (_RavelCopy, lambda t: check_non_contiguous(t, {}, [(3, 4)])),
    (_Accumulates, lambda t: check_backward_twice(t, {}, [(4,)])),
    (_StaleEval, lambda t: check_layer(t, {}, [(4,)], training=False)),
    (_InPlace, lambda t: check_read_only(t, {}, [(4,)])),
    (_WrongShape, lambda t: check_shapes(t, {}, [(4,)])),
    (_LossyConfig, lambda t: check_config(t, {"k": 2})),
    (_LeaksIntoPadding, lambda t: check_layer(t, {}, [(5, 2)], {"mask": True})),
])
def test_each_check_catches_its_bug(monkeypatch, cls, check):
    name = cls.__name__
    monkeypatch.setitem(REGISTRY, name, type(name, (cls,), {"type": name}))
    with pytest.raises(AssertionError):
        check(name)


def test_masked_layer_passes_the_check(monkeypatch):
    monkeypatch.setitem(REGISTRY, "MaskedCumsum", type("MaskedCumsum", (_MaskedCumsum,), {"type": "MaskedCumsum"}))
    check_layer("MaskedCumsum", {}, [(5, 2)], {"mask": True})
    check_layer("MaskedCumsum", {}, [(5, 2)], {"mask": True}, training=False)
    check_non_contiguous("MaskedCumsum", {}, [(5, 2)], {"mask": True})
