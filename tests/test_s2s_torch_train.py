"""The exported PyTorch train.py trains an encoder–decoder as Layerboard does: the decoder reads the target shifted
right after <start> (teacher forcing) and the cross-entropy is the mean over valid target steps only (the same
value as the engine's for the same weights); run as a subprocess on a small pairs file."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from engine.data import load
from engine.losses import get as get_loss
from engine.model import Model
from engine.project import Project
from engine.seq2seq import steps_mask, teacher_inputs, transformer
from engine.torch_export import export_project, from_state_dict
from safetensors.numpy import load_file


def project(d, cell=None):
    """A small reverse-the-letters pairs project (transformer, or recurrent with `cell`)."""
    rng = np.random.default_rng(1)
    rows = ["source,target"] + [f"{s},{s[::-1]}" for s in
                                ("".join(rng.choice(list("abcde"), rng.integers(1, 6))) for _ in range(160))]
    (d / "pairs.csv").write_text("\n".join(rows) + "\n")
    ref = {"kind": "pairs", "path": "pairs.csv", "source": "source", "target": "target", "tokens": "char"}
    ds = load(ref, d)
    S, T, V, W = ds.x.shape[1], ds.y.shape[1], len(ds.vocab), len(ds.target_vocab)
    from engine.seq2seq import recurrent
    g = transformer(S, T, V, W, d=16, heads=2) if cell is None else recurrent(S, T, V, W, d=16, cell=cell)
    proj = {"format": "layerboard-project", "version": 1, "name": "Reverse", "dataset": ref, "graph": g.to_dict(),
            "training": {"loss": "cce", "optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 2,
                         "validation_split": 0.25, "seed": 0}}
    (d / "p.json").write_text(json.dumps(proj))
    return Project.load(d / "p.json")


def run_train(out, *args):
    pytest.importorskip("torch")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    r = subprocess.run([sys.executable, "train.py", *args], cwd=out, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(s) for s in r.stdout.splitlines() if s.startswith("{")]


def engine_loss(p, out, split):
    """The engine's per-step cross-entropy over all valid target steps of data.npz's split, with the exported weights."""
    m = Model(p.graph)
    m.set_weights(from_state_dict(m, load_file(out / "weights.safetensors")))
    with np.load(out / "data.npz") as d:
        x, y, sl, tl = (d[f"{k}_{split}"] for k in ("x", "y", "lengths", "target_lengths"))
    T = y.shape[1]
    masks = {"source": steps_mask(sl, x.shape[1]), "target": steps_mask(tl, T)}
    z = m.forward({"source": x, "target": teacher_inputs(y)}, logits=True, mask=masks)
    return get_loss("cce")(z, y, True, masks["target"])[0]


@pytest.mark.parametrize("cell", [None, "GRU"])
def test_train_py_trains_an_encoder_decoder_with_the_engines_loss(tmp_path, cell):
    p = project(tmp_path, cell)
    out, limits = export_project(p, tmp_path / "torch")
    assert limits == ""
    with np.load(out / "data.npz") as d:
        assert {"target_lengths_train", "target_lengths_val"} <= set(d.files)
    start = run_train(out, "--epochs", "0")[-1]                   # no step: the summary scores the initial weights
    assert start["steps"] == 0
    assert start["val_loss"] == pytest.approx(engine_loss(p, out, "val"), rel=1e-4)
    assert start["train_loss"] == pytest.approx(engine_loss(p, out, "train"), rel=1e-4)
    lines = run_train(out, "--epochs", "2")
    assert [ln["epoch"] for ln in lines[:-1]] == [1, 2] and lines[-1]["status"] == "completed"
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(lines[0])
    assert lines[-1]["steps"] == 2 * 4 and lines[-1]["val_loss"] < 0.9 * start["val_loss"]
    assert (out / "checkpoint.safetensors").exists()


def test_padding_garbage_does_not_change_the_exported_loss(tmp_path):
    p = project(tmp_path)
    out, _ = export_project(p, tmp_path / "torch")
    before = run_train(out, "--epochs", "0")[-1]
    with np.load(out / "data.npz") as d:
        arrays = {k: d[k].copy() for k in d.files}
    for s in ("train", "val"):                                    # garbage after each target's valid steps
        y, tl = arrays[f"y_{s}"], arrays[f"target_lengths_{s}"]
        pad = ~steps_mask(tl, y.shape[1])
        y[pad] = 5
    np.savez(out / "data.npz", **arrays)
    after = run_train(out, "--epochs", "0")[-1]
    assert after["val_loss"] == pytest.approx(before["val_loss"], rel=1e-6)
    assert after["train_accuracy"] == pytest.approx(before["train_accuracy"], rel=1e-6)
