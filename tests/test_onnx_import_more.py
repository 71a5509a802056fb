"""More ONNX operators mapped onto layers, each checked against onnxruntime and the torch module on models from
both PyTorch exporters: Add/Sub/Mul/Div by constants (ScaleShift), ..."""
import numpy as np
import pytest

from test_onnx_import import export, imported, check_round_trip  # noqa: F401

EXPORTERS = pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])


def round_trip(torch, net, shape, tmp_path, dynamo, batch=5):
    """net exported, imported, predict = onnxruntime = torch, re-export runs; the imported Model."""
    if dynamo:
        pytest.importorskip("onnxscript")
    x = torch.randn((batch,) + shape)
    f = tmp_path / "m.onnx"
    export(torch, net.eval(), x, f, dynamo)
    with torch.no_grad():
        m = check_round_trip(f, x.numpy(), net(x).numpy())
    assert not [n for n, v in m.graph.nodes.items() if v.type == "OnnxNode"]       # mapped, not kept as ONNX
    return m


@EXPORTERS
def test_arithmetic_with_constants_is_a_scale_shift(dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Consts(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.5, -0.2, 0.1]).reshape(3, 1, 1))
            self.register_buffer("std", torch.tensor([0.9, 1.3, 2.0]).reshape(3, 1, 1))
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.conv((x - self.mean) / self.std)) * 0.5 + 1.0
            return self.fc((2.0 - h).mean((2, 3)) / 4.0)
    torch.manual_seed(0)
    m = round_trip(torch, Consts(), (3, 6, 6), tmp_path, dynamo)
    kinds = [v.type for v in m.graph.nodes.values()]
    assert kinds.count("ScaleShift") >= 2 and kinds.index("ScaleShift") == 1        # (x − mean) / std: one layer
    first = m.layers[list(m.graph.nodes)[1]]
    np.testing.assert_allclose(first.p["scale"].ravel(), 1 / np.array([0.9, 1.3, 2.0]), rtol=1e-6)


def conv_model(rank, pads, stride):
    """x → Conv with asymmetric pads (as tf2onnx writes SAME padding with stride 2, or a causal 1-D conv) → Relu."""
    import onnx  # noqa: F401
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    shape = (3,) + (7,) * rank
    W = numpy_helper.from_array(rng.normal(size=(4, 3) + (3,) * rank).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "W", "b"], ["h"], name="conv", pads=pads, strides=[stride] * rank),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [W, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), shape


@pytest.mark.parametrize("rank,pads,stride", [(2, [0, 0, 1, 1], 2), (2, [1, 0, 2, 1], 1), (1, [2, 0], 1)],
                         ids=["same-stride2", "2d-uneven", "causal-1d"])
def test_asymmetric_conv_pads_are_a_zero_pad_then_the_convolution(rank, pads, stride, tmp_path):
    import onnx
    m, shape = conv_model(rank, pads, stride)
    f = tmp_path / "conv.onnx"
    onnx.save(m, f)
    x = np.random.default_rng(1).normal(size=(4,) + shape).astype(np.float32)
    model = check_round_trip(f, x)
    assert [v.type for v in model.graph.nodes.values()] == ["Input", "ZeroPad", f"Conv{rank}D", "ReLU"]


@EXPORTERS
def test_a_transpose_that_is_not_layout_only_is_a_permute(dynamo, tmp_path):
    """A ConvNeXt-style block: channels last for LayerNorm and the pointwise MLP, then channels first again."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 4, 3, padding=1), nn.LayerNorm(4)
            self.conv2, self.fc = nn.Conv2d(4, 5, (1, 3)), nn.Linear(5, 2)

        def forward(self, x):
            h = self.norm(self.conv(x).permute(0, 2, 3, 1))        # (B, H, W, C)
            h = h.permute(0, 3, 1, 2).transpose(2, 3)              # (B, C, W, H)
            return self.fc(self.conv2(h).mean((2, 3)))
    torch.manual_seed(0)
    m = round_trip(torch, Block(), (3, 6, 6), tmp_path, dynamo)
    assert [v.type for v in m.graph.nodes.values()].count("Permute") >= 2


@EXPORTERS
@pytest.mark.parametrize("kind", ["groupnorm", "groupnorm-no-affine", "lrn"])
def test_torch_multi_node_normalisations_are_one_layer(kind, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    norm = {"groupnorm": lambda: nn.GroupNorm(2, 6), "groupnorm-no-affine": lambda: nn.GroupNorm(3, 6, affine=False),
            "lrn": lambda: nn.LocalResponseNorm(3, alpha=0.1, beta=0.6, k=1.5)}[kind]()
    if kind == "groupnorm":
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), norm, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    m = round_trip(torch, net, (3, 7, 7), tmp_path, dynamo)
    want = "LocalResponseNorm" if kind == "lrn" else "GroupNorm"
    assert [v.type for v in m.graph.nodes.values()][:3] == ["Input", "Conv2D", want]
