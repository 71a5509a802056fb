"""torch.nn.PixelShuffle / PixelUnshuffle exported by torch.onnx import as one DepthToSpace / SpaceToDepth layer:
as the DepthToSpace node (mode CRD) of opset ≥ 11, and as the Reshape → Transpose → Reshape the TorchScript exporter
writes at older opsets (or a hand-written x.view(…).permute(…).view(…) in DCR order); each compared in onnxruntime,
torch and the engine."""
import warnings

import numpy as np
import pytest

from test_onnx_ops_more import imported, layer_types, ort_run


def _net(torch, kind, b):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2 * b * b if kind != "unshuffle" else 2, 3, padding=1)
            self.up = nn.PixelShuffle(b) if kind == "shuffle" else nn.PixelUnshuffle(b) if kind == "unshuffle" else None

        def forward(self, x):
            y = self.conv(x)
            if self.up is not None:
                return torch.tanh(self.up(y))
            h, w = 2 * b, 3 * b                               # DCR by hand: (N, b, b, 2, H, W) → (N, 2, H, b, W, b)
            y = y.reshape(-1, b, b, 2, h, w).permute(0, 3, 4, 1, 5, 2)
            return torch.tanh(y.reshape(-1, 2, h * b, w * b))

    torch.manual_seed(0)
    return Net().eval()


@pytest.mark.parametrize("kind,b,opset,want", [
    ("shuffle", 2, 9, ("DepthToSpace", "CRD")), ("shuffle", 3, 9, ("DepthToSpace", "CRD")),
    ("shuffle", 2, 17, ("DepthToSpace", "CRD")), ("unshuffle", 2, 9, ("SpaceToDepth", "CRD")),
    ("dcr", 2, 13, ("DepthToSpace", "DCR"))])
@pytest.mark.parametrize("batch", ["fixed", "dynamic"])
def test_pixel_shuffle_imports_as_one_layer_and_predicts_like_onnxruntime(kind, b, opset, want, batch, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import onnx
    net = _net(torch, kind, b)
    x = torch.randn(4, 3, 2 * b, 3 * b)
    f = tmp_path / "ps.onnx"
    kw = {"dynamic_axes": {"x": {0: "n"}}} if batch == "dynamic" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(f), input_names=["x"], opset_version=opset, dynamo=False, **kw)
    m = onnx.load(str(f))
    ops = [n.op_type for n in m.graph.node]
    assert ("DepthToSpace" in ops or "SpaceToDepth" in ops) == (opset >= 11 and kind != "dcr"), ops
    model = imported(m)
    assert layer_types(model) == ["Conv2D", want[0], "Tanh"]
    layer = next(n for n in model.graph.nodes.values() if n.type == want[0])
    assert (layer.config["block_size"], layer.config["mode"]) == (b, want[1])
    xn = x.numpy()
    ref = ort_run(m, [xn])
    np.testing.assert_allclose(model.predict(xn), ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(ref, net(x).numpy(), rtol=1e-5, atol=1e-5)


def test_a_reshape_transpose_reshape_that_is_no_pixel_shuffle_stays_three_layers(tmp_path):
    """(N, 4, 2, 3) → (N, 2, 2, 2, 3) → a transpose no block layout gives → (N, 1, 4, 6): Reshape, Permute, Reshape."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import onnx

    class Odd(torch.nn.Module):
        def forward(self, x):
            n = x.shape[0]
            return x.reshape(n, 2, 2, 2, 3).permute(0, 3, 2, 1, 4).reshape(n, 2, 4, 3)

    x = torch.randn(3, 4, 2, 3)
    f = tmp_path / "odd.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Odd(), (x,), str(f), input_names=["x"], opset_version=13, dynamo=False)
    m = onnx.load(str(f))
    model = imported(m)
    assert layer_types(model) == ["Reshape", "Permute", "Reshape"]
    np.testing.assert_allclose(model.predict(x.numpy()), ort_run(m, [x.numpy()]), rtol=1e-6)
