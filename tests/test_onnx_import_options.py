"""ONNX operator options mapped onto layer options (Pad modes, ...): each a small hand-written ONNX model, imported,
compared with onnxruntime on the file and on the re-export, and mapped to the expected layers (no OnnxNode)."""
import numpy as np
import pytest

from test_onnx_import import check_round_trip  # noqa: F401

pytest.importorskip("onnxruntime")


def one_node(tmp_path, op, shape, inputs=(), opset=17, n_out=1, **attrs):
    """x (batch, *shape) → op(x, *inputs) → y saved as an ONNX file; inputs are numpy initializers or '' (absent)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    names, inits = ["x"], []
    for i, v in enumerate(inputs):
        if isinstance(v, str):
            names.append(v)
            continue
        names.append(f"in{i}")
        inits.append(numpy_helper.from_array(np.asarray(v), f"in{i}"))
    outs = ["y"] + [f"y{i}" for i in range(1, n_out)]
    node = helper.make_node(op, names, outs, name=op.lower(), **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs[:1]], inits)
    f = tmp_path / f"{op}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=9), f)
    return f


def check(f, shape, types, seed=0):
    """Imported = onnxruntime; the graph's layer types after the Input are `types`; the model."""
    x = np.random.default_rng(seed).normal(size=(3,) + tuple(shape)).astype(np.float32)
    m = check_round_trip(f, x)
    assert [v.type for v in m.graph.nodes.values()][1:] == types
    return m


@pytest.mark.parametrize("mode,pads,value,shape,opset", [
    ("constant", [0, 0, 1, 2, 0, 0, 2, 1], 1.5, (2, 3, 4), 17),
    ("reflect", [0, 0, 2, 1, 0, 0, 1, 3], None, (2, 4, 5), 17),
    ("edge", [0, 0, 3, 0, 0, 0, 1, 2], None, (1, 3, 4), 17),
    ("wrap", [0, 0, 1, 4, 0, 0, 3, 2], None, (2, 3, 4), 19),
    ("reflect", [0, 0, 2, 0, 0, 1], None, (3, 5), 17)])
def test_pad_modes_and_fill_values_are_a_zero_pad(mode, pads, value, shape, opset, tmp_path):
    ins = [np.array(pads, np.int64)] + ([np.array(value, np.float32)] if value is not None else [])
    f = one_node(tmp_path, "Pad", shape, ins, opset=opset, mode=mode)
    m = check(f, shape, ["ZeroPad"])
    cfg = next(v for v in m.graph.nodes.values() if v.type == "ZeroPad").config
    assert cfg.get("mode", "constant") == mode and cfg.get("value", 0.0) == (value or 0.0)


def test_pad_of_listed_axes_only(tmp_path):
    f = one_node(tmp_path, "Pad", (2, 3, 4), [np.array([1, 2, 0, 3], np.int64), "", np.array([-1, 2], np.int64)],
                 opset=18, mode="edge")
    check(f, (2, 3, 4), ["ZeroPad"])


@pytest.mark.parametrize("op,shape,attrs", [
    ("MaxPool", (2, 5, 5), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("MaxPool", (1, 6, 7), dict(kernel_shape=[2, 3], auto_pad="SAME_LOWER")),
    ("AveragePool", (2, 6, 6), dict(kernel_shape=[2, 2], auto_pad="SAME_LOWER")),
    ("AveragePool", (1, 5, 7), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER", count_include_pad=1)),
    ("MaxPool", (2, 7, 7), dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2])),
    ("AveragePool", (2, 7, 7), dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2])),
    ("AveragePool", (2, 7, 7), dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2], count_include_pad=1)),
    ("AveragePool", (1, 7, 6), dict(kernel_shape=[3, 2], pads=[2, 0, 1, 1], strides=[2, 1], count_include_pad=1)),
    ("AveragePool", (1, 4, 4), dict(kernel_shape=[2, 2], dilations=[2, 2], ceil_mode=1)),
    ("AveragePool", (1, 4, 4, 4), dict(kernel_shape=[2, 2, 2], dilations=[2, 2, 2], ceil_mode=1)),
    ("AveragePool", (2, 9, 8, 9), dict(kernel_shape=[3, 2, 3], strides=[3, 2, 2], dilations=[2, 1, 2], ceil_mode=1,
                                       count_include_pad=1)),
    ("AveragePool", (2, 11), dict(kernel_shape=[3], strides=[2], dilations=[2], pads=[1, 2])),
], ids=lambda v: v if isinstance(v, str) else None)
def test_pool_same_padding_wide_pads_and_mean_dilation(op, shape, attrs, tmp_path):
    f = one_node(tmp_path, op, shape, opset=19, **attrs)
    rank = len(shape) - 1
    check(f, shape, [f"{op}{rank}D"])


