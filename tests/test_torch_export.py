"""PyTorch project export: every layer's generated module reproduces the engine; train.py runs under torchrun with
DDP, its optimizers are ours, and its checkpoint comes back as weights that predict what the torch module predicts."""
import importlib.util
import json
import os
import py_compile
import subprocess
import sys

import numpy as np
import pytest

from engine import Graph
from engine.cli import main as cli
from engine.errors import DataError, LayerboardError
from engine.layers import REGISTRY
from engine.model import Model
from engine.optimizers import OPTIMIZERS, get as get_optimizer
from engine.project import Project
from engine.torch_export import FILES, emitter, export_project, from_state_dict, model_source, state_dict
from engine.torch_export.codegen import _names, identifiers, reads_mask
from engine.weights import load_into
from gradcheck import exempt
from registry_models import randomize, sample_graph
from resources import path

try:
    import torch
except ImportError:                                    # the PyTorch cross-checks skip; the rest runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch==2.13.0)")
from safetensors.numpy import load_file, save_file  # noqa: E402

XOR, MLP, CNN = (str(path("examples", f"{n}.json")) for n in ("xor", "digits-mlp", "digits-cnn"))


def load_module(path, name):
    """Import a generated file as a fresh module (the generated files import each other as model / data)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def torch_module(model, tmp_path, name="Net", **kw):
    """The generated module for model with its state_dict loaded (strictly), in evaluation mode."""
    f = tmp_path / "model.py"
    f.write_text(model_source(model, name, **kw))
    py_compile.compile(str(f), doraise=True)
    net = getattr(load_module(f, f"gen_model_{abs(hash(str(tmp_path)))}"), name)()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict(model).items()}, strict=True)
    return net.eval()


CASES = [(t, c, s, (o or [{}])[0]) for t, cls in sorted(REGISTRY.items()) for c, s, *o in cls.samples()
         if not exempt(t, "torch")]            # exempted, with the reason: tests/gradcheck.py EXEMPT
CASES += [("Input", {"standardize": True}, [(3, 4)], {}), ("Input", {"standardize": False}, [(5,)], {})]


def test_every_layer_type_has_an_emitter():
    assert sorted(t for t, cls in REGISTRY.items() if emitter(cls.__new__(cls)) is None) == \
        sorted(t for t in REGISTRY if exempt(t, "torch"))


@needs_torch
@pytest.mark.parametrize("type,config,shapes,opts", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_generated_module_reproduces_the_engine(type, config, shapes, opts, tmp_path):
    if type == "Input":
        g = Graph()
        g.add_node("Input", "in put", {"shape": list(shapes[0]), **config})
    else:
        g = sample_graph(type, config, shapes, ints="ints" in opts, domain=opts.get("domain"))
    model = randomize(Model(g))
    rng = np.random.default_rng(2)
    B = 4
    x = rng.normal(0, 1, (B,) + model.input_shape).astype(np.float32)
    if "ints" in opts:
        x = rng.integers(0, opts["ints"], x.shape).astype(np.float32)
    if opts.get("domain"):
        x = rng.uniform(*opts["domain"], x.shape).astype(np.float32)
    kw = {}
    if opts.get("mask"):
        T = model.input_shape[0]
        lengths = rng.integers(1, T + 1, B)
        kw["mask"] = np.arange(T) < lengths[:, None]                           # (B, T)
    want = model.forward(x, **kw)
    net = torch_module(model, tmp_path)
    with torch.no_grad():
        # the mask goes to a module that reads it; other layers compute padded steps as valid ones, as ours
        tkw = {k: torch.from_numpy(v) for k, v in kw.items()} if reads_mask(model) else {}
        got = net(torch.from_numpy(x), **tkw).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    sd = state_dict(model)                                                     # the names map both ways
    again = Model(g)
    again.set_weights(from_state_dict(again, sd))
    assert all(np.array_equal(v, sd[k]) for k, v in state_dict(again).items())
    np.testing.assert_array_equal(again.forward(x, **kw), want)


def test_a_layer_without_emitter_is_named_in_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(REGISTRY["Dense"], "to_torch", None)                    # as a layer that declares none
    with pytest.raises(LayerboardError) as e:
        export_project(Project.load(MLP), tmp_path / "out")
    msg = str(e.value)
    assert "\n" not in msg and "Dense 'fc1', Dense 'fc2', Dense 'logits'" in msg and "PyTorch" in msg
    assert not (tmp_path / "out").exists()


def test_node_names_become_distinct_identifiers():
    ids = identifiers(["conv 1", "conv_1", "2nd", "forward", "x", "class", "é"])
    assert list(ids.values()) == ["conv_1", "conv_1_2", "n2nd", "forward_", "x_", "class_", "node"]


def test_cnn_export_writes_every_file_readable_code_and_loadable_weights(tmp_path):
    out = tmp_path / "cnn"
    export_project(Project.load(CNN), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for f in ("model.py", "train.py", "data.py"):
        py_compile.compile(str(out / f), doraise=True)
    src = (out / "model.py").read_text()
    assert "self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)" in src
    assert "x = self.pool1(x)    # (B, 16, 14, 14)" in src and "if return_logits:" in src
    sd = load_file(out / "weights.safetensors")
    assert {"bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked", "conv1.weight"} <= set(sd)
    train = (out / "train.py").read_text()
    assert '"conv1.weight"' in train and '"conv1.bias"' not in train.split("DECAY")[1].split(")")[0]
    assert "torch.optim.Adam(" in train and "SyncBatchNorm" in train
    with np.load(out / "data.npz") as d:                                         # the engine's own split
        from engine.data import load
        p = Project.load(CNN)
        tr, va = load(p.dataset).split(p.training["validation_split"], p.training["seed"])
        assert np.array_equal(d["x_train"], tr.x) and np.array_equal(d["y_val"], va.y)


@needs_torch
def test_augmentation_warp_is_the_engines(tmp_path):
    from engine.data.augment import warp
    from engine.torch_export.data_template import data_source
    p = Project.load(CNN)
    p.dataset["augment"] = {"shift": 2, "rotate": 10, "flip": True, "noise": 0.1}
    (tmp_path / "data.py").write_text(data_source(p, "DigitsCNN", "multiclass"))
    data = load_module(tmp_path / "data.py", "gen_data_aug")
    rng = np.random.default_rng(0)
    x = rng.random((4, 2, 7, 9)).astype(np.float32)
    a, d, f = rng.uniform(-0.3, 0.3, 4), rng.integers(-2, 3, (2, 4)).astype(np.float64), np.array([0, 1, 0, 1], bool)
    want = np.empty_like(x)
    warp(x, np.cos(a), np.sin(a), d[0], d[1], f, want)
    got = data.warp(torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(d[0]).float(),
                    torch.from_numpy(d[1]).float(), torch.from_numpy(f)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    y = data.augment(torch.from_numpy(x), torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(y, torch.from_numpy(x))


@needs_torch
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_train_py_optimizer_takes_our_steps(name, tmp_path, monkeypatch):
    """Same weights and gradients: after a few steps the exported optimizer's weights equal the engine's."""
    p = Project.load(XOR)
    p.training.update(optimizer=name, lr=0.05, weight_decay=0.1, beta=0.8, eps=1e-3)
    out, _ = export_project(p, tmp_path / name)
    monkeypatch.syspath_prepend(str(out))
    for m in ("model", "data"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    train = load_module(out / "train.py", f"gen_train_{name}")
    start = load_file(out / "weights.safetensors")
    model = Model(p.graph)
    model.set_weights(from_state_dict(model, start))
    net = sys.modules["model"].XOR()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
    topt = train.make_optimizer(net)
    c = p.training
    opt = get_optimizer(name, c["weight_decay"], **{h.name: c[h.name] for h in OPTIMIZERS[name].hparams})
    key = {t[0]: k for t, k, _, _ in _names(model)[0]}                            # 'hidden.weight' -> 'hidden/W'
    rng = np.random.default_rng(0)
    for _ in range(4):
        g = {k: rng.normal(0, 1, model.shapes[k]).astype(np.float32) for k in model.slices}
        for k, sl in model.slices.items():
            model.grad[sl] = g[k].ravel()
        opt.step(model.theta, model.grad, model.decay)
        for t, prm in net.named_parameters():
            prm.grad = torch.from_numpy(g[key[t]].copy())
        topt.step()
    got = from_state_dict(model, {k: v.detach().numpy() for k, v in net.state_dict().items()})
    for k, v in model.weights().items():
        np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-6, err_msg=f"{name}: {k}")
    assert not np.allclose(model.theta, Model(p.graph).theta)                    # the steps moved the weights


def test_import_errors_name_missing_extra_and_misshaped_tensors(tmp_path, capsys):
    p = Project.load(MLP)
    sd = state_dict(Model(p.graph))
    bad = dict(sd)
    del bad["fc1.bias"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    save_file(bad, str(tmp_path / "a.safetensors"))
    assert cli(["import-weights", MLP, "--from", str(tmp_path / "a.safetensors"), "-o", str(tmp_path / "w.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing fc1.bias (fc1/b)" in err and "unexpected extra.weight" in err
    bad = dict(sd, **{"fc2.weight": np.zeros((3, 3), np.float32)})
    save_file(bad, str(tmp_path / "b.safetensors"))
    with pytest.raises(DataError, match=r"'fc2.weight' has shape \(3, 3\) but Dense 'fc2' needs \(64, 256\) for W"):
        from engine.torch_export import import_checkpoint
        import_checkpoint(p, tmp_path / "b.safetensors")
    assert not (tmp_path / "w.npz").exists()


def test_export_without_weights_needs_pytorch_format(tmp_path, capsys):
    assert cli(["export", XOR, "--format", "onnx", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "--weights" in capsys.readouterr().err


@needs_torch
def test_torchrun_ddp_trains_and_the_checkpoint_comes_back(tmp_path, capsys):
    """torchrun, 2 CPU processes (gloo): both finish, the loss falls, the checkpoint imports and predicts as torch."""
    out = tmp_path / "mlp"
    assert cli(["export", MLP, "--format", "pytorch", "-o", str(out)]) == 0
    p = Project.load(MLP)
    start = Model(p.graph)
    start.set_weights(from_state_dict(start, load_file(out / "weights.safetensors")))
    with np.load(out / "data.npz") as d:
        xv, yv = d["x_val"], d["y_val"]
    p0 = start.predict(xv)
    loss0 = float(-np.mean(np.log(np.clip(p0[np.arange(len(yv)), yv], 1e-7, 1))))   # the initial validation loss
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "train.py", "--epochs", "1"], cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rank 0 of 2: finished (completed)" in r.stderr and "rank 1 of 2: finished (completed)" in r.stderr
    lines = [json.loads(s) for s in r.stdout.splitlines() if s.startswith("{")]
    assert len(lines) == 2 and lines[0]["epoch"] == 1 and lines[1]["status"] == "completed"
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(lines[0])
    assert lines[0]["val_loss"] < 0.6 * loss0, (lines[0], loss0)                 # ≈ 2.3 → ≈ 0.5 in one epoch
    ck = out / "checkpoint.safetensors"
    tensors = load_file(ck)
    assert not any(k.startswith("module.") for k in tensors)
    w = tmp_path / "trained.safetensors"
    assert cli(["import-weights", MLP, "--from", str(ck), "-o", str(w)]) == 0
    m = Model(p.graph)
    load_into(m, w)
    ours = m.predict(xv)
    net = load_module(out / "model.py", "gen_model_digits").DigitsMLP()                # the file train.py trained
    net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    net.eval()
    with torch.no_grad():
        theirs = net(torch.from_numpy(xv)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    assert np.mean(ours.argmax(1) == yv) == pytest.approx(lines[1]["val_accuracy"], abs=1e-9)
    assert not np.allclose(ours, p0, atol=1e-3)


@needs_torch
def test_window_exports_a_pytorch_project_and_loads_its_checkpoint(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox
    from gui.mainwindow import MainWindow
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: shown.append(text))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    p = Project.load(XOR)
    p.path = None
    w.doc.load(p)
    out = tmp_path / "xor-torch"
    monkeypatch.setattr("gui.training.weights.ask_folder", lambda *a, **k: str(out))
    assert any(a.text() == "Export &PyTorch project…" for a in w.menuBar().actions()[0].menu().actions())
    w.export_pytorch()
    assert not shown and sorted(f.name for f in out.iterdir()) == sorted(FILES)
    init = Model(p.graph, seed=p.training["seed"]).weights()                   # no run yet: the seed's initialisation
    sd = load_file(out / "weights.safetensors")
    assert np.array_equal(sd["hidden.weight"], init["hidden/W"])
    trained = randomize(Model(p.graph), seed=5)                                 # as if train.py had trained it
    ck = tmp_path / "checkpoint.safetensors"
    save_file({("module." + k if k.endswith("weight") else k): v for k, v in state_dict(trained).items()}, str(ck))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(ck), ""))
    w.load_weights()
    assert not shown, shown
    got = w.training.weights.start
    assert all(np.array_equal(got[k], v) for k, v in trained.weights().items())
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    assert np.array_equal(w.training.weights.model.predict(x), trained.predict(x))
    bad = tmp_path / "bad.safetensors"
    save_file({"hidden.weight": np.zeros((2, 2), np.float32)}, str(bad))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    w.load_weights()
    assert shown and "missing" in shown[-1] and "bad.safetensors" in shown[-1]
    w.training.shutdown()


@needs_torch
def test_mask_reaches_the_layers_that_read_it(tmp_path, monkeypatch):
    """A mask-reading emitter gets forward's mask while the time axis lasts and None after a Flatten."""
    from engine.torch_export import Emitted
    monkeypatch.setattr(REGISTRY["ReLU"], "to_torch", lambda layer: Emitted(
        "nn.ReLU()", call="{self}({x0}) if {mask} is None else {self}({x0}) * torch.as_tensor({mask})[..., None]",
        uses_mask=True))
    g = Graph()
    g.chain(("seq", "Input", {"shape": [3, 4]}), ("r1", "ReLU", {}), ("flat", "Flatten", {}),
            ("d", "Dense", {"units": 2}), ("r2", "ReLU", {}))
    model = randomize(Model(g))
    src = model_source(model)
    assert "def forward(self, x, mask=None):" in src
    assert "self.r1(x) if mask is None" in src and "self.r2(x) if None is None" in src and "def forward(self, x, mask=None)" in src
    net = torch_module(model, tmp_path)
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    with torch.no_grad():
        y = net(torch.from_numpy(x), mask=torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(y, model.forward(x * mask[..., None]), rtol=1e-5, atol=1e-5)


@needs_torch
def test_regression_trains_on_standardised_targets_and_reports_original_units(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=(x @ [1.0, -2.0, 0.5] * 30 + 100).astype(np.float32))
    p = Project()
    p.graph.chain(("x", "Input", {"shape": [3], "standardize": True}), ("h", "Dense", {"units": 8}),
                  ("t", "Tanh", {}), ("y", "Dense", {"units": 1}))
    p.dataset = {"kind": "npz", "path": "reg.npz", "task": "regression"}
    p.training.update(loss="mse", optimizer="adam", lr=0.01, batch_size=16, clip_norm=5.0)
    p.save(tmp_path / "reg.json")
    out = tmp_path / "reg-torch"
    assert cli(["export", str(tmp_path / "reg.json"), "--format", "pytorch", "-o", str(out)]) == 0
    capsys.readouterr()
    assert cli(["train", str(tmp_path / "reg.json"), "--epochs", "1", "--json"]) == 0
    engine_line = json.loads(capsys.readouterr().out.splitlines()[0])
    monkeypatch.syspath_prepend(str(out))
    for m in ("model", "data"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    net = load_module(out / "model.py", "gen_model_reg").Net()
    sd = load_file(out / "weights.safetensors")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    model = Model(p.graph)
    model.set_weights(from_state_dict(model, sd))
    assert float(model.data["y_std"][0]) > 10                                   # the training split's statistics
    with torch.no_grad():
        got = net.original_units(net.eval()(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-5, atol=1e-4)
    with np.load(out / "data.npz") as d:
        xt, yt = d["x_train"], d["y_train"]
    rmse0 = float(np.sqrt(np.mean((model.predict(xt) - yt) ** 2)))
    train = load_module(out / "train.py", "gen_train_reg")
    monkeypatch.setattr(sys, "argv", ["train.py", "--epochs", "5"])
    assert train.main() == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert list(lines[0]) == list(engine_line)                                  # the keys of `layerboard train --json`
    final = lines[-1]
    assert final["status"] == "completed" and final["train_rmse"] < 0.5 * rmse0
    trained = Model(p.graph)
    trained.set_weights(from_state_dict(trained, load_file(out / "checkpoint.safetensors")))
    rmse = float(np.sqrt(np.mean((trained.predict(xt) - yt) ** 2)))              # the engine's units: the targets'
    assert final["train_rmse"] == pytest.approx(rmse, rel=1e-4)


@needs_torch
def test_per_feature_sequence_statistics_become_buffers(tmp_path):
    g = Graph()
    g.chain(("s", "Input", {"shape": [4, 3]}), ("d", "Dense", {"units": 2}))
    model = randomize(Model(g))
    rng = np.random.default_rng(3)
    model.data["x_mean"] = rng.normal(size=3).astype(np.float32)
    model.data["x_std"] = rng.uniform(0.5, 2, 3).astype(np.float32)
    sd = state_dict(model)
    assert {"input_stats.mean", "input_stats.std"} <= set(sd)
    x = rng.normal(size=(2, 4, 3)).astype(np.float32)
    with torch.no_grad():
        got = torch_module(model, tmp_path)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, model.forward(x), rtol=1e-5, atol=1e-5)
    back = from_state_dict(Model(g), sd)
    assert np.array_equal(back["__data__/x_std"], model.data["x_std"])


@needs_torch
def test_sequences_with_lengths_train_with_masks(tmp_path, monkeypatch, capsys):
    """Variable-length sequences: data.npz keeps the lengths, train.py feeds masks, the checkpoint predicts as ours."""
    import engine.data as data_mod
    from engine.data import Dataset
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5, 2)).astype(np.float32)
    lengths = rng.integers(1, 6, 60)
    valid = np.arange(5) < lengths[:, None]
    y = ((x[..., 0] * valid).sum(1) > 0).astype(np.int64)
    monkeypatch.setattr(data_mod, "load", lambda ref, base=None: Dataset(x, y, "multiclass", "seq", lengths=lengths))
    p = Project()
    p.graph.chain(("s", "Input", {"shape": [5, 2]}), ("rnn", "RNN", {"units": 6}), ("out", "Dense", {"units": 2}),
                  ("p", "Softmax", {}))
    p.training.update(loss="cce", lr=0.01, batch_size=8)
    out, limits = export_project(p, tmp_path / "seq")
    assert limits == "" and "def forward(self, x, mask=None, return_logits=False):" in (out / "model.py").read_text()
    monkeypatch.syspath_prepend(str(out))
    for m in ("model", "data"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    train = load_module(out / "train.py", "gen_train_seq")
    monkeypatch.setattr(sys, "argv", ["train.py", "--epochs", "2"])
    assert train.main() == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    with np.load(out / "data.npz") as d:
        xv, yv, lv = d["x_val"], d["y_val"], d["lengths_val"]
    m = Model(p.graph)
    m.set_weights(from_state_dict(m, load_file(out / "checkpoint.safetensors")))
    pred = m.predict(xv, lengths=lv)
    assert final["val_accuracy"] == pytest.approx(float(np.mean(pred.argmax(1) == yv)), abs=1e-9)
    net = sys.modules["model"].Net()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(out / "checkpoint.safetensors").items()})
    with torch.no_grad():
        theirs = net.eval()(torch.from_numpy(xv), mask=torch.from_numpy(np.arange(5) < lv[:, None])).numpy()
    np.testing.assert_allclose(theirs, pred, rtol=1e-5, atol=1e-5)
    assert not np.allclose(pred, m.predict(xv), atol=1e-4)                      # the lengths matter


