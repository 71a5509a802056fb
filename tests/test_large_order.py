"""Orders and splits of millions of samples by index arithmetic, and target statistics read in blocks."""
import numpy as np
import pytest

from engine.data import Dataset
from engine.data import dataset as dsmod
from engine.data import order
from engine.targets import target_mean, target_stats


@pytest.mark.parametrize("n", [1, 2, 3, 1000, (1 << 20) + 7])
def test_shuffled_is_a_seeded_permutation(n):
    s = order.Shuffled(n, np.random.default_rng(3))
    allv = s[:]
    assert np.array_equal(np.sort(allv), np.arange(n))
    assert np.array_equal(s[5:40], allv[5:40])                             # any part costs its own length
    assert np.array_equal(s[np.array([0, n - 1])], allv[[0, n - 1]])
    assert np.array_equal(order.Shuffled(n, np.random.default_rng(3))[:], allv)
    if n > 1000:
        assert not np.array_equal(order.Shuffled(n, np.random.default_rng(4))[:100], allv[:100])
        assert abs(np.corrcoef(np.arange(1000), allv[:1000])[0, 1]) < 0.2   # not the identity, not a stride


def test_order_small_is_numpy_permutation():
    a = order.order(np.random.default_rng(0), 50)
    assert np.array_equal(a, np.random.default_rng(0).permutation(50))
    assert isinstance(order.order(np.random.default_rng(0), order.LARGE + 1), order.Shuffled)


@pytest.mark.parametrize("m,k", [(100, 10), ((1 << 20) + 3, 100_000)])
def test_choose_marks_exactly_k(m, k):
    mark = order.choose(np.random.default_rng(1), m, k)
    assert mark.shape == (m,) and mark.sum() == k


def _large(monkeypatch, n=3000):
    monkeypatch.setattr(dsmod, "LARGE", 100)
    monkeypatch.setattr(order, "LARGE", 100)


def test_large_split_regression_exact_disjoint(monkeypatch):
    _large(monkeypatch)
    x = np.arange(3000, dtype=np.float32).reshape(-1, 1)
    ds = Dataset(x, x * 2, "regression")
    tr, va = ds.split(0.2, seed=5)
    a, b = np.asarray(tr.x)[:, 0], np.asarray(va.x)[:, 0]
    assert len(b) == 600 and len(a) == 2400
    assert not set(a) & set(b) and len(set(a) | set(b)) == 3000
    assert np.array_equal(np.asarray(tr.y)[:, 0], a * 2)                    # targets stay with their rows
    tr2, va2 = ds.split(0.2, seed=5)
    assert np.array_equal(np.asarray(va2.x)[:, 0], b)                      # seeded
    assert not np.array_equal(np.asarray(ds.split(0.2, seed=6)[1].x)[:, 0], b)


def test_large_split_classes_stratified(monkeypatch):
    _large(monkeypatch)
    for k in (3, 40):                                          # a few classes, and many (sorted by class)
        y = np.arange(4000) % k
        ds = Dataset(np.arange(4000, dtype=np.float32)[:, None], y, "multiclass")
        tr, va = ds.split(0.25, seed=0)
        assert len(tr) + len(va) == 4000
        counts = np.bincount(va.y, minlength=k)
        assert np.all(np.abs(counts - np.bincount(y) * 0.25) <= 1)
        assert not set(np.asarray(tr.x)[:, 0]) & set(np.asarray(va.x)[:, 0])
        assert np.array_equal(np.asarray(va.x)[:, 0].astype(int) % k, va.y)


def test_target_stats_in_blocks_match_whole():
    rng = np.random.default_rng(0)
    y = (rng.normal(1e4, 3, (1001, 2))).astype(np.float32)                 # a large mean: no cancellation
    ds = Dataset(rng.normal(size=(1001, 3)), y, "regression")
    m, s = target_stats(ds, chunk=64)
    yy = y.astype(np.float64)
    assert np.allclose(m, yy.mean(0), rtol=1e-12) and np.allclose(s, yy.std(0), rtol=1e-9)
    assert np.allclose(target_mean(ds, (2,), chunk=10), yy.mean(0))
    const = Dataset(np.zeros((5, 1)), np.full((5, 1), 3.0), "regression")
    assert target_stats(const)[1][0] == 1.0


def test_target_stats_per_step_counts_valid_steps_only():
    y = np.zeros((4, 5, 1), np.float32)
    lengths = np.array([1, 2, 5, 3])
    for i, n in enumerate(lengths):
        y[i, :n, 0] = np.arange(n) + 10 * i
        y[i, n:, 0] = 1e6                                                   # padding: never counted
    ds = Dataset(np.zeros((4, 5, 2), np.float32), y, "regression", lengths=lengths)
    valid = np.concatenate([np.arange(n) + 10 * i for i, n in enumerate(lengths)])
    m, s = target_stats(ds, chunk=3)
    assert m.shape == (1,) and np.isclose(m[0], valid.mean()) and np.isclose(s[0], valid.std())


def test_table_moments_from_cached_totals(tmp_path, monkeypatch):
    """A table split's standardisation sums come from the cached totals minus the rows left out, missing
    cells counted at the training fill value: the same as summing the rows as read."""
    from engine.data import load
    monkeypatch.setenv("LAYERBOARD_CACHE", str(tmp_path / "cache"))
    _large(monkeypatch)
    rng = np.random.default_rng(0)
    p = tmp_path / "t.csv"
    p.write_text("a,b,c,y\n" + "".join(
        f"{'' if i % 13 == 0 else f'{rng.normal(100, 5):.3f}'},{rng.normal():.3f},{'xyz'[i % 3]},{rng.normal():.3f}\n"
        for i in range(3000)))
    ds = load({"kind": "csv", "path": str(p), "target": "y"})
    tr, va = ds.split(0.2, seed=0)
    for part in (tr, va, ds):
        x = np.asarray(part.x, np.float64)                                  # the rows as the model reads them
        s, ss = part.x.moments()
        assert np.allclose(s, x.sum(0)) and np.allclose(ss, (x * x).sum(0))
    from engine.graph import Graph
    from engine.model import Model
    g = Graph()
    g.chain(("x", "Input", {"shape": [ds.x.shape[1]], "standardize": True}), ("o", "Dense", {"units": 1}))
    inp = Model(g).layers["x"]
    inp.adapt(tr.x)
    x = np.asarray(tr.x, np.float64)
    assert np.allclose(inp.p["mean"], x.mean(0), atol=1e-6) and np.allclose(inp.p["std"], x.std(0), rtol=1e-5)
