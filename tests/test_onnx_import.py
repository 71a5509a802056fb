"""ONNX import: models exported by PyTorch (both exporters) and zoo-style files open as projects whose predict
equals onnxruntime on the original; imported → exported again runs the same; an imported model fine-tunes;
what cannot be mapped is listed node by node."""
import numpy as np
import pytest

from engine.cli import main as cli
from engine.errors import LayerboardError
from engine.model import Model
from engine.onnx_import import ImportFailed, import_project, read

import onnx  # noqa: E402  (a dependency)
import onnxruntime as ort  # noqa: E402  (a test dependency)


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
    p, w, _ = import_project(f)
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
        read(f, strict=True)
    assert e.value.problems == [("TopK", "best two", "Layerboard has no layer for this operator yet")]
    out = tmp_path / "p.json"
    assert cli(["import", str(f), "-o", str(out), "--strict"]) == 2
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


# ---- real architectures written in torch.nn (torchvision is not importable here) ----
def export(torch, net, x, f, dynamo, opset=None):
    kw = ({"dynamo": True, "dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else
          {"dynamo": False, "dynamic_axes": {"x": {0: "batch"}}, "do_constant_folding": False})
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)      # attention as MatMul/Softmax, not one fused kernel
    try:
        torch.onnx.export(net, (x,), str(f), input_names=["x"], opset_version=opset or (18 if dynamo else 17), **kw)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def check_round_trip(f, x, want_torch=None):
    """Imported predict = onnxruntime on the file = onnxruntime on the re-export; returns the model."""
    from engine.onnx_export import to_onnx
    m = imported(f)
    want = run_ort(f, x)
    close(m.predict(x), want)
    if want_torch is not None:
        close(m.predict(x), want_torch)
    s = ort.InferenceSession(to_onnx(m).SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: x if k == 0 else np.full(len(x), x.shape[1], np.int32) for k, i in enumerate(s.get_inputs())}
    close(s.run(None, feeds)[0], want)                   # the lengths input of sequence models: full length
    return m


def from_torch(torch, net, x, path, dynamo):
    """net exported by the chosen exporter, imported and checked by check_round_trip (also against net itself)."""
    if dynamo:
        pytest.importorskip("onnxscript")
    export(torch, net, x, path, dynamo)
    with torch.no_grad():
        return check_round_trip(path, x.numpy(), net(x).numpy())


def fine_tuned(path, x, y, lengths=None, epochs=1):
    """The imported model with a Softmax on top after a few training steps on (x, y); asserts it trained."""
    from engine.data import Dataset
    from engine.project import training_config
    from engine.trainer import Trainer
    p, w, _ = import_project(path)
    p.graph.chain(("probs", "Softmax", {}), after=next(n for n in p.graph.outputs()))
    model = Model(p.graph)
    model.set_weights({**model.weights(), **w})
    before = model.theta.copy()
    tr = Trainer(model, training_config({"loss": "cce", "epochs": epochs, "batch_size": 8, "lr": 0.01}),
                 Dataset(x, y, "multiclass", "random", lengths=lengths))
    assert tr.run()["status"] == "completed"
    assert np.isfinite(model.theta).all() and not np.allclose(model.theta, before)
    return model


def randomize_bn(torch, net):
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return net.eval()