@needs_torch
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_on_masked_sequences_uses_only_valid_steps(training, tmp_path):
    """(T, F) BatchNorm: batch statistics, running statistics and outputs over valid steps only, as the engine
    (the export once normalised with padded steps too: max difference 0.345 in training mode)."""
    g = Graph()
    g.chain(("seq", "Input", {"shape": [6, 3], "standardize": False}), ("bn", "BatchNorm", {"momentum": 0.3}))
    model = randomize(Model(g))
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, (5, 6, 3)).astype(np.float32)
    mask = np.arange(6) < np.array([6, 2, 4, 1, 3])[:, None]                   # (B, T)
    x[~mask] = 50.0                                                           # padding far from the data
    net = torch_module(model, tmp_path).train(training)
    want = model.forward(x, training=training, mask=mask)
    got = net(torch.from_numpy(x), mask=torch.from_numpy(mask)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(got[~mask] == 0)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    for ours, theirs in (("running_mean", "bn.bn.running_mean"), ("running_var", "bn.bn.running_var")):
        np.testing.assert_allclose(sd[theirs], model.layers["bn"].p[ours], rtol=1e-5, atol=1e-6)
    if not training:                                                          # without a mask every step counts
        np.testing.assert_allclose(net(torch.from_numpy(x)).detach().numpy(), model.forward(x), rtol=1e-5, atol=1e-5)
