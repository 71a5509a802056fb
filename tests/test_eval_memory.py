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
    """heads·T² float32 values per attention map: T = 2,048 with 4 heads is 64 MiB per sample."""
    m = Model(transformer(2048))
    assert m.sample_bytes() >= 4 * 2048 ** 2 * 4
    assert Model(transformer(1024)).sample_bytes() < m.sample_bytes() / 3              # T² dominates
    assert m.batch_for(budget=1 << 30) <= 16 and m.batch_for(budget=1) == 1
    assert Model(transformer(8)).batch_for(budget=1 << 30) == 512                        # small samples: capped


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
