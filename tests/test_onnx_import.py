"""ONNX import: models exported by PyTorch (both exporters) and zoo-style files open as projects whose predict
equals onnxruntime on the original; imported → exported again runs the same; an imported model fine-tunes;
what cannot be mapped is listed node by node."""
import numpy as np
import pytest

from engine.cli import main as cli
from engine.errors import LayerboardError
from engine.model import Model
from engine.onnx_import import ImportFailed, import_project, read

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_ort(path_or_bytes, x):
    s = ort.InferenceSession(path_or_bytes if isinstance(path_or_bytes, (str, bytes)) else str(path_or_bytes),
                             providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def imported(path):
    g, w, _ = read(path)
    m = Model(g)
    m.set_weights({**m.weights(), **w})
    return m


def close(got, want, rel=1e-4):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rel * max(1.0, np.abs(want).max())


def torch_models():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 5), nn.Softmax(-1))
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, stride=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    with torch.no_grad():
        for mod in cnn.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return {"mlp": (mlp.eval(), (12,)), "cnn": (cnn.eval(), (3, 16, 16))}


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_pytorch_export_imports_and_predicts_like_onnxruntime(kind, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    net, shape = torch_models()[kind]
    x = torch.randn((7,) + shape)
    f = tmp_path / f"{kind}.onnx"
    kw = ({"dynamo": True, "dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else
          {"dynamo": False, "dynamic_axes": {"x": {0: "batch"}}, "do_constant_folding": False})
    torch.onnx.export(net, (x,), str(f), input_names=["x"], opset_version=17 if not dynamo else 18, **kw)
    m = imported(f)
    xn = x.numpy()
    want = run_ort(f, xn)
    close(m.predict(xn), want)
    with torch.no_grad():
        close(m.predict(xn), net(x).numpy())
    if kind == "cnn" and not dynamo:                    # the BatchNormalization nodes became BatchNorm layers
        assert sum(n.type == "BatchNorm" for n in m.graph.nodes.values()) == 2
    from engine.onnx_export import to_onnx               # imported → exported again → onnxruntime, equal
    close(run_ort(to_onnx(m).SerializeToString(), xn), want)


def test_imported_model_fine_tunes_and_exports(tmp_path):
    torch = pytest.importorskip("torch")
    net, shape = torch_models()["cnn"]
    f = tmp_path / "cnn.onnx"
    torch.onnx.export(net, (torch.randn((2,) + shape),), str(f), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    p, w = import_project(f)
    p.graph.chain(("probs", "Softmax", {}), after=next(n for n in p.graph.outputs()))
    from engine.data import Dataset
    from engine.project import training_config
    from engine.trainer import Trainer
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64,) + shape).astype(np.float32), rng.integers(0, 10, 64)
    model = Model(p.graph)
    model.set_weights({**model.weights(), **w})
    before = model.theta.copy()
    tr = Trainer(model, training_config({"loss": "cce", "epochs": 2, "batch_size": 16, "lr": 0.01}),
                 Dataset(x, y, "multiclass", "random"))
    res = tr.run()
    assert res["status"] == "completed" and np.isfinite(model.theta).all() and not np.allclose(model.theta, before)
    from engine.onnx_export import to_onnx
    close(run_ort(to_onnx(model).SerializeToString(), x[:5]), model.predict(x[:5]))


def _gemm_model(opset=17, init_as_input=False, extra=None):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6,)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc", transB=1),
             helper.make_node("Relu", ["h"], ["y"], name="act")]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6])]
    if extra == "topk":
        k = numpy_helper.from_array(np.array([2], np.int64), "k")
        nodes.append(helper.make_node("TopK", ["y", "k"], ["top", "idx"], name="best two"))
        outs = [helper.make_tensor_value_info("top", TensorProto.FLOAT, ["n", 2])]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")] + ([k] if extra == "topk" else [])
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])]
    if init_as_input:                                   # the ONNX model zoo's older convention
        ins += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits[:2]]
    g = helper.make_graph(nodes, "g", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


@pytest.mark.parametrize("opset,init_as_input", [(17, False), (17, True), (11, True)])
def test_zoo_conventions_and_older_opsets(opset, init_as_input, tmp_path):
    f = tmp_path / "g.onnx"
    onnx.save(_gemm_model(opset, init_as_input), f)
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    m = imported(f)
    assert [n.type for n in m.graph.nodes.values()] == ["Input", "Dense", "ReLU"]
    close(m.predict(x), run_ort(f, x))


def test_unsupported_nodes_are_listed_one_by_one(tmp_path, capsys):
    f = tmp_path / "topk.onnx"
    onnx.save(_gemm_model(extra="topk"), f)
    with pytest.raises(ImportFailed) as e:
        read(f)
    assert e.value.problems == [("TopK", "best two", "Layerboard has no layer for this operator yet")]
    out = tmp_path / "p.json"
    assert cli(["import", str(f), "-o", str(out)]) == 2
    printed = capsys.readouterr()
    assert "TopK 'best two': Layerboard has no layer for this operator yet" in printed.out
    assert "\n" not in printed.err.strip() and not out.exists()


def test_cli_import_then_predict_equals_onnxruntime(tmp_path):
    f = tmp_path / "g.onnx"
    onnx.save(_gemm_model(), f)
    x = np.random.default_rng(3).normal(size=(9, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert cli(["import", str(f), "-o", str(tmp_path / "p.json")]) == 0
    assert (tmp_path / "p.weights.safetensors").exists()
    assert cli(["predict", str(tmp_path / "p.json"), "--weights", str(tmp_path / "p.weights.safetensors"),
                "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    close(np.load(tmp_path / "y.npy"), run_ort(f, x))


def test_damaged_file_is_one_line(tmp_path):
    f = tmp_path / "bad.onnx"
    f.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(LayerboardError) as e:
        read(f)
    assert "bad.onnx" in str(e.value) and "\n" not in str(e.value)
