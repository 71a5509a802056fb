"""PyTorch code export of blocks: each canvas block becomes its own nn.Module class, the exported project runs and
matches the engine's outputs, and the checkpoint comes back; a block that cannot be a class stays inline."""
import importlib.util
import py_compile
import subprocess
import sys

import numpy as np
import pytest

from engine.model import Model
from engine.project import Project
from engine.torch_export import export_project, from_state_dict, model_source, state_dict
from engine.torch_export.codegen import module_blocks, paths
from resources import path

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch==2.13.0)")

CNN = str(path("examples", "digits-cnn.json"))
STAGE1, STAGE2 = ["conv1", "bn1", "relu1", "pool1"], ["conv2", "bn2", "relu2", "pool2"]


def blocked_project():
    p = Project.load(CNN)
    for b, ms in (("stage1", STAGE1), ("stage 2", STAGE2)):
        for n in ms:
            p.graph.nodes[n].meta["block"] = b
        p.graph.blocks[b] = {"folded": True}
    return p


def load_class(src, tmp_path, name):
    f = tmp_path / "model.py"
    f.write_text(src)
    py_compile.compile(str(f), doraise=True)
    spec = importlib.util.spec_from_file_location(f"gen_blocks_{abs(hash(str(tmp_path)))}", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def test_blocks_become_classes_and_weights_are_nested():
    m = Model(blocked_project().graph)
    assert set(module_blocks(m)) == {"stage1", "stage 2"}
    src = model_source(m, "Net")
    assert "class Stage1(nn.Module):" in src and "class Stage2(nn.Module):" in src
    assert "self.stage1 = Stage1()" in src and "self.stage_2 = Stage2()" in src
    assert "x = self.stage1(x)" in src
    assert paths(m)["conv2"] == "stage_2.conv2"
    sd = state_dict(m)
    assert {"stage1.conv1.weight", "stage_2.bn2.running_mean", "fc.weight"} <= set(sd)
    assert not any(k.startswith("conv1.") for k in sd)
    back = from_state_dict(m, sd)                         # the nested names map back onto the canvas's
    assert np.array_equal(back["conv2/W"], m.weights()["conv2/W"])


def test_a_block_holding_the_input_or_the_output_stays_inline():
    p = Project.load(CNN)
    for n in ("image", "conv1"):
        p.graph.nodes[n].meta["block"] = "a"
    for n in ("logits", "softmax"):
        p.graph.nodes[n].meta["block"] = "b"
    p.graph.blocks = {"a": {"folded": True}, "b": {"folded": True}}
    m = Model(p.graph)
    assert module_blocks(m) == {}
    assert "nn.Module):" in model_source(m, "Net") and "class A(" not in model_source(m, "Net")


@needs_torch
def test_the_exported_module_matches_the_engine(tmp_path):
    p = blocked_project()
    m = Model(p.graph, seed=3)
    net = load_class(model_source(m, "Net"), tmp_path, "Net")()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict(m).items()}, strict=True)
    net.eval()
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, m.predict(x), rtol=1e-4, atol=1e-5)
    assert isinstance(net.stage1, torch.nn.Module) and hasattr(net.stage_2, "conv2")


@needs_torch
def test_the_exported_project_trains_one_epoch(tmp_path):
    p = blocked_project()
    p.training.update(epochs=1)
    out, _ = export_project(p, tmp_path / "proj")
    r = subprocess.run([sys.executable, "train.py", "--epochs", "1"], cwd=out, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "class Stage1(nn.Module)" in (out / "model.py").read_text()
    assert (out / "checkpoint.safetensors").exists()
