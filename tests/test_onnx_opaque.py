"""Imported models whose unsupported nodes are kept as OnnxNode layers (run in onnxruntime, not trainable), and an
imported project's dataset placeholder."""
import json

import numpy as np
import pytest

from engine.cli import main as cli
from engine.data import load
from engine.errors import DataError

import onnx  # noqa: E402  (a dependency)


def _gemm_model():
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    W = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [W])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_an_imported_project_has_a_placeholder_dataset_not_xor(tmp_path, capsys):
    f = tmp_path / "g.onnx"
    onnx.save(_gemm_model(), f)
    assert cli(["import", str(f), "-o", str(tmp_path / "p.json")]) == 0
    ref = json.loads((tmp_path / "p.json").read_text())["dataset"]
    assert ref == {"kind": "none", "input": [4]}
    with pytest.raises(DataError, match=r"choose data for a \(4,\) input"):
        load(ref)
    capsys.readouterr()
    assert cli(["train", str(tmp_path / "p.json"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "choose data for a (4,) input" in err and "\n" not in err


# ---- unmapped nodes kept as OnnxNode layers ----
from test_onnx_import import check_round_trip, close, export, imported, run_ort  # noqa: E402

from engine.errors import LayerboardError  # noqa: E402
from engine.layers.onnx_node import frozen_note  # noqa: E402
from engine.model import Model  # noqa: E402
from engine.onnx_import import ImportFailed, import_project, read  # noqa: E402


def nets(torch):
    """An MLP with a TopK in the middle, and a CNN with a CumSum (over channels) between two convolutions."""
    nn = torch.nn

    class TopKNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 16), nn.Linear(5, 3)

        def forward(self, x):
            return self.b(torch.topk(torch.relu(self.a(x)), 5, dim=-1).values)

    class CumSumCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
            self.c2, self.fc = nn.Conv2d(6, 8, 3, stride=2), nn.Linear(8, 4)

        def forward(self, x):
            h = torch.relu(self.bn(self.c1(x))).cumsum(1)
            return self.fc(torch.relu(self.c2(h)).mean((2, 3)))
    torch.manual_seed(0)
    cnn = CumSumCNN()
    with torch.no_grad():
        cnn.bn.running_mean.uniform_(-0.2, 0.2)
        cnn.bn.running_var.uniform_(0.5, 2)
    return {"topk": (TopKNet().eval(), (8,), "TopK"), "cnn": (cnn.eval(), (3, 9, 9), "CumSum")}


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
@pytest.mark.parametrize("kind", ["topk", "cnn"])
def test_an_unmapped_node_is_kept_and_runs_like_onnxruntime(kind, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    net, shape, op = nets(torch)[kind]
    x = torch.randn((6,) + shape)
    f = tmp_path / f"{kind}.onnx"
    export(torch, net, x, f, dynamo)
    g, _, kept = read(f)
    assert [k[0] for k in kept] == [op] and "no layer" in kept[0][2]
    layer = kept[0][3]
    assert g.nodes[layer].type == "OnnxNode" and g.nodes[layer].config["op"] == op
    with torch.no_grad():
        m = check_round_trip(f, x.numpy(), net(x).numpy())      # predict = onnxruntime = torch; re-export runs
    assert m.layers[layer].out_shape == {"topk": (5,), "cnn": (6, 9, 9)}[kind]      # from ONNX shape inference
    with pytest.raises(ImportFailed) as e:                       # --strict: today's refusal
        read(f, strict=True)
    assert e.value.problems[0][0] == op


def test_training_updates_only_the_layers_after_the_kept_node(tmp_path):
    torch = pytest.importorskip("torch")
    from engine.data import Dataset
    from engine.project import training_config
    from engine.shapes import infer
    from engine.trainer import Trainer
    net, shape, _ = nets(torch)["topk"]
    f = tmp_path / "topk.onnx"
    export(torch, net, torch.randn(2, 8), f, False)
    p, w, kept = import_project(f)
    layer = kept[0][3]
    p.graph.chain(("probs", "Softmax", {}), after=p.graph.outputs()[0])
    model = Model(p.graph)
    model.set_weights({**model.weights(), **w})
    before = model.weights()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)).astype(np.float32), rng.integers(0, 3, 64)
    tr = Trainer(model, training_config({"loss": "cce", "epochs": 2, "batch_size": 8, "lr": 0.05,
                                         "weight_decay": 0.01}), Dataset(x, y, "multiclass", "random"))
    assert tr.run()["status"] == "completed"
    after = model.weights()
    ups = {k.split("/")[0] for k in before if not np.array_equal(before[k], after[k])}
    first = next(n for n, v in p.graph.nodes.items() if v.type == "Dense")
    assert first in model.frozen and first not in ups and ups and all(n not in model.frozen for n in ups)
    infos = infer(p.graph)
    assert frozen_note(p.graph, {n: i.params for n, i in infos.items()}) == \
        f"layers before '{layer}' are frozen: an ONNX node has no gradient"
    from engine.onnx_export import to_onnx                       # the trained weights export, the node with them
    s = ort_session(to_onnx(model))
    close(s.run(None, {s.get_inputs()[0].name: x})[0], model.predict(x))


def ort_session(m):
    import onnxruntime as ort
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_cli_reports_kept_nodes_pytorch_code_export_refuses_and_strict_refuses(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    net, shape, _ = nets(torch)["topk"]
    f = tmp_path / "topk.onnx"
    export(torch, net, torch.randn(2, 8), f, False)
    assert cli(["import", str(f), "-o", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "TopK" in ln)
    assert "Layerboard has no layer for this operator yet" in line and "kept as OnnxNode" in line
    assert "not trainable" in line
    name = json.loads((tmp_path / "p.json").read_text())
    layer = next(n["name"] for n in name["graph"]["nodes"] if n["type"] == "OnnxNode")
    code = cli(["export", str(tmp_path / "p.json"), "--weights", str(tmp_path / "p.weights.safetensors"),
                "--format", "pytorch", "-o", str(tmp_path / "torch_out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"OnnxNode '{layer}'" in err and "\n" not in err
    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert cli(["predict", str(tmp_path / "p.json"), "--weights", str(tmp_path / "p.weights.safetensors"),
                "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    close(np.load(tmp_path / "y.npy"), run_ort(f, x))
    assert cli(["import", str(f), "-o", str(tmp_path / "q.json"), "--strict"]) == 2
    assert not (tmp_path / "q.json").exists()


def test_a_node_that_cannot_be_kept_is_still_refused_with_both_reasons(tmp_path):
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("Einsum", ["x", "a"], ["y"], name="outer", equation="ni,nj->nij")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 3])])
    with pytest.raises(ImportFailed) as e:
        read(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    (op, name, why), = e.value.problems
    assert (op, name) == ("Einsum", "outer") and "cannot be kept as an ONNX node" in why and "2 tensors" in why


def test_a_damaged_onnx_node_config_is_one_line():
    from engine.graph import Graph
    g = Graph()
    g.add_node("Input", "x", {"shape": [4]})
    g.add_node("OnnxNode", "kept", {"op": "TopK", "onnx": "not base64!"})
    g.connect("x", "kept")
    with pytest.raises(LayerboardError) as e:
        Model(g)
    assert "OnnxNode 'kept'" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("op,shape,inits,attrs", [
    ("Pad", (2, 5), [("p", np.array([0, 1, 1, 0, 0, 2]))], {"mode": "reflect"}),        # pads the channels too
    ("Resize", (2, 4, 4), [("roi", np.zeros(0, np.float32)), ("s", np.array([1, 1, 1.5, 2.5], np.float32))],
     {"mode": "nearest"}),
    ("Conv", (2, 5, 5, 5), [("W", np.ones((3, 2, 2, 2, 2), np.float32))], {"pads": [1, 1, 1, 0, 0, 0]}),
], ids=["pad-channels", "resize-fraction", "conv3d-asymmetric-pads"])
def test_each_node_strict_refuses_is_kept_and_equals_onnxruntime(op, shape, inits, attrs, tmp_path):
    """The operators (or settings) no layer expresses, e.g. a Resize by 1.5 × 2.5 (Upsample2D takes one fractional scale)."""
    from test_onnx_import import one_node_model
    f = tmp_path / "n.onnx"
    onnx.save(one_node_model(op, shape, 17, inits, **attrs), f)
    g, _, kept = read(f)
    assert [(k[0], k[1]) for k in kept] == [(op, f"the {op}")]
    x = np.random.default_rng(0).normal(size=(3,) + shape).astype(np.float32)
    check_round_trip(f, x)


@pytest.mark.parametrize("op,shape,attrs,why", [
    ("LRN", (4, 5, 5), {"size": 4}, "onnxruntime cannot run it"),
    ("Transpose", (3, 4, 5), {"perm": [1, 0, 2, 3]}, "keep the batch axis first"),
], ids=["lrn-even", "transpose-batch"])
def test_a_node_onnxruntime_or_the_batch_axis_rules_out_stays_refused(op, shape, attrs, why, tmp_path):
    from test_onnx_import import one_node_model
    f = tmp_path / "n.onnx"
    onnx.save(one_node_model(op, shape, 17, [], **attrs), f)
    with pytest.raises(ImportFailed) as e:
        read(f)
    (got_op, _, reason), = e.value.problems
    assert got_op == op and "cannot be kept as an ONNX node either" in reason and why in reason
