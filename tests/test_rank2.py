"""The rank-2 rule: a sample (T, F) has its steps first and its features last for every layer; the channel-wise
layers (BatchNorm, PReLU, GroupNorm, InstanceNorm, LocalResponseNorm) act per feature F, as their PyTorch modules
act per channel C of (B, C, L) = x.transpose(1, 2). Only Conv1D and the 1-D pools read (C, L) (layout = signal)."""
import numpy as np
import pytest

from engine.errors import ShapeError
from engine.layers import create
from gradcheck import build, run

try:
    import torch
except ImportError:                 # optional: only the tests that run PyTorch skip
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch==2.13.0)")

T, F = 5, 6
CASES = [("BatchNorm", {}, lambda: torch.nn.BatchNorm1d(F)),
         ("PReLU", {"per_channel": True}, lambda: torch.nn.PReLU(F)),
         ("GroupNorm", {"groups": 3}, lambda: torch.nn.GroupNorm(3, F)),
         ("InstanceNorm", {"affine": True}, lambda: torch.nn.InstanceNorm1d(F, affine=True)),
         ("LocalResponseNorm", {"size": 3, "alpha": 0.5}, lambda: torch.nn.LocalResponseNorm(3, alpha=0.5))]
TORCH_NAMES = {"gamma": "weight", "beta": "bias", "a": "weight", "running_mean": "running_mean",
               "running_var": "running_var"}


@pytest.mark.parametrize("type,config,module", CASES, ids=[c[0] for c in CASES])
@needs_torch
def test_channel_wise_layers_act_per_feature_as_torch_on_the_transposed_sequence(type, config, module):
    layer = build(type, config, [(T, F)])
    assert all(v.shape == (F,) for v in layer.p.values())                       # one value per feature
    x = np.random.default_rng(0).normal(1, 2, (3, T, F))
    y = run(layer, [x])
    u = np.random.default_rng(1).normal(size=y.shape)
    (dx,) = layer.backward(u)
    m = module().double().train()
    with torch.no_grad():
        for k, v in layer.p.items():
            getattr(m, TORCH_NAMES[k]).copy_(torch.tensor(v))
    tx = torch.tensor(x, requires_grad=True)
    ty = m(tx.transpose(1, 2)).transpose(1, 2)                                  # (B, T, F) → (B, F, T) and back
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("type,config,module", CASES, ids=[c[0] for c in CASES])
def test_onnx_moves_the_features_to_axis_1_where_the_operator_wants_channels(type, config, module):
    """BatchNormalization and LRN read axis 1: the graph transposes (B, T, F) to (B, F, T) and back; PRelu's slopes
    (F,) broadcast against the last axis as they are; GroupNorm and InstanceNorm sum over the valid steps (lengths)."""
    from engine import Graph
    from engine.model import Model
    from engine.onnx_export import to_onnx
    g = Graph()
    g.chain(("x", "Input", {"shape": [T, F]}), ("n", type, config))
    m = to_onnx(Model(g))
    ops = [n.op_type for n in m.graph.node]
    assert ("Transpose" in ops) == (type in ("BatchNorm", "LocalResponseNorm")), ops
    assert ("lengths" in [i.name for i in m.graph.input]) == (type in ("GroupNorm", "InstanceNorm"))


def test_formulas_name_the_features_of_a_sequence():
    assert "C/G = 6/3 = 2 features F of the (T, F) sequence, over all T steps (10 values)" in create(
        "GroupNorm", "g", {"groups": 3}).formulas([(T, F)])["shape"]
    assert "over the 5 steps of feature c" in create("InstanceNorm", "i", {}).formulas([(T, F)])["shape"]
    assert create("PReLU", "p", {"per_channel": True}).formulas([(T, F)])["params"].endswith("C = 6")
    assert create("BatchNorm", "b", {}).formulas([(T, F)])["params"].startswith("γ and β per channel: 2·C = 2·6")
    with pytest.raises(ShapeError, match=r"C = 5 channels \(input \(6, 5\)\) do not split into groups = 2"):
        create("GroupNorm", "g", {"groups": 2}).compute_output_shape([(6, 5)])   # F = 5, not T = 6


def test_an_onnx_channels_first_sequence_norm_is_refused_with_the_reason(tmp_path):
    import onnx
    from engine.onnx_import import ImportFailed, read
    from test_onnx_import import one_node_model
    f = tmp_path / "n.onnx"
    onnx.save(one_node_model("InstanceNormalization", (2, 7), 17, [("scale", np.ones(2, np.float32)),
                                                                   ("bias", np.zeros(2, np.float32))]), f)
    with pytest.raises(ImportFailed) as e:
        read(f, strict=True)                          # not strict: kept as an ONNX node, with the same reason
    assert "(N, C, L)" in str(e.value.problems[0]) and "(T, F)" in str(e.value.problems[0])
