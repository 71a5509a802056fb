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