def resnet18(torch, classes=10, width=64):
    """torchvision's resnet18 layout: 7×7 stem, max pool with padding, four stages of two BasicBlocks."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(y)) + self.down(x))

    stages, c = [], width
    for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
        stages += [BasicBlock(c, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
        c = cout
    return randomize_bn(torch, nn.Sequential(
        nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)))


def mobilenet_v3_small(torch, classes=10):
    """torchvision's mobilenet_v3_small, written out (torchvision is not importable beside this torch): its 11
    inverted-residual blocks with depthwise convs, Hardswish and squeeze-excitation, the 576-channel last conv and
    the 1,024-unit classifier."""
    nn = torch.nn

    def divisible(v):                                   # torchvision's _make_divisible(v, 8)
        n = max(8, int(v + 4) // 8 * 8)
        return n + 8 if n < 0.9 * v else n

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            r = divisible(c // 4)
            self.pool, self.fc1, self.fc2 = nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

        def forward(self, x):
            return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))

    class InvRes(nn.Module):
        def __init__(self, cin, k, exp, cout, se, hs, stride):
            super().__init__()
            act = nn.Hardswish if hs else nn.ReLU
            self.res = stride == 1 and cin == cout
            layers = [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act()] if exp != cin else []
            layers += [nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), act()]
            layers += [SE(exp)] if se else []
            self.block = nn.Sequential(*layers, nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return self.block(x) + x if self.res else self.block(x)

    setting = [(16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
               (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
               (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
               (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1)]     # torchvision's "small" table
    return randomize_bn(torch, nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
        *(InvRes(*row) for row in setting),
        nn.Conv2d(96, 576, 1, bias=False), nn.BatchNorm2d(576), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1024, classes)))


EXPORTERS = [False, True]
EXPORTER_IDS = ["torchscript-exporter", "dynamo-exporter"]


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=EXPORTER_IDS)
def test_resnet18_imports_predicts_and_exports_again(dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = resnet18(torch)
    x = torch.randn(2, 3, 64, 64)
    m = from_torch(torch, net, x, tmp_path / "r18.onnx", dynamo)
    types = [n.type for n in m.graph.nodes.values()]
    assert types.count("Conv2D") == 20 and types.count("Add") == 8 and types.count("MaxPool2D") == 1
    assert types.count("BatchNorm") == (0 if dynamo else 20)        # the dynamo exporter folds them into the convs
    pool = next(n for n in m.graph.nodes.values() if n.type == "MaxPool2D")
    assert list(pool.config["pad"]) == [1, 1] and list(pool.config["stride"]) == [2, 2]


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=EXPORTER_IDS)
def test_mobilenet_v3_small_imports_with_depthwise_convs_and_squeeze_excitation(dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = mobilenet_v3_small(torch)
    x = torch.randn(3, 3, 64, 64)
    m = from_torch(torch, net, x, tmp_path / "mnv3.onnx", dynamo)
    nodes = list(m.graph.nodes.values())
    types = [n.type for n in nodes]
    assert types.count("Multiply") == 9 and types.count("HardSigmoid") == 9 and types.count("Hardswish") == 19
    assert sum(n.type == "Conv2D" and n.config["groups"] > 1 for n in nodes) == 11
    hs = next(n for n in nodes if n.type == "HardSigmoid")                     # PyTorch's 1/6, not ONNX's 0.2
    assert abs(hs.config["alpha"] - 1 / 6) < 1e-6


def test_imported_resnet18_fine_tunes_and_the_trained_weights_export(tmp_path):
    torch = pytest.importorskip("torch")
    from engine.onnx_export import to_onnx
    torch.manual_seed(2)
    export(torch, resnet18(torch, classes=4, width=16), torch.randn(2, 3, 64, 64), tmp_path / "r.onnx", False)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3, 64, 64)).astype(np.float32), rng.integers(0, 4, 16)
    model = fine_tuned(tmp_path / "r.onnx", x, y)
    close(run_ort(to_onnx(model).SerializeToString(), x[:3]), model.predict(x[:3]))


def rnn_classifier(torch, kind, bidirectional=False, layers=1, read="last_step"):
    nn = torch.nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(nn, kind)(5, 8, num_layers=layers, batch_first=True, bidirectional=bidirectional)
            self.fc = nn.Linear(16 if bidirectional else 8, 3)

        def forward(self, x):
            y, h = self.rnn(x)
            h = h[0] if isinstance(h, tuple) else h
            last = {"last_step": lambda: y[:, -1], "h_n": lambda: h[-1], "steps": lambda: y,
                    "h_n-pair": lambda: torch.cat([h[-2], h[-1]], -1)}                # both directions' final states
            return self.fc(last[read]())

    return Classifier().eval()


RNN_CASES = {"lstm": ("LSTM", False, 1, "last_step"), "lstm-bidirectional": ("LSTM", True, 1, "last_step"),
             "lstm-h_n": ("LSTM", False, 1, "h_n"), "lstm-every-step": ("LSTM", False, 1, "steps"),
             "gru-2-layers": ("GRU", False, 2, "last_step"),
             "lstm-2-layers-bidirectional": ("LSTM", True, 2, "h_n-pair"), "gru-bidirectional-steps": ("GRU", True, 1, "steps"),
             "rnn": ("RNN", False, 1, "h_n")}


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=EXPORTER_IDS)
@pytest.mark.parametrize("case", list(RNN_CASES))
def test_recurrent_classifiers_import_as_our_layers(case, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    kind, bi, layers, read_ = RNN_CASES[case]
    torch.manual_seed(3)
    net = rnn_classifier(torch, kind, bi, layers, read_)
    x = torch.randn(4, 6, 5)
    export(torch, net, x, tmp_path / "rnn.onnx", dynamo)
    if kind == "RNN" and dynamo:                       # the dynamo exporter unrolls nn.RNN into per-step MatMuls
        with pytest.raises(ImportFailed) as e:
            read(tmp_path / "rnn.onnx", strict=True)
        assert e.value.problems and any(op == "MatMul" for op, _, _ in e.value.problems)
        return
    with torch.no_grad():
        m = check_round_trip(tmp_path / "rnn.onnx", x.numpy(), net(x).numpy())
    rec = [n for n in m.graph.nodes.values() if n.type == kind]
    assert len(rec) == layers and all(n.config["bidirectional"] == bi for n in rec)
    assert rec[-1].config["return_sequences"] == (read_ == "steps" or bi and read_ == "last_step")
    assert sum(n.type == "TimePool" for n in m.graph.nodes.values()) == (bi and read_ == "last_step")


def test_imported_lstm_fine_tunes(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(4)
    export(torch, rnn_classifier(torch, "LSTM"), torch.randn(2, 6, 5), tmp_path / "l.onnx", False)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 6, 5)).astype(np.float32), rng.integers(0, 3, 32)
    fine_tuned(tmp_path / "l.onnx", x, y, lengths=np.full(32, 6), epochs=2)


def one_op_nets(torch):
    """name -> (net, input shape without the batch axis, layer types the import must contain)."""
    nn = torch.nn

    class Lambda(nn.Module):
        def __init__(self, fn, *mods):
            super().__init__()
            self.fn, self.mods = fn, nn.ModuleList(mods)

        def forward(self, x):
            return self.fn(x, *self.mods)

    def img(*mods):
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *mods)

    def vec(*mods):
        return nn.Sequential(nn.Linear(6, 8), *mods)

    return {
        "elu": (vec(nn.ELU(0.7)), (6,), {"ELU"}),
        "selu": (vec(nn.SELU()), (6,), {"SELU"}),
        "leaky-relu": (vec(nn.LeakyReLU(0.2)), (6,), {"LeakyReLU"}),
        "prelu-per-channel": (img(nn.PReLU(4, init=0.3)), (3, 5, 5), {"PReLU"}),
        "prelu-shared": (vec(nn.PReLU(init=0.1)), (6,), {"PReLU"}),
        "softplus": (vec(nn.Softplus()), (6,), {"Softplus"}),
        "relu6-clip": (vec(nn.ReLU6()), (6,), {"Clip"}),
        "hardsigmoid": (vec(nn.Hardsigmoid()), (6,), {"HardSigmoid"}),
        "hardswish": (vec(nn.Hardswish()), (6,), {"Hardswish"}),
        "gelu-erf": (vec(nn.GELU()), (6,), {"GELU"}),
        "gelu-tanh": (vec(nn.GELU(approximate="tanh")), (6,), {"GELU"}),
        "silu": (img(nn.SiLU()), (3, 4, 4), {"SiLU"}),
        "mish": (vec(nn.Mish()), (6,), {"Mish"}),
        "logsoftmax": (vec(nn.LogSoftmax(-1)), (6,), {"LogSoftmax"}),
        "sub-mul-broadcast": (Lambda(lambda x, c: (c(x) - nn.functional.adaptive_avg_pool2d(c(x), 1)) * torch.sigmoid(c(x)),
                                     nn.Conv2d(3, 4, 1)), (3, 5, 5), {"Subtract", "Multiply"}),
        "instancenorm": (img(nn.InstanceNorm2d(4, affine=True)), (3, 5, 5), {"InstanceNorm"}),
        "instancenorm-plain": (img(nn.InstanceNorm2d(4)), (3, 5, 5), {"InstanceNorm"}),
        "conv-transpose": (img(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)), (3, 5, 5),
                           {"ConvTranspose2D"}),
        "upsample-nearest": (img(nn.Upsample(scale_factor=2)), (3, 4, 5), {"Upsample2D"}),
        "upsample-bilinear": (img(nn.Upsample(scale_factor=(2, 3), mode="bilinear")), (3, 4, 5), {"Upsample2D"}),
        "zero-pad": (img(nn.ZeroPad2d((1, 2, 0, 1))), (3, 4, 5), {"ZeroPad"}),
        "global-max-pool": (img(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 2)), (3, 4, 5), {"GlobalMaxPool|MaxPool2D"}),
        "conv1d-pools": (nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.MaxPool1d(2), nn.ZeroPad1d((1, 0)),
                                       nn.AvgPool1d(3, 1, padding=1), nn.Conv1d(4, 2, 2, dilation=2)), (3, 16),
                         {"Conv1D", "MaxPool1D", "AveragePool1D", "ZeroPad"}),
        "conv3d-pools": (nn.Sequential(nn.Conv3d(2, 3, 3, padding=1), nn.MaxPool3d(2), nn.AvgPool3d(2, 1)),
                         (2, 6, 6, 6), {"Conv3D", "MaxPool3D", "AveragePool3D"}),
    }


ONE_OP = ["elu", "selu", "leaky-relu", "prelu-per-channel", "prelu-shared", "softplus", "relu6-clip", "hardsigmoid",
          "hardswish", "gelu-erf", "gelu-tanh", "silu", "mish", "logsoftmax", "sub-mul-broadcast", "instancenorm", "instancenorm-plain",
          "conv-transpose", "upsample-nearest", "upsample-bilinear", "zero-pad", "global-max-pool", "conv1d-pools",
          "conv3d-pools"]


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=EXPORTER_IDS)
@pytest.mark.parametrize("name", ONE_OP)
def test_one_node_operators_import_as_their_layers(name, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(5)
    net, shape, types = one_op_nets(torch)[name]
    net = net.eval()
    x = torch.randn((3,) + shape)
    m = from_torch(torch, net, x, tmp_path / "op.onnx", dynamo)
    have = {n.type for n in m.graph.nodes.values()}
    assert all(have & set(t.split("|")) for t in types)        # a|b: either (the two exporters differ)


def transformer_classifier(torch, classes=3, causal=False):
    """A 2-layer nn.TransformerEncoder (batch_first, d_model 32, 4 heads), mean over steps, a linear head."""
    nn = torch.nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.fc = nn.Linear(32, classes)

        def forward(self, x):
            if not causal:
                return self.fc(self.encoder(x).mean(1))
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            return self.fc(self.encoder(x, mask=mask, is_causal=True).mean(1))

    return Classifier().eval()


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("dynamo", EXPORTERS, ids=EXPORTER_IDS)
def test_transformer_encoder_imports_attention_as_one_layer(dynamo, causal, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(6)
    net = transformer_classifier(torch, causal=causal)
    x = torch.randn(3, 7, 32)
    m = from_torch(torch, net, x, tmp_path / "tr.onnx", dynamo)
    nodes = list(m.graph.nodes.values())
    types = [n.type for n in nodes]
    assert types.count("MultiHeadSelfAttention") == 2 and types.count("LayerNorm") == 4
    assert types.count("Dense") == 5 and types.count("TimePool") == 1
    assert all(n.config["heads"] == 4 and n.config["causal"] == causal for n in nodes
               if n.type == "MultiHeadSelfAttention")
    a = next(n for n in nodes if n.type == "MultiHeadSelfAttention")       # W_q is the first third of in_proj
    w = imported(tmp_path / "tr.onnx").layers[a.name].p
    sa = net.encoder.layers[0].self_attn
    np.testing.assert_allclose(w["Wq"], sa.in_proj_weight.detach().numpy()[:32], atol=1e-6)
    np.testing.assert_allclose(w["Wo"], sa.out_proj.weight.detach().numpy(), atol=1e-6)


def test_imported_transformer_fine_tunes_and_exports(tmp_path):
    torch = pytest.importorskip("torch")
    from engine.onnx_export import to_onnx
    torch.manual_seed(7)
    export(torch, transformer_classifier(torch), torch.randn(2, 7, 32), tmp_path / "tr.onnx", False)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(24, 7, 32)).astype(np.float32), rng.integers(0, 3, 24)
    model = fine_tuned(tmp_path / "tr.onnx", x, y, lengths=np.full(24, 7), epochs=2)
    s = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    close(s.run(None, {s.get_inputs()[0].name: x[:4], "lengths": np.full(4, 7, np.int32)})[0], model.predict(x[:4]))


def one_node_model(op, shape, opset=17, inits=(), **attrs):
    """x (n, *shape) → op → y, with constant inputs inits [(name, array)] after x."""
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node(op, ["x"] + [n for n, _ in inits], ["y"], name=f"the {op}", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), n) for n, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8 if opset < 19 else 9)


@pytest.mark.parametrize("op,shape,opset,attrs,layer,config", [
    ("LRN", (4, 5, 5), 17, {"size": 3, "alpha": 0.01, "beta": 0.5, "bias": 2.0}, "LocalResponseNorm",
     {"size": 3, "k": 2.0}),
    ("Gelu", (6,), 20, {}, "GELU", {"approximate": "none"}),
    ("Gelu", (6,), 20, {"approximate": "tanh"}, "GELU", {"approximate": "tanh"}),
    ("HardSigmoid", (6,), 17, {}, "HardSigmoid", {"alpha": 0.2, "beta": 0.5}),      # ONNX's defaults when absent
    ("Elu", (3, 4), 17, {}, "ELU", {"alpha": 1.0}),
    ("Celu", (6,), 17, {"alpha": 0.5}, "CELU", {"alpha": 0.5}),
    ("Softsign", (6,), 17, {}, "Softsign", {}),
    ("ThresholdedRelu", (6,), 17, {"alpha": 0.3}, "ThresholdedReLU", {"threshold": 0.3}),
    ("GlobalMaxPool", (3, 4, 5), 17, {}, "GlobalMaxPool", {}),
    ("InstanceNormalization", (2, 3, 4), 17, {}, "InstanceNorm", {"affine": True}),
], ids=["lrn", "gelu-opset20", "gelu-tanh-opset20", "hardsigmoid-onnx-defaults", "elu-sequence", "celu",
        "softsign", "thresholded-relu", "global-max",
        "instancenorm-1d"])
def test_onnx_nodes_written_by_hand(op, shape, opset, attrs, layer, config, tmp_path):
    inits = [("scale", np.array([0.5, 2.0])), ("bias", np.array([0.1, -0.3]))] if op == "InstanceNormalization" else []
    f = tmp_path / "n.onnx"
    onnx.save(one_node_model(op, shape, opset, [(n, v.astype(np.float32)) for n, v in inits], **attrs), f)
    x = np.random.default_rng(4).normal(size=(3,) + shape).astype(np.float32)
    m = check_round_trip(f, x)
    node = next(n for n in m.graph.nodes.values() if n.type == layer)
    for k, v in config.items():
        assert node.config[k] == pytest.approx(v) if isinstance(v, float) else node.config[k] == v


@pytest.mark.parametrize("op,shape,inits,attrs,why", [
    ("LRN", (4, 5, 5), [], {"size": 4}, "even LRN size"),
    ("Transpose", (3, 4, 5), [], {"perm": [1, 0, 2, 3]}, "moves the batch axis"),
    ("Div", (3, 4), [("k", np.zeros(4, np.float32))], {}, "zeros"),
    ("Pad", (2, 5), [("p", np.array([0, 1, 0, 0, 0, 0]))], {"mode": "reflect"}, "only padding around the L"),
    ("Resize", (2, 4, 4), [("roi", np.zeros(0, np.float32)), ("s", np.array([1, 1, 1.5, 2.5], np.float32))],
     {"mode": "nearest"}, "whole-number scales"),
    ("Conv", (2, 5, 5, 5), [("W", np.ones((3, 2, 2, 2, 2), np.float32))], {"pads": [1, 1, 1, 0, 0, 0]}, "asymmetric"),
], ids=["lrn-even", "transpose", "div-by-zeros", "pad-channels", "resize-fraction", "conv-asymmetric-pads"])
def test_nodes_without_a_layer_are_refused_with_the_reason(op, shape, inits, attrs, why, tmp_path):
    f = tmp_path / "n.onnx"
    onnx.save(one_node_model(op, shape, 17, inits, **attrs), f)
    with pytest.raises(ImportFailed) as e:
        read(f, strict=True)
    assert len(e.value.problems) == 1 and e.value.problems[0][:2] == (op, f"the {op}")
    assert why in e.value.problems[0][2] and "\n" not in str(e.value)
