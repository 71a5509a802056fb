"""ONNX import of what older opsets mean (Softmax / LogSoftmax / Hardmax before opset 13 over the axes from `axis`
on, PRelu before opset 7 with a 1-D slope per channel) and of channel-first (N, C, L) PRelu slopes and
BatchNormalization: the backend cases import and equal their expected outputs, and tools/onnx_coverage.py counts
such a case as mapped exactly when it imports."""
from pathlib import Path

import numpy as np
import pytest

import onnx  # noqa: E402  (a dependency)
from onnx import TensorProto, helper, numpy_helper

from engine.model import Model
from engine.onnx_import import ImportFailed, read
from onnx_node_cases import RTOL, coverage_tool, node_cases

cov = coverage_tool()
OLD = Path("/tmp/oldonnx/x15/onnx/backend/test/data")          # onnx 1.5.0's shipped cases, where unpacked
PT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"


def imported(m):
    g, w, _ = read(m, strict=True)
    model = Model(g)
    model.set_weights({**model.weights(), **w})
    return model


def types(model):
    return [n.type for n in model.graph.nodes.values()][1:]


def one_node(op, shape, opset, inits=(), **attrs):
    """x (n, *shape) → op(x, *inits) → y at `opset` (IR 3 below opset 8: initializers are graph inputs too)."""
    names = ["x"] + [f"in{i}" for i in range(len(inits))]
    tensors = [numpy_helper.from_array(np.asarray(a, np.float32), f"in{i}") for i, a in enumerate(inits)]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])]
    if opset < 8:
        ins += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in tensors]
    g = helper.make_graph([helper.make_node(op, names, ["y"], name=op.lower(), **attrs)], "g", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", *shape])], tensors)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=3 if opset < 8 else 7)


def rows(op, x, axis):
    """The old meaning: x as a (product of the axes before `axis`, product of the rest) matrix, op over each row."""
    r = x.reshape(int(np.prod(x.shape[:axis])), -1).astype(np.float64)
    if op == "Hardmax":
        y = np.zeros_like(r)
        y[np.arange(len(r)), r.argmax(1)] = 1
    else:
        e = np.exp(r - r.max(1, keepdims=True))
        y = e / e.sum(1, keepdims=True)
        y = np.log(y) if op == "LogSoftmax" else y
    return y.reshape(x.shape)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("shape,axis,opset", [((4, 5), 1, 11), ((4, 5), None, 9), ((3, 4, 5), 1, 11),
                                              ((3, 4, 5), 2, 11), ((3, 4, 5), -2, 11), ((4, 5), 2, 11)])
def test_old_opsets_normalise_the_axes_from_axis_on_as_one_row(op, shape, axis, opset):
    x = np.random.default_rng(0).normal(size=(2,) + shape).astype(np.float32)
    m = one_node(op, shape, opset, **({} if axis is None else {"axis": axis}))
    model = imported(m)
    want = rows(op, x, (1 if axis is None else axis) % x.ndim)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-6)
    assert op in types(model) and "OnnxNode" not in types(model)
    assert cov.classify(m)[0] == "layer"


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
def test_old_opsets_over_the_batch_axis_are_refused_and_counted_missing(op):
    m = one_node(op, (4, 5), 11, axis=0)                    # one row of the whole batch: not kept as an ONNX node
    with pytest.raises(ImportFailed, match="batch"):
        read(m)
    assert cov.classify(m)[0] == "option"


@pytest.mark.parametrize("op", ["softmax", "logsoftmax", "hardmax"])
def test_the_installed_backend_cases_import_and_equal_their_outputs(op):
    done = 0
    for name, m, ins, outs in node_cases(op):
        if "axis_0" in name:                                  # the batch axis: refused
            continue
        np.testing.assert_allclose(imported(m).predict(ins[0]), outs[0], rtol=RTOL, atol=1e-6)
        done += 1
    assert done >= 5


def backend_case(d):
    m = onnx.load(str(d / "model.onnx"))
    ins, outs = ([numpy_helper.to_array(onnx.load_tensor(str(f))) for f in sorted((d / "test_data_set_0").glob(p))]
                 for p in ("input_*.pb", "output_*.pb"))
    return m, ins[0], outs[0]


@pytest.mark.parametrize("name,layers", [("test_PReLU_1d_multiparam", ["Permute", "PReLU", "Permute"]),
                                         ("test_BatchNorm1d_3d_input_eval", ["Permute", "BatchNorm", "Permute"]),
                                         ("test_PReLU_2d_multiparam", ["PReLU"])])
def test_channels_first_cases_of_the_pytorch_converted_suite(name, layers):
    m, x, want = backend_case(PT / name)
    model = imported(m)
    assert types(model) == layers
    np.testing.assert_allclose(model.predict(x), want, rtol=RTOL, atol=1e-6)
    assert cov.classify(m)[0] == "layer"


OLD_CASES = ["node/test_softmax_axis_1", "node/test_softmax_default_axis", "node/test_logsoftmax_axis_1",
             "node/test_logsoftmax_default_axis", "node/test_hardmax_axis_1", "node/test_hardmax_default_axis",
             "node/test_softmax_axis_2", "node/test_hardmax_axis_2", "pytorch-converted/test_PReLU_1d_multiparam",
             "pytorch-converted/test_BatchNorm1d_3d_input_eval"]


@pytest.mark.parametrize("case", OLD_CASES)
def test_onnx_1_5_shipped_cases_import_and_equal_their_outputs(case):
    if not (OLD / case).is_dir():
        pytest.skip(f"onnx 1.5.0's backend data is not unpacked at {OLD}")
    m, x, want = backend_case(OLD / case)
    np.testing.assert_allclose(imported(m).predict(x), want, rtol=RTOL, atol=1e-6)
    assert cov.classify(m)[0] == "layer"


def test_prelu_slopes_per_channel_of_n_c_l_and_bad_slopes():
    a = np.array([[0.1], [0.2], [-0.3]], np.float32)                # (C, 1) for (N, C, L)
    x = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    m = one_node("PRelu", (3, 4), 17, inits=[a])
    model = imported(m)
    assert types(model) == ["Permute", "PReLU", "Permute"]
    np.testing.assert_allclose(model.predict(x), np.where(x > 0, x, a * x), rtol=1e-6)
    assert cov.classify(m)[0] == "layer"
    bad = one_node("PRelu", (3, 4), 17, inits=[np.arange(12, dtype=np.float32).reshape(3, 4)])
    with pytest.raises(ImportFailed, match="slopes of shape"):
        read(bad, strict=True)
    assert cov.classify(bad)[0] == "option"


def test_batch_normalization_of_n_c_l_is_per_channel_and_exports_again():
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx_export import to_onnx
    rng = np.random.default_rng(2)
    g, b, mu, var = rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    m = one_node("BatchNormalization", (4, 6), 15, inits=[g, b, mu, var], epsilon=1e-3)
    x = rng.normal(size=(3, 4, 6)).astype(np.float32)
    model = imported(m)
    want = (x - mu[:, None]) / np.sqrt(var[:, None] + 1e-3) * g[:, None] + b[:, None]     # per channel C
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-5)
    s = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(s.run(None, {s.get_inputs()[0].name: x})[0], want, rtol=1e-4, atol=1e-5)
    assert cov.classify(m)[0] == "layer"


def test_a_reshape_folding_the_batch_axis_is_refused_not_a_flatten():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])                   # a fixed batch of 3
    g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"], name="rows")], "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([1, -1], np.int64), "s")])      # (1, 60)
    with pytest.raises(ImportFailed, match="folds the batch axis"):
        read(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
