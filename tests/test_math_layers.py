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
