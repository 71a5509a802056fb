"""Time-major ONNX RNN / LSTM / GRU graphs (X (T, B, F) a graph input, Y / Y_h graph outputs, sequence_lens a graph
input) import; the imported model on the same data, transposed at the boundary (engine/onnx_import_time.py), gives
onnxruntime's outputs. The ONNX backend's node cases (weights made initializers) and graphs built here; what cannot
be imported is refused in one line naming the node and why."""
import numpy as np
import pytest

from engine.model import Model
from engine.onnx_import import ImportFailed, read
from engine.onnx_import_multi import report
from engine.onnx_import_time import to_onnx, to_ours
from onnx_node_cases import RTOL, node_cases

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def run_imported(model, feeds):
    """[each graph output as the imported model gives it, put back in the ONNX layout], the graph."""
    g, w, kept = read(model, strict=True)
    assert not kept
    m = Model(g)
    m.set_weights({**m.weights(), **w})
    x = feeds["X"]
    lay = g.nodes[m.inputs[0]].meta.get("onnx_layout")
    batch_major = any(a.name == "layout" and a.i == 1 for a in model.graph.node[0].attribute)
    assert lay == (None if batch_major else {"layout": "tb", "onnx": "X"})      # X is time-major unless layout = 1
    ys = m.predict_all(to_ours(lay, x) if lay else x, lengths=feeds.get("seq_lens", feeds.get("sequence_lens")))
    n_out = len(model.graph.output)
    outs = [m.output] if n_out == 1 else [next(n for n, v in g.nodes.items() if v.meta.get("output") == k)
                                          for k in range(n_out)]
    return [to_onnx(g.nodes[n].meta["onnx_layout"], ys[n]) for n in outs], g


def ort_run(model, feeds):
    """onnxruntime's outputs (the test skips where onnxruntime is not installed; the refusal tests still run)."""
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def with_initializers(model, inputs):
    """The backend case's model with every input but X / sequence_lens made an initializer; its feeds."""
    from onnx import numpy_helper
    g = model.graph
    names = [i.name for i in g.input]
    data = ("X", "sequence_lens")
    keep = [i for i in g.input if i.name in data]
    del g.input[:]
    g.input.extend(keep)
    g.initializer.extend(numpy_helper.from_array(a, n) for n, a in zip(names, inputs) if n not in data)
    return model, {n: a for n, a in zip(names, inputs) if n in data}


REFUSED = {"test_lstm_with_peepholes": "peephole",
           "test_lstm_bidirectional": "cell state", "test_lstm_reverse": "cell state"}


def test_backend_recurrent_node_cases_import_and_give_onnxruntime_outputs():
    """15 of the 18 backend RNN/LSTM/GRU cases import (defaults, initial bias, T = 2, reverse, bidirectional, both Y
    and Y_h, layout = 1) and equal onnxruntime and the expected outputs; the other 3 are refused in one line that
    names the node and the reason (peepholes, an LSTM's cell state Y_c as an output)."""
    done = []
    for mod in ("rnn", "lstm", "gru"):
        for name, model, inputs, expected in node_cases(mod):
            model, feeds = with_initializers(model, inputs)
            if name in REFUSED:
                with pytest.raises(ImportFailed) as e:
                    read(model, strict=True)
                msg = str(e.value)
                assert "\n" not in msg and REFUSED[name] in msg and model.graph.node[0].op_type in msg, msg
                continue
            got, _ = run_imported(model, feeds)
            wants = expected if "batchwise" in name else ort_run(model, feeds)   # onnxruntime has no layout = 1
            for k, (a, want, exp) in enumerate(zip(got, wants, expected)):
                assert a.shape == want.shape, (name, k)
                np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6, err_msg=name)
                np.testing.assert_allclose(a, exp, rtol=RTOL, atol=1e-6, err_msg=name)
            done.append(name)
    assert len(done) == 15, done


