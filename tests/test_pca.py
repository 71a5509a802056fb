"""PCA (spec §6): the two-feature closed form and the general PCA against numpy.linalg.eigh; layer activations."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Graph
from engine.errors import DataError, LayerboardError, ShapeError
from engine.model import Model
from engine.pca import PCA, activations, pca2, rank1_reconstruction


def same_direction(u, v, atol=1e-9):
    """u = ±v (eigenvectors are defined up to sign)."""
    return np.allclose(u, v, atol=atol) or np.allclose(u, -v, atol=atol)


def two_feature_data(seed, n):
    """Correlated 2 × n data with random scales, rotation and offset."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(2, n)) * rng.uniform(0.1, 5, size=(2, 1))
    t = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return rot @ z + rng.normal(0, 10, size=(2, 1))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 60))
def test_closed_form_matches_eigh(seed, n):
    d = two_feature_data(seed, n)
    r = pca2(d)
    x = d - d.mean(axis=1, keepdims=True)
    A = x @ x.T
    assert np.allclose([[r.a, r.b], [r.b, r.c]], A)
    lam, vec = np.linalg.eigh(A)                       # ascending
    scale = lam[1]
    assert r.lam[0] >= r.lam[1]
    assert abs(r.lam[0] - lam[1]) <= 1e-9 * scale and abs(r.lam[1] - lam[0]) <= 1e-9 * scale
    assert np.isclose(np.linalg.norm(r.v1), 1.0)
    if lam[1] - lam[0] > 1e-6 * scale:                 # a distinct top eigenvalue: its direction is unique
        assert same_direction(r.v1, vec[:, 1], atol=1e-6)
        assert np.allclose(np.abs(r.h1), np.abs(vec[:, 1] @ x), atol=1e-6 * np.sqrt(scale))
    assert np.allclose(A @ r.v1, r.lam[0] * r.v1, atol=1e-9 * scale)
    evr1 = lam[1] / lam.sum()
    assert np.isclose(r.evr[0], evr1) and np.isclose(r.evr[1], 1 - evr1) and np.isclose(sum(r.evr), 1)
    assert np.allclose(r.h1, r.v1 @ x)


def test_closed_form_uses_the_spec_eigenvector_and_handles_b_zero():
    r = pca2(np.array([[1.0, 2.0, 4.0, 7.0], [0.0, 3.0, 1.0, 5.0]]))
    u1 = np.array([r.lam[0] - r.c, r.b])               # spec: u₁ = (λ₁ − c, b), v₁ = u₁/‖u₁‖
    assert np.allclose(r.v1, u1 / np.linalg.norm(u1))
    assert np.isclose(r.lam[0] + r.lam[1], r.a + r.c) and np.isclose(r.lam[0] * r.lam[1], r.a * r.c - r.b ** 2)
    # b = 0: uncorrelated axes; the larger variance wins, whichever feature it is
    wide_y = np.array([[1.0, -1.0, 1.0, -1.0], [3.0, 3.0, -3.0, -3.0]])
    for d, axis in ((wide_y, [0.0, 1.0]), (wide_y[::-1], [1.0, 0.0])):
        r = pca2(d)
        assert r.b == 0 and same_direction(r.v1, np.array(axis)) and np.isclose(r.evr[0], 0.9)
        assert r.lam == (36.0, 4.0)
    r = pca2(np.array([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]]))    # a = c, b = 0: isotropic
    assert np.isclose(np.linalg.norm(r.v1), 1) and r.evr == (0.5, 0.5)
    r = pca2(np.ones((2, 5)))                                                  # no variance at all
    assert r.lam == (0.0, 0.0) and r.evr == (0.0, 0.0) and np.all(r.h1 == 0)
    with pytest.raises(DataError, match=r"shape \(2, n\), got \(3, 4\)"):
        pca2(np.zeros((3, 4)))


