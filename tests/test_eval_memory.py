"""Evaluation and prediction batches sized from a sample's memory cost; --out is written before the final
evaluation (issue 21 item 4: a T = 2,048 transformer was killed in evaluation before its weights were saved)."""
import numpy as np
import pytest

from engine import Graph, model as model_mod
from engine.data import Dataset
from engine.model import Model
from engine.project import Project, training_config
from engine.trainer import Trainer


def transformer(T, d=16, heads=4):
    g = Graph()
    g.chain(("x", "Input", {"shape": [T, d]}), ("att", "MultiHeadSelfAttention", {"heads": heads}),
            ("pool", "TimePool", {"mode": "mean"}), ("o", "Dense", {"units": 1}))
    return g


def test_a_samples_cost_counts_attention_maps_quadratically():
    """heads·T² float32 values per attention map where they are held (T ≤ 128: 4 heads at T = 128 is 256 KiB per
    sample); beyond, in key blocks, the maps are never held and the cost grows linearly with T."""
    from engine.layers.attention import TILE_MAX_T
    m = Model(transformer(TILE_MAX_T))
    assert m.sample_bytes() >= 4 * TILE_MAX_T ** 2 * 4
    assert Model(transformer(TILE_MAX_T // 2)).sample_bytes() < m.sample_bytes() / 3        # T² dominates
    long = Model(transformer(2048))
    assert long.sample_bytes() < 4 * 2048 ** 2 * 4 / 20                                     # no h·T² term
    assert long.sample_bytes() <= 2.1 * Model(transformer(1024)).sample_bytes()             # linear in T
    assert long.batch_for(budget=1 << 30) == 512 and long.batch_for(budget=1) == 1
    assert Model(transformer(8)).batch_for(budget=1 << 30) == 512                            # small samples: capped


def sdpa(T, config):
    g = Graph()
    g.add_node("Input", "x", {"shape": [T, 8]})
    for k in "qkv":
        g.chain((k, "Dense", {"units": 8}), after="x")
    g.add_node("ScaledDotProductAttention", "att", config)
    for i, k in enumerate("qkv"):
        g.connect(k, "att", i)
    return g


@pytest.mark.parametrize("config,held", [({"heads": 2}, False), ({"heads": 2, "softcap": 5.0}, True)])
def test_long_sdpa_counts_maps_only_where_its_forward_keeps_them(config, held):
    """A softcap runs per tile (the maps are kept, 2·T² values), otherwise key blocks (2·T log-sum-exps)."""
    b = Model(sdpa(1024, config)).sample_bytes()
    assert (b >= 2 * 1024 ** 2 * 4) == held


def test_a_long_forward_never_allocates_the_maps():
    """The peak memory of an evaluation forward at T = 512 (key blocks) stays far below heads·T² per sample, and
    within what sample_bytes counts."""
    import tracemalloc
    m = Model(transformer(512), seed=0)
    x = np.random.default_rng(0).normal(size=(2, 512, 16)).astype(np.float32)
    m.forward(x)                                                        # scratch buffers made once
    tracemalloc.start()
    try:
        m.forward(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 4 * 512 ** 2 * 4 / 4                              # a quarter of the two samples' maps
    assert peak <= 2 * m.sample_bytes() * 1.5


@pytest.fixture
def small_budget(monkeypatch):
    """A memory budget of 5 samples of whatever model asks."""
    def budget():
        return 5 * budget.model.sample_bytes()
    monkeypatch.setattr(model_mod, "memory_budget", budget)
    return budget


def recorded_batches(model):
    sizes, forward = [], model.forward

    def spy(x, *a, **k):
        sizes.append(len(next(iter(x.values())) if isinstance(x, dict) else x))    # predict passes {Input: batch}
        return forward(x, *a, **k)
    model.forward = spy
    return sizes


def test_evaluate_and_predict_batches_follow_the_memory_budget(small_budget):
    rng = np.random.default_rng(0)
    m = Model(transformer(32), seed=0)
    small_budget.model = m
    ds = Dataset(rng.normal(size=(23, 32, 16)).astype(np.float32), rng.normal(size=(23, 1)).astype(np.float32),
                 "regression", "t")
    tr = Trainer(m, training_config({"loss": "mse", "epochs": 1, "batch_size": 4}), ds)
    sizes = recorded_batches(m)
    tr.evaluate(ds)
    assert sizes and max(sizes) == 5 and sum(sizes) == 23
    sizes.clear()
    m.predict(ds.x)
    assert max(sizes) == 5 and sum(sizes) == 23


def test_pca_activations_follow_the_memory_budget(small_budget):
    from engine.pca import activations
    m = Model(transformer(32), seed=0)
    small_budget.model = m
    sizes = recorded_batches(m)
    a = activations(m, "att", np.ones((12, 32, 16), np.float32))
    assert a.shape == (12, 32 * 16) and max(sizes) == 5 and sum(sizes) == 12


def test_cli_train_writes_out_before_the_final_evaluation(tmp_path, monkeypatch):
    from engine import cli
    from engine.trainer import Trainer as T
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 6, 16)).astype(np.float32),
             y=rng.normal(size=(40, 1)).astype(np.float32))
    p = Project(transformer(6), training_config({"loss": "mse", "epochs": 1, "validation_split": 0.0}),
                {"kind": "npz", "path": "d.npz", "x": "x", "y": "y", "task": "regression"})
    p.save(tmp_path / "p.json")

    def out_of_memory(self, *a, **k):
        raise MemoryError("the final evaluation")
    monkeypatch.setattr(T, "summary", out_of_memory)
    with pytest.raises(MemoryError):
        cli.main(["train", str(tmp_path / "p.json"), "--out", str(tmp_path / "w.npz")])
    assert (tmp_path / "w.npz").exists()
