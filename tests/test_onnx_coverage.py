"""tools/onnx_coverage.py classifies ONNX models by the registry's layers and options."""
import importlib.util
from pathlib import Path

import pytest

import onnx  # noqa: E402  (a hard dependency)
from onnx import TensorProto, helper  # noqa: E402

spec = importlib.util.spec_from_file_location("onnx_coverage", Path(__file__).parents[1] / "tools" / "onnx_coverage.py")
cov = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cov)


def model(op, shapes, out_shape, opset=17, **attrs):
    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, list(s)) for i, s in enumerate(shapes)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    node = helper.make_node(op, [i.name for i in ins], ["y"], **attrs)
    return helper.make_model(helper.make_graph([node], "g", ins, [out]), opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("m,want", [
    (model("LeakyRelu", [(3, 4)], (3, 4), alpha=0.1), ("layer", [], ["LeakyReLU"])),
    (model("Add", [(3, 4, 5), (5,)], (3, 4, 5)), ("layer", [], ["Add"])),
    (model("Softmax", [(3, 4, 5)], (3, 4, 5), axis=1), ("layer", [], ["Softmax"])),
    (model("LogSoftmax", [(3, 4, 5)], (3, 4, 5), axis=0), ("option", ["LogSoftmax: normalising over the batch axis "
                                                                      "(LogSoftmax)"], [])),
    (model("LayerNormalization", [(2, 3, 4), (3, 4), (3, 4)], (2, 3, 4), axis=1), ("layer", [], ["LayerNorm"])),
    (model("Hardmax", [(3, 4)], (3, 4)), ("layer", [], ["Hardmax"])),
    (model("TopK", [(3, 4)], (3, 4)), ("none", ["TopK"], [])),
    (model("MatMul", [(2, 3, 4), (2, 4, 5)], (2, 3, 5)), ("layer", [], ["MatMul"])),
    (model("MatMul", [(3, 1, 3, 4), (1, 2, 4, 2)], (3, 2, 3, 2)),
     ("option", ["MatMul: broadcasting along the batch axis (MatMul)"], [])),
    (model("LpPool", [(1, 2, 6, 6)], (1, 2, 5, 5), opset=18, kernel_shape=[2, 2], p=3), ("layer", [], ["LpPool2D"])),
    (model("ConvTranspose", [(1, 1, 3, 3), (1, 2, 3, 3)], (1, 2, 6, 6), strides=[2, 2], auto_pad="SAME_UPPER"),
     ("layer", [], ["ConvTranspose2D"])),
    (model("Shrink", [(3, 4)], (3, 4), lambd=1.5, bias=1.5), ("layer", [], ["Softshrink"])),
    (model("MaxPool", [(1, 2, 6, 6)], (1, 2, 4, 4), kernel_shape=[3, 3], pads=[1, 1, 1, 1]),    # the option is `pad`
     ("layer", [], ["MaxPool2D"])),
    (model("AveragePool", [(1, 2, 8, 8)], (1, 2, 10, 10), kernel_shape=[3, 3], pads=[2, 2, 2, 2]),
     ("layer", [], ["AveragePool2D"])),
    (model("AveragePool", [(1, 2, 6, 6)], (1, 2, 8, 8), kernel_shape=[3, 3], pads=[3, 3, 3, 3]),
     ("option", ["AveragePool: padding as wide as the window (AveragePool2D)"], [])),
    (model("MaxPool", [(1, 2, 6, 6)], (1, 2, 3, 3), kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
     ("layer", [], ["MaxPool2D"])),
    (model("GlobalMaxPool", [(1, 2, 6)], (1, 2, 1)), ("layer", [], ["GlobalMaxPool"])),
    (model("Swish", [(3, 4)], (3, 4), opset=24), ("layer", [], ["SiLU"])),
    (model("Resize", [(1, 2, 4, 4)], (1, 2, 8, 8), opset=19, mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1,
           coordinate_transformation_mode="asymmetric"), ("layer", [], ["Upsample2D"])),
    (model("Resize", [(1, 2, 4, 4)], (1, 2, 8, 8), opset=19, mode="linear",
           coordinate_transformation_mode="tf_crop_and_resize"),
     ("option", ["Resize: coordinate_transformation_mode tf_crop_and_resize (Upsample2D)"], [])),
])
def test_cases_map_to_layers_options_or_nothing(m, want):
    assert cov.classify(m) == want


def test_a_layer_or_option_the_registry_lacks_is_named(monkeypatch):
    from engine.layers import REGISTRY
    monkeypatch.delitem(REGISTRY, "ELU")
    assert cov.classify(model("Elu", [(3,)], (3,))) == ("none", ["Elu: ELU"], [])
    ln = REGISTRY["LayerNorm"]
    monkeypatch.setattr(ln, "hparams", tuple(h for h in ln.hparams if h.name != "axes"))
    m = model("LayerNormalization", [(2, 3, 4), (3, 4), (3, 4)], (2, 3, 4), axis=1)
    assert cov.classify(m) == ("option", ["LayerNormalization: axes (LayerNorm)"], [])