def recurrent_graph(op, direction, outs, lens, t=6, b=4, f=3, h=5, seed=0, layout=0):
    """X (t, b, f) [, seq_lens (b,) int32] → op → the outputs listed in outs ("Y", "Y_h"), weights random;
    layout = 1: X (b, t, f), Y (b, t, dirs, h), Y_h (b, dirs, h)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    n, dirs = GATES[op], 2 if direction == "bidirectional" else 1
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), k)
             for k, s in (("W", (dirs, n * h, f)), ("R", (dirs, n * h, h)), ("B", (dirs, 2 * n * h)))]
    ins = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", t, f] if layout else [t, "batch", f])]
    if lens:
        ins.append(helper.make_tensor_value_info("seq_lens", TensorProto.INT32, ["batch"]))
    attrs = ({"linear_before_reset": 1} if op == "GRU" else {}) | ({"layout": 1} if layout else {})
    node = helper.make_node(op, ["X", "W", "R", "B", "seq_lens" if lens else ""],
                            [o if o in outs else "" for o in ("Y", "Y_h")], name=f"my_{op.lower()}",
                            hidden_size=h, direction=direction, **attrs)
    full = ({"Y": ["batch", t, dirs, h], "Y_h": ["batch", dirs, h]} if layout else
            {"Y": [t, dirs, "batch", h], "Y_h": [dirs, "batch", h]})
    vo = [helper.make_tensor_value_info(o, TensorProto.FLOAT, full[o]) for o in outs]
    model = helper.make_model(helper.make_graph([node], "g", ins, vo, inits),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    x = rng.normal(size=(t, b, f)).astype(np.float32)
    x = x.transpose(1, 0, 2).copy() if layout else x
    feeds = {"X": x}
    if lens:
        feeds["seq_lens"] = np.array([t, 1, t - 2, 3][:b], np.int32)       # padded steps in three sequences
    return model, feeds


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lens", [False, True], ids=["full", "sequence_lens"])
@pytest.mark.parametrize("outs", [("Y",), ("Y_h",), ("Y", "Y_h")], ids=["Y", "Y_h", "both"])
def test_time_major_graph_equals_onnxruntime(op, direction, lens, outs):
    """Every step Y (0 at padded steps), the last state Y_h (at each sequence's last valid step; step 0 backwards),
    or both (Y_h then derived from the same layer's steps, one set of weights)."""
    model, feeds = recurrent_graph(op, direction, outs, lens)
    got, g = run_imported(model, feeds)
    for a, want in zip(got, ort_run(model, feeds)):
        assert a.shape == want.shape
        np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
    assert [v.type for v in g.nodes.values()].count(op) == 1
    if lens:
        assert g.nodes["X"].meta["onnx_masks"] == {"seq_lens": "lengths"}
    lines = "\n".join(report(g))
    assert "ONNX input 'X' is time-major" in lines and "x.transpose(1, 0, 2)" in lines
    assert all(f"ONNX output '{o}'" in lines for o in outs)


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_layout_1_graph_equals_onnxruntime(op, direction):
    """layout = 1 (batch-major X, Y, Y_h), with sequence_lens, both outputs: the Input takes X as it is; compared
    with onnxruntime (which has no layout = 1) on the same node with layout = 0, transposed."""
    model, feeds = recurrent_graph(op, direction, ("Y", "Y_h"), True, layout=1)
    got, g = run_imported(model, feeds)
    ref, ref_feeds = recurrent_graph(op, direction, ("Y", "Y_h"), True)             # the same weights, layout 0
    assert np.array_equal(ref_feeds["X"].transpose(1, 0, 2), feeds["X"])
    y, yh = ort_run(ref, ref_feeds)
    for a, want in zip(got, (y.transpose(2, 0, 1, 3), yh.transpose(1, 0, 2))):    # (B, T, dirs, H), (B, dirs, H)
        assert a.shape == want.shape
        np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
    assert "(batch, steps, directions, H)" in "\n".join(report(g))


def test_a_time_major_output_squeezed_from_y():
    """Y of a one-direction node squeezed to (T, B, H) as the graph output: the layer's (B, T, H), transposed."""
    from onnx import TensorProto, helper, numpy_helper
    model, feeds = recurrent_graph("LSTM", "forward", ("Y",), True)
    g = model.graph
    g.node[0].output[0] = "Y4"
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "ax1"))
    g.node.append(helper.make_node("Squeeze", ["Y4", "ax1"], ["Y"]))
    g.output[0].CopyFrom(helper.make_tensor_value_info("Y", TensorProto.FLOAT, [6, "batch", 5]))
    (got,), gr = run_imported(model, feeds)
    want = ort_run(model, feeds)[0]
    assert got.shape == want.shape == (6, 4, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert "ONNX output 'Y' is time-major" in "\n".join(report(gr))


def test_sequence_lens_computed_from_the_data_is_refused_in_one_line():
    """seq_lens computed from X (ReduceSum of a Shape) is not a lengths input: one line naming the node and why."""
    from onnx import TensorProto, helper, numpy_helper
    model, _ = recurrent_graph("GRU", "forward", ("Y_h",), False)
    g = model.graph
    g.node[0].input[4] = "lens"
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    g.node.insert(0, helper.make_node("Cast", ["Xs"], ["lens"], to=TensorProto.INT32))
    g.node.insert(0, helper.make_node("ArgMax", ["X"], ["Xa"], axis=2, keepdims=0))
    g.node.insert(1, helper.make_node("ReduceMax", ["Xa", "one"], ["Xs"], keepdims=0))
    with pytest.raises(ImportFailed) as e:
        read(model, strict=True)
    msg = str(e.value)
    assert "\n" not in msg and "GRU 'my_gru'" in msg and "sequence_lens" in msg, msg


def test_a_time_major_input_needs_fixed_steps():
    from onnx import TensorProto, helper
    model, _ = recurrent_graph("RNN", "forward", ("Y",), False)
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "batch", 3]))
    with pytest.raises(ImportFailed) as e:
        read(model, strict=True)
    assert "'X' is time-major" in str(e.value) and "fixed number of steps" in str(e.value)