def test_tiny_off_diagonal_keeps_the_direction_accurate():
    """a < c with b ≪ c: λ₁ − c is computed without cancellation."""
    A_like = np.array([[1.0, 0.0], [0.0, 1e6]])
    t = 1e-7
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    d = rot @ np.sqrt(A_like) @ np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    r = pca2(d)
    _, vec = np.linalg.eigh(d @ d.T)
    assert same_direction(r.v1, vec[:, 1], atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_rank1_reconstruction_spec_form(seed):
    d = two_feature_data(seed, 30)
    r = pca2(d)
    B = np.repeat(d.mean(axis=1, keepdims=True), d.shape[1], axis=1)           # (2, n) row means
    C = r.v1[:, None]                                                           # (2, 1)
    spec = B + C @ C.T @ (d - B)
    assert np.allclose(r.reconstruct(), spec) and np.allclose(rank1_reconstruction(d), spec)
    resid = d - spec
    assert np.isclose(np.sum(resid ** 2), r.lam[1])                             # what is lost is λ₂
    assert np.allclose(PCA(1).fit(d.T).reconstruct(d.T), spec.T)


@pytest.mark.parametrize("n,d", [(50, 8), (20, 5), (6, 12), (200, 3)])
def test_general_pca_matches_eigh_of_the_covariance(n, d):
    rng = np.random.default_rng(n * 100 + d)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(0, 3, size=d)
    p = PCA().fit(x)
    c = x - x.mean(axis=0)
    lam, vec = np.linalg.eigh(c.T @ c / (n - 1))
    lam, vec = lam[::-1], vec[:, ::-1]                                          # descending
    r = min(n, d)
    assert np.allclose(p.mean, x.mean(axis=0))
    assert np.allclose(p.explained_variance, lam[:r], atol=1e-9 * lam[0])
    assert np.allclose(p.explained_variance_ratio, lam[:r] / lam.sum())
    assert p.components.shape == (r, d) and np.allclose(p.components @ p.components.T, np.eye(r))
    for i in range(r - (1 if n <= d else 0)):                                   # the last one is 0-variance if n ≤ d
        assert same_direction(p.components[i], vec[:, i], atol=1e-6)
    s = p.transform(x)
    assert np.allclose(s.var(axis=0, ddof=1), p.explained_variance)
    assert np.allclose(p.inverse_transform(s), x)                               # all components: exact
    p2 = PCA(2).fit(x)
    assert p2.transform(x).shape == (n, 2) and len(p2.explained_variance_ratio) == r
    err = np.sum((x - p2.reconstruct(x)) ** 2) / (n - 1)
    assert np.isclose(err, lam[2:].sum(), atol=1e-8 * lam[0])                   # rank-2 loses the rest


def test_general_pca_signs_are_deterministic_and_bad_data_is_refused():
    x = np.random.default_rng(0).normal(size=(30, 4))
    a, b = PCA().fit(x).components, PCA().fit(x[::-1]).components
    assert np.allclose(a, b)
    with pytest.raises(DataError, match="NaN"):
        PCA().fit(np.full((3, 2), np.nan))
    with pytest.raises(DataError, match="samples, features"):
        PCA().fit(np.zeros(5))


def small_model():
    g = Graph()
    prev = None
    for name, t, c in (("x", "Input", {"shape": [2, 3]}), ("f", "Flatten", {}), ("h", "Dense", {"units": 5}),
                       ("r", "ReLU", {}), ("o", "Dense", {"units": 2}), ("s", "Softmax", {})):
        g.add_node(t, name, c)
        if prev:
            g.connect(prev, name)
        prev = name
    return Model(g, dtype=np.float64, seed=3)


def test_activations_are_per_sample_flattened_and_batched():
    m = small_model()
    x = np.random.default_rng(0).normal(size=(11, 2, 3))
    a = activations(m, "r", x, batch_size=4)
    W, b = m.layers["h"].p["W"], m.layers["h"].p["b"]
    assert a.shape == (11, 5) and np.allclose(a, np.maximum(x.reshape(11, 6) @ W.T + b, 0))
    assert np.array_equal(activations(m, "x", x, batch_size=3), x.reshape(11, 6))
    assert np.allclose(activations(m, "s", x), m.predict(x))
    assert activations(m, "h", x[:0]).shape == (0, 5)
    with pytest.raises(LayerboardError, match="no layer named 'nope'"):
        activations(m, "nope", x)
    with pytest.raises(ShapeError, match=r"expects samples of shape \(2, 3\)"):
        activations(m, "r", np.zeros((2, 6)))
