"""ONNX recurrent nodes with direction = reverse and GRU with linear_before_reset = 0: hand-written RNN / LSTM / GRU
models imported as our layers with those options, compared with onnxruntime on the file and on the re-export."""
import numpy as np
import pytest

from test_onnx_import import check_round_trip  # noqa: F401

pytest.importorskip("onnxruntime")

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def reverse_model(tmp_path, op, read, t=5, f=3, h=4, seed=0, direction="reverse", lbr=1):
    """x (n, T, F) → Transpose → op(direction) → Y_h[0] (read "last"), Y[:, 0] as (n, T, H) ("steps"), the last step
    of Y ("last_step") or both directions' Y_h side by side ("pair"), saved as an ONNX file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    n, dirs = GATES[op], 2 if direction == "bidirectional" else 1
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), k)
             for k, s in (("W", (dirs, n * h, f)), ("R", (dirs, n * h, h)), ("B", (dirs, 2 * n * h)))]
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in (("ax0", [0]), ("ax1", [1]), ("i", -1),
                                                                              ("pair", [0, 2 * h]))]
    attrs = {"linear_before_reset": lbr} if op == "GRU" else {}
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node(op, ["xt", "W", "R", "B"], ["Y", "Yh"], hidden_size=h, direction=direction, **attrs)]
    if read == "pair":
        nodes += [helper.make_node("Transpose", ["Yh"], ["Yhb"], perm=[1, 0, 2]),               # (n, 2, H)
                  helper.make_node("Reshape", ["Yhb", "pair"], ["y"])]                         # (n, 2H)
    elif read == "last":
        nodes.append(helper.make_node("Squeeze", ["Yh", "ax0"], ["y"]))                      # (n, H)
    else:
        nodes += [helper.make_node("Squeeze", ["Y", "ax1"], ["Ys"]),                         # (T, n, H)
                  helper.make_node("Transpose", ["Ys"], ["y" if read == "steps" else "Yb"], perm=[1, 0, 2])]
        if read == "last_step":                                                               # Y[:, -1]: not the state
            nodes.append(helper.make_node("Gather", ["Yb", "i"], ["y"], axis=1))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", t, f])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / f"{op}-{read}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("read", ["last", "steps", "last_step"])
def test_reverse_recurrent_nodes_import_as_reverse_layers(op, read, tmp_path):
    x = np.random.default_rng(1).normal(size=(3, 5, 3)).astype(np.float32)
    m = check_round_trip(reverse_model(tmp_path, op, read), x)
    (layer,) = [v for v in m.graph.nodes.values() if v.type == op]
    assert layer.config["direction"] == "reverse" and not layer.config["bidirectional"]
    assert layer.config["return_sequences"] == (read != "last")
    types = [v.type for v in m.graph.nodes.values()]
    assert "OnnxNode" not in types and ("TimePool" in types) == (read == "last_step")


@pytest.mark.parametrize("direction,read", [("forward", "last"), ("forward", "steps"), ("reverse", "last"),
                                            ("bidirectional", "pair")])
def test_gru_with_linear_before_reset_0_imports_as_that_option(direction, read, tmp_path):
    x = np.random.default_rng(2).normal(size=(3, 5, 3)).astype(np.float32)
    m = check_round_trip(reverse_model(tmp_path, "GRU", read, direction=direction, lbr=0), x)
    (layer,) = [v for v in m.graph.nodes.values() if v.type == "GRU"]
    assert not layer.config["linear_before_reset"] and layer.config["bidirectional"] == (direction == "bidirectional")
    assert layer.config["direction"] == ("reverse" if direction == "reverse" else "forward")