def conv_node(tmp_path, shape, k, **attrs):
    """x → Conv (4 filters, kernel k, attrs) → y."""
    rng = np.random.default_rng(2)
    W = rng.normal(size=(4, shape[0]) + tuple(k)).astype(np.float32)
    return one_node(tmp_path, "Conv", shape, [W, rng.normal(size=4).astype(np.float32)], kernel_shape=list(k), **attrs)


@pytest.mark.parametrize("shape,k,attrs,types", [
    ((1, 5, 5), (3, 3), dict(strides=[2, 2], auto_pad="SAME_LOWER"), ["Conv2D"]),          # even: symmetric pads
    ((2, 6, 7), (3, 2), dict(strides=[2, 1], auto_pad="SAME_LOWER"), ["ZeroPad", "Conv2D"]),
    ((2, 6, 7), (2, 3), dict(strides=[1, 2], auto_pad="SAME_UPPER"), ["ZeroPad", "Conv2D"]),
    ((3, 8), (4,), dict(auto_pad="SAME_LOWER"), ["ZeroPad", "Conv1D"]),
    ((2, 6, 7), (3, 3), dict(auto_pad="VALID"), ["Conv2D"])])
def test_conv_auto_pad_is_explicit_padding(shape, k, attrs, types, tmp_path):
    check(conv_node(tmp_path, shape, k, **attrs), shape, types)


@pytest.mark.parametrize("op,shape,axis", [("Softmax", (3, 4), 1), ("LogSoftmax", (3, 4, 5), 2),
                                           ("Softmax", (3, 4, 5), -2), ("LogSoftmax", (3, 4), -1)])
def test_softmax_over_any_axis_but_the_batch(op, shape, axis, tmp_path):
    m = check(one_node(tmp_path, op, shape, axis=axis), shape, [op])
    r = len(shape) + 1
    got = next(v for v in m.graph.nodes.values() if v.type == op).config.get("axis", -1)
    assert got == (-1 if axis % r == r - 1 else axis % r - 1)


def test_softmax_over_the_batch_axis_is_refused_with_the_reason(tmp_path):
    from engine.onnx_import import ImportFailed, read
    with pytest.raises(ImportFailed) as e:
        read(one_node(tmp_path, "Softmax", (3, 4), axis=0), strict=True)
    assert "batch axis" in str(e.value)


def several(tmp_path, op, shape, n_in):
    """x → Relu, Sigmoid, Tanh of it (n_in of them) → op(…) → y."""
    import onnx
    from onnx import TensorProto, helper
    acts = ["Relu", "Sigmoid", "Tanh"][:n_in]
    nodes = [helper.make_node(a, ["x"], [f"h{i}"], name=f"a{i}") for i, a in enumerate(acts)]
    nodes.append(helper.make_node(op, [f"h{i}" for i in range(n_in)], ["y"], name="merge"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    f = tmp_path / f"{op}{n_in}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), f)
    return f


@pytest.mark.parametrize("op,layer", [("Max", "Maximum"), ("Min", "Minimum"), ("Mean", "Average"), ("Sum", "Add")])
def test_max_min_mean_sum_of_several_tensors_and_of_one(op, layer, tmp_path):
    check(several(tmp_path, op, (3, 4), 3), (3, 4), ["ReLU", "Sigmoid", "Tanh", layer])
    check(several(tmp_path, op, (3, 4), 1), (3, 4), ["ReLU"])            # of one tensor: that tensor


def test_batch_normalization_of_volumes(tmp_path):
    rng = np.random.default_rng(4)
    stats = [rng.normal(size=2).astype(np.float32), rng.normal(size=2).astype(np.float32),
             rng.normal(size=2).astype(np.float32), rng.uniform(0.5, 2, size=2).astype(np.float32)]
    f = one_node(tmp_path, "BatchNormalization", (2, 3, 4, 2), stats, epsilon=1e-3)
    check(f, (2, 3, 4, 2), ["BatchNorm"])


def test_flatten_with_axis_one_counted_from_the_end(tmp_path):
    check(one_node(tmp_path, "Flatten", (2, 3, 4), axis=-3), (2, 3, 4), ["Flatten"])
