"""Math (unary functions per value), Reduce and Divide against their formulas, ONNX import of their operators
(imported = onnxruntime on the file and on the re-export) and the coverage rules. The shared checks (gradients,
masks, PyTorch parity, ONNX and PyTorch export, fused path) run from the registry: tests/test_gradcheck.py …"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engine.layers import create
from engine.layers.unary import FUNCTIONS
from gradcheck import build, run

spec = importlib.util.spec_from_file_location("onnx_coverage", Path(__file__).parents[1] / "tools" / "onnx_coverage.py")
cov = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cov)

SPECIAL = np.array([-2.5, -1.5, -0.5, -0.0, 0.0, 0.5, 1.5, 2.5, 0.49999997, -3.7])


def math_layer(f, shape=(10,)):
    layer = create("Math", "m", {"function": f})
    layer.build([shape])
    return layer


@pytest.mark.parametrize("f,want", [
    ("round", [-2, -2, -0, -0, 0, 0, 2, 2, 0, -4]),            # halves to even, as ONNX Round and torch.round
    ("floor", [-3, -2, -1, 0, 0, 0, 1, 2, 0, -4]),
    ("ceil", [-2, -1, -0, 0, 0, 1, 2, 3, 1, -3]),
    ("sign", [-1, -1, -1, 0, 0, 1, 1, 1, 1, -1]),
    ("abs", np.abs(SPECIAL)),
    ("neg", -SPECIAL)])
def test_rounding_functions_sign_abs_and_their_zero_gradients(f, want):
    layer = math_layer(f)
    y = layer.forward(SPECIAL[None])
    np.testing.assert_array_equal(y[0], np.asarray(want, float))
    dx = layer.backward(np.ones((1, 10)))[0][0]
    d = {"abs": np.sign(SPECIAL), "neg": -np.ones(10)}.get(f, np.zeros(10))
    np.testing.assert_array_equal(dx, d)                      # |x|′ = sign(x): 0 at 0, as torch


@pytest.mark.parametrize("f,fn,dfn,x", [
    ("exp", np.exp, np.exp, np.linspace(-3, 3, 7)),
    ("log", np.log, lambda x: 1 / x, np.linspace(0.1, 4, 7)),
    ("sqrt", np.sqrt, lambda x: 0.5 / np.sqrt(x), np.linspace(0.1, 4, 7)),
    ("reciprocal", lambda x: 1 / x, lambda x: -1 / x ** 2, np.array([-2, -0.5, 0.25, 3])),
    ("tan", np.tan, lambda x: 1 / np.cos(x) ** 2, np.linspace(-1.4, 1.4, 7)),
    ("asin", np.arcsin, lambda x: 1 / np.sqrt(1 - x * x), np.linspace(-0.95, 0.95, 7)),
    ("acos", np.arccos, lambda x: -1 / np.sqrt(1 - x * x), np.linspace(-0.95, 0.95, 7)),
    ("acosh", np.arccosh, lambda x: 1 / np.sqrt(x * x - 1), np.linspace(1.05, 5, 7)),
    ("atanh", np.arctanh, lambda x: 1 / (1 - x * x), np.linspace(-0.95, 0.95, 7)),
    ("erf", np.vectorize(__import__("math").erf), lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x), np.linspace(-3, 3, 7)),
])
def test_functions_and_derivatives_equal_their_formulas(f, fn, dfn, x):
    layer = math_layer(f, x.shape)
    np.testing.assert_allclose(layer.forward(x[None])[0], fn(x), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.backward(np.ones((1, len(x))))[0][0], dfn(x), rtol=1e-12)


def test_outside_the_domain_is_nan_and_float32_stays_float32():
    x = np.array([[-1.0, 0.0, 2.0]], np.float32)
    assert np.isnan(math_layer("log", (3,)).forward(x)[0, 0]) and math_layer("log", (3,)).forward(x)[0, 1] == -np.inf
    assert np.isnan(math_layer("asin", (3,)).forward(x)[0, 2]) and np.isnan(math_layer("acosh", (3,)).forward(x)[0, 1])
    assert math_layer("sqrt", (3,)).forward(x).dtype == np.float32


def test_hover_formula_carries_the_function_and_its_derivative():
    f = create("Math", "m", {"function": "sin"}).formulas([(4, 3)])
    assert f["shape"].startswith("y = sin x per value") and "dy/dx = cos x" in f["shape"] and "(4, 3)" in f["shape"]
    assert create("Math", "m", {"function": "floor"}).formulas([(2,)])["shape"].endswith("dy/dx = 0")
    assert set(FUNCTIONS) == set(create("Math", "m").hparams[0].choices)


def test_a_padded_step_changes_nothing():
    """Masked sample: the output at valid steps does not depend on padded ones and dx is 0 there."""
    layer = build("Math", {"function": "exp"}, [(4, 2)])
    x = np.random.default_rng(0).normal(size=(2, 4, 2))
    m = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    y = run(layer, [x], masks=[m])
    x2 = x.copy()
    x2[1, 2:] = 50.0
    np.testing.assert_array_equal(run(layer, [x2], masks=[m])[m], y[m])


# ---- ONNX import of every operator: one node, imported = onnxruntime (also on the re-export) ----
def _x(f, shape, seed=0):
    dom = FUNCTIONS[f][3] or (-2.0, 2.0)
    return np.random.default_rng(seed).uniform(*dom, (3,) + shape).astype(np.float32)


@pytest.mark.parametrize("f", sorted(FUNCTIONS))
def test_every_math_operator_imports_as_math(f, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_onnx_import import check_round_trip
    from test_onnx_import_options import one_node
    op, shape = FUNCTIONS[f][0], (2, 3)
    m = check_round_trip(one_node(tmp_path, op, shape), _x(f, shape))
    layers = [v for v in m.graph.nodes.values()][1:]
    assert [(v.type, v.config["function"]) for v in layers] == [("Math", f)]


@pytest.mark.parametrize("op", ["Abs", "Sin", "Erf", "Round", "Sign", "Acosh"])
def test_coverage_counts_the_math_operators(op):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert cov.classify(m) == ("layer", [], ["Math"])


# ---- Reduce ----
def reduce_layer(op, axes, shape, keepdims=False):
    layer = create("Reduce", "r", {"op": op, "axes": axes, "keepdims": keepdims})
    layer.build([shape])
    return layer


@pytest.mark.parametrize("op,fn", [
    ("mean", lambda x, a: x.mean(a)), ("sum", lambda x, a: x.sum(a)), ("max", lambda x, a: x.max(a)),
    ("min", lambda x, a: x.min(a)), ("prod", lambda x, a: x.prod(a)), ("l1", lambda x, a: np.abs(x).sum(a)),
    ("l2", lambda x, a: np.sqrt((x ** 2).sum(a))), ("logsumexp", lambda x, a: np.log(np.exp(x).sum(a))),
    ("logsum", lambda x, a: np.log(x.sum(a))), ("sumsquare", lambda x, a: (x ** 2).sum(a))])
def test_reduce_equals_its_formula(op, fn):
    x = np.random.default_rng(1).uniform(0.2, 2.0, (3, 2, 4, 5))
    layer = reduce_layer(op, [0, -1], (2, 4, 5))
    np.testing.assert_allclose(layer.forward(x), fn(x, (1, 3)), rtol=1e-12)
    assert layer.forward(x).shape == (3, 4)
    assert reduce_layer(op, [0, -1], (2, 4, 5), True).forward(x).shape == (3, 1, 4, 1)


def test_reduce_max_shares_ties_and_prod_of_zeros_as_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[[1.0, 3.0, 3.0, -1.0], [0.0, 0.0, 2.0, 0.0]], [[0.0, 0.0, 0.0, 0.0], [5.0, 0.0, 2.0, 1.0]]])
    for op, fn in (("max", lambda t: torch.amax(t, 2)), ("min", lambda t: torch.amin(t, 2)),
                   ("prod", lambda t: torch.prod(t, 2))):
        layer = reduce_layer(op, [1], (2, 4))
        u = np.arange(1.0, 5.0).reshape(2, 2)
        y, dx = layer.forward(x), layer.backward(u)[0]
        t = torch.tensor(x, requires_grad=True)
        ty = fn(t)
        (ty * torch.tensor(u)).sum().backward()
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-14)
        np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-14, err_msg=op)
        if op == "max":                                          # [3, 3] tied: half each; [0, 0, 0, 0]: a quarter
            np.testing.assert_array_equal(dx[0, 0], [0, 0.5, 0.5, 0]) and np.testing.assert_array_equal(dx[1, 0], 0.75)


def test_reduce_refuses_steps_of_variable_length_sequences_in_one_line():
    from engine.errors import ShapeError
    x, m = np.ones((2, 4, 3)), np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    for axes, keep, what in (([0], True, "use TimePool"), ([1], False, "set keepdims")):
        layer = reduce_layer("mean", axes, (4, 3), keep)
        layer.in_masks = [m]
        with pytest.raises(ShapeError, match=what):
            layer.forward(x)
        layer.in_masks = [np.ones((2, 4), bool)]                 # every step valid: it reduces
        assert layer.forward(x).shape[0] == 2
    with pytest.raises(ShapeError, match="reduces axes \\[2\\] but its input has 2 axes"):
        reduce_layer("sum", [2], (4, 3))


def test_reduce_hover_formula():
    f = create("Reduce", "r", {"op": "logsumexp", "axes": [1, 2]}).formulas([(3, 4, 5)])
    assert f["shape"] == ("y = ln Σ eˣ over axes 1, 2 (n = 20 values each), dy/dx = eˣ / Σ eˣ (softmax); "
                          "(3, 4, 5) → (3,)")


@pytest.mark.parametrize("op,shape,axes,keepdims,opset", [
    ("ReduceSum", (3, 4), [2], 1, 13), ("ReduceL2", (3, 4), [-1], 0, 17), ("ReduceMax", (2, 3, 4), [1, 3], 0, 18),
    ("ReduceMean", (2, 3, 4), [1], 1, 18), ("ReduceLogSumExp", (3, 4), [1], 0, 11), ("ReduceProd", (2, 3), [2], 1, 17),
    ("ReduceMin", (2, 3, 4), [2], 0, 17), ("ReduceL1", (3, 4), [1], 1, 17), ("ReduceSumSquare", (3, 2), [1], 0, 17),
    ("ReduceLogSum", (3, 4), [2], 0, 17)])
def test_reduce_operators_import_as_reduce(op, shape, axes, keepdims, opset, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_onnx_import import check_round_trip
    from test_onnx_import_options import one_node
    as_input = op == "ReduceSum" and opset >= 13 or opset >= 18
    ins = [np.array(axes, np.int64)] if as_input else []
    f = one_node(tmp_path, op, shape, ins, opset=opset, keepdims=keepdims, **({} if as_input else {"axes": axes}))
    x = np.random.default_rng(0).uniform(0.2, 2.0, (3,) + shape).astype(np.float32)
    m = check_round_trip(f, x)
    (layer,) = list(m.graph.nodes.values())[1:]
    want_axes = tuple(sorted((a % (len(shape) + 1)) - 1 for a in axes))
    assert (layer.type, tuple(layer.config["axes"]), layer.config["keepdims"]) == ("Reduce", want_axes, bool(keepdims))


@pytest.mark.parametrize("axes,keepdims,why", [
    ([0, 1], 1, "over the batch axis"), (None, 1, "every axis, the batch axis too"),
    ([1, 2], 0, "one number per sample")])
def test_reduce_import_refuses_the_batch_axis_in_one_line(axes, keepdims, why, tmp_path):
    from engine.onnx_import import ImportFailed, read
    from test_onnx_import_options import one_node
    f = one_node(tmp_path, "ReduceL1", (3, 4), opset=17, keepdims=keepdims, **({"axes": axes} if axes else {}))
    with pytest.raises(ImportFailed, match=why):
        read(f, strict=True)


# ---- Divide, Power, Squeeze / Unsqueeze ----
def test_divide_equals_the_quotient_and_its_gradients():
    layer = create("Divide", "d")
    layer.build([(2, 3), (2, 1)])
    a, b = np.arange(1.0, 7.0).reshape(1, 2, 3), np.array([[[2.0], [-4.0]]])
    np.testing.assert_array_equal(layer.forward(a, b), a / b)
    da, db = layer.backward(np.ones((1, 2, 3)))
    np.testing.assert_array_equal(da, np.broadcast_to(1 / b, a.shape))
    np.testing.assert_allclose(db, (-a / b ** 2).sum(-1, keepdims=True), rtol=1e-15)  # summed where x₂ broadcast


def two_inputs(tmp_path, op, shape_a, shape_b):
    import onnx
    from onnx import TensorProto, helper
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", *s]) for n, s in (("a", shape_a), ("b", shape_b))]
    g = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"], name="div")], "g", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    f = tmp_path / "div.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), f)
    return f


def test_div_of_two_tensors_imports_as_divide_and_of_a_constant_as_scale_shift(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from engine.model import Model
    from engine.onnx_import import read
    from test_onnx_import_options import check, one_node
    f = two_inputs(tmp_path, "Div", (2, 3), (2, 1))
    g, w, _ = read(f, strict=True)
    assert [n.type for n in g.nodes.values()] == ["Input", "Input", "Divide"]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 2, 3)).astype(np.float32), rng.uniform(0.5, 2, (3, 2, 1)).astype(np.float32)
    want = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})[0]
    names = [n for n, v in g.nodes.items() if v.type == "Input"]
    np.testing.assert_allclose(Model(g).predict(dict(zip(names, (a, b)))), want, rtol=1e-6)
    check(one_node(tmp_path, "Div", (2, 3), [np.array([2.0, 4.0, 8.0], np.float32)]), (2, 3), ["ScaleShift"])


@pytest.mark.parametrize("p", [2.0, 3.0, 0.5, -1.0])
def test_pow_with_a_constant_exponent_imports_as_power(p, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_onnx_import import check_round_trip
    from test_onnx_import_options import one_node
    x = np.random.default_rng(0).uniform(0.2, 2.0, (3, 4)).astype(np.float32)
    m = check_round_trip(one_node(tmp_path, "Pow", (4,), [np.array(p, np.float32)]), x)
    assert [(n.type, n.config) for n in m.graph.nodes.values()][1:] == [("Power", {"exponent": p})]
    layer = create("Power", "p", {"exponent": p})
    layer.build([(4,)])
    np.testing.assert_allclose(layer.forward(x.astype(float)), x.astype(float) ** p, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(np.ones((3, 4)))[0], p * x.astype(float) ** (p - 1), rtol=1e-14)


def _node_model(op, shapes, out_shape, inits=(), **attrs):
    from onnx import TensorProto, helper, numpy_helper
    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, list(s)) for i, s in enumerate(shapes)]
    names = [i.name for i in ins] + [f"c{i}" for i in range(len(inits))]
    g = helper.make_graph([helper.make_node(op, names, ["y"], **attrs)], "g", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
                          [numpy_helper.from_array(np.asarray(v), f"c{i}") for i, v in enumerate(inits)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("m,want", [
    (_node_model("Div", [(3, 4), (3, 1)], (3, 4)), ("layer", [], ["Divide"])),
    (_node_model("Pow", [(3, 4)], (3, 4), [np.array(2.0, np.float32)]), ("layer", [], ["Power"])),
    (_node_model("Pow", [(3, 4), (3, 4)], (3, 4)),
     ("option", ["Pow: a computed exponent (a graph input) (Power)"], [])),
    (_node_model("Unsqueeze", [(3, 4)], (3, 1, 4), [np.array([1], np.int64)]), ("layer", [], ["Reshape"])),
    (_node_model("Squeeze", [(1, 3, 4)], (3, 4), [np.array([0], np.int64)]),
     ("option", ["Squeeze: squeezing or inserting the batch axis (Reshape)"], [])),
    (_node_model("ReduceL2", [(3, 4, 5)], (3, 5), axes=[1], keepdims=0), ("layer", [], ["Reduce"])),
    (_node_model("ReduceSum", [(3, 4, 5)], (3, 1, 1), [np.array([-1, 1], np.int64)]), ("layer", [], ["Reduce"])),
    (_node_model("ReduceMax", [(3, 4)], (1, 4), axes=[0]), ("option", ["ReduceMax: reducing over the batch axis "
                                                                       "(Reduce)"], []))])
def test_coverage_rules_of_divide_power_reshape_and_reduce(m, want):
    assert cov.classify(m) == want


@pytest.mark.parametrize("op,shape,axes,want", [("Unsqueeze", (3, 4), [1], ["Reshape"]),
                                                ("Unsqueeze", (3, 4), [-1], ["Reshape"]),
                                                ("Squeeze", (3, 1, 4), [2], ["Reshape"])])
def test_squeeze_and_unsqueeze_keeping_the_batch_axis_import_as_reshape(op, shape, axes, want, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_onnx_import_options import check, one_node
    check(one_node(tmp_path, op, shape, [np.array(axes, np.int64)]), shape, want)


@pytest.mark.parametrize("type,config,ops", [
    ("Math", {"function": "acosh"}, ["Acosh"]), ("Math", {"function": "round"}, ["Round"]),
    ("Power", {"exponent": 1.5}, ["Pow"]), ("Reduce", {"op": "l2", "axes": [0]}, ["ReduceL2"]),
    ("Reduce", {"op": "sum", "axes": [0, 1]}, ["ReduceSum", "Flatten"])])
def test_export_is_the_one_onnx_operator(type, config, ops):
    from engine import Graph
    from engine.model import Model
    from engine.onnx_export import to_onnx
    g = Graph()
    g.chain(("x", "Input", {"shape": [3, 4], "standardize": False}), ("f", type, config))
    assert [n.op_type for n in to_onnx(Model(g)).graph.node] == ops


def test_coverage_of_a_constant_divided_by_a_tensor_is_no_layer():
    m = _node_model("Div", [(3, 4)], (3, 4), [np.array(2.0, np.float32)])
    m.graph.node[0].input[:] = ["c0", "x0"]
    assert cov.classify(m)[0] == "none"
