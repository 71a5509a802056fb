"""LayerNorm's kernels in float32 against the float64 formula, on rows far from zero (where sums in float32 lose
the mean unless it is corrected) and on ordinary rows, with the residual added in the same pass."""
import numpy as np
import pytest

from engine.layers.normalization import _ln_bwd, _ln_fwd


def _ref(s, g, b, dy, eps=1e-5):
    """y, dx, dγ, dβ in float64: y = γ·x̂ + β, x̂ = (s − μ)/√(σ² + ε)."""
    mu, var = s.mean(1, keepdims=True), s.var(1, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xh = (s - mu) * inv
    gd = dy * g
    dx = inv * (gd - gd.mean(1, keepdims=True) - xh * (gd * xh).mean(1, keepdims=True))
    return g * xh + b, dx, (dy * xh).sum(0), dy.sum(0)


@pytest.mark.parametrize("centre,spread", [(0.0, 1.0), (1000.0, 0.01), (-3e4, 2.0)])
@pytest.mark.parametrize("residual", [False, True])
def test_layernorm_kernels_match_the_float64_formula(centre, spread, residual):
    rng = np.random.default_rng(0)
    m, f = 37, 64
    x = (centre + spread * rng.normal(size=(m, f))).astype(np.float32)
    r = (0.5 * spread * rng.normal(size=(m, f))).astype(np.float32) if residual else x[:0, :0]
    g, b = rng.normal(1, 0.2, f).astype(np.float32), rng.normal(0, 0.2, f).astype(np.float32)
    dy = rng.normal(size=(m, f)).astype(np.float32)
    y, xh, inv = np.empty_like(x), np.empty_like(x), np.empty(m, np.float32)
    _ln_fwd(x, r, g, b, 1e-5, y, xh, inv)
    dx, dg, db = np.empty_like(x), np.empty(f, np.float32), np.empty(f, np.float32)
    _ln_bwd(dy, xh, inv, g, dx, dg, db, True)
    s = (x + r if residual else x).astype(np.float64)          # the sum is a float32 value in the kernel too
    ry, rdx, rdg, rdb = _ref(s, g.astype(np.float64), b.astype(np.float64), dy.astype(np.float64))
    for got, want in ((y, ry), (dx, rdx), (dg, rdg), (db, rdb)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5 * np.abs(want).max())
