"""ONNX backend cases of issue 22's last operators and options: cubic Resize (Upsample2D bicubic), ConvTranspose
output_shape, LpPool, Hardmax, MatMul of two tensors. Each backend case is imported with its parameter inputs
(scales, sizes) as constants and compared with the outputs shipped with it."""
from functools import lru_cache

import numpy as np
import pytest

from engine.layers import create
from engine.layers.resize import resize_matrix
from engine.model import Model
from engine.onnx_import import read
from gradcheck import build, run
from onnx_node_cases import coverage_tool


@lru_cache(maxsize=1)
def backend_cases():
    """name -> onnx.backend.test.case.node TestCase (the node tests' generators; ~15 s once)."""
    return {c.name: c for c in coverage_tool().node_testcases()}


def frozen(name, data=1):
    """(model with inputs after the first `data` as initializers, data inputs, expected output) of a backend case."""
    from onnx import ModelProto, numpy_helper
    c = backend_cases()[name]
    m = ModelProto()
    m.CopyFrom(c.model)
    ins, outs = c.data_sets[0]
    g = m.graph
    params = list(g.input)[data:]
    for vi, v in zip(params, ins[data:]):
        g.initializer.append(numpy_helper.from_array(np.asarray(v), vi.name))
        g.input.remove(vi)
    return m, [np.asarray(v) for v in ins[:data]], np.asarray(outs[0])


def imported(m):
    g, w, _ = read(m)
    model = Model(g)
    model.set_weights({**model.weights(), **w})
    return model


def ort_run(m, xs):
    """The model's first output in onnxruntime (the calling test skips where onnxruntime is missing)."""
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: x for i, x in zip(s.get_inputs(), xs)})[0]


def layer_types(model):
    return [n.type for n in model.graph.nodes.values() if n.type != "Input"]


# ---- cubic Resize ----
CUBIC = ["test_resize_upsample_scales_cubic", "test_resize_upsample_scales_cubic_A_n0p5_exclude_outside",
         "test_resize_upsample_scales_cubic_align_corners", "test_resize_upsample_scales_cubic_asymmetric",
         "test_resize_upsample_sizes_cubic", "test_resize_downsample_scales_cubic",
         "test_resize_downsample_scales_cubic_A_n0p5_exclude_outside", "test_resize_downsample_scales_cubic_align_corners",
         "test_resize_downsample_scales_cubic_antialias", "test_resize_downsample_sizes_cubic",
         "test_resize_downsample_sizes_cubic_antialias"]
# ONNX's reference evaluator (which made the expected outputs) divides by the fractional length 0.8·4 − 1 under
# align_corners; onnxruntime and PyTorch by the output's whole length − 1, as Upsample2D does: compared with onnxruntime.
BY_ORT = {"test_resize_downsample_scales_cubic_align_corners"}


@pytest.mark.parametrize("name", CUBIC)
def test_cubic_backend_cases_import_and_equal_their_outputs(name):
    from engine.onnx_export import to_onnx
    m, (x,), want = frozen(name)
    if name in BY_ORT:
        assert np.abs(ort_run(m, [x]) - want).max() > 0.5          # the two definitions really differ here
        want = ort_run(m, [x])
    model = imported(m)
    assert layer_types(model) == ["Upsample2D"]
    got = model.predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ort_run(to_onnx(model), [x]), want, rtol=1e-5, atol=1e-5)   # exported again


@pytest.mark.parametrize("name", ["test_resize_upsample_scales_linear", "test_resize_downsample_scales_linear",
                                  "test_resize_upsample_scales_linear_align_corners",
                                  "test_resize_downsample_sizes_linear_pytorch_half_pixel",
                                  "test_resize_downsample_scales_linear_antialias",
                                  "test_resize_downsample_sizes_linear_antialias"])
def test_linear_backend_cases_with_fractional_scales_sizes_and_antialias_import(name):
    m, (x,), want = frozen(name)
    model = imported(m)
    assert layer_types(model) == ["Upsample2D"]
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)


def test_cubic_kernel_is_keys_formula_and_weights_sum_to_one():
    A = resize_matrix(6, 12, 2.0, "bicubic")                          # half_pixel: x = (i + ½)/2 − ½
    x, a = 0.25, -0.75                                                # output 1 reads x = 0.25: taps −1, 0, 1, 2
    w = [a * 1.25 ** 3 - 5 * a * 1.25 ** 2 + 8 * a * 1.25 - 4 * a, (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1,
         (a + 2) * 0.75 ** 3 - (a + 3) * 0.75 ** 2 + 1, a * 1.75 ** 3 - 5 * a * 1.75 ** 2 + 8 * a * 1.75 - 4 * a]
    np.testing.assert_allclose(A[1, :3], [w[0] + w[1], w[2], w[3]], rtol=1e-14)   # tap −1 takes the edge value
    np.testing.assert_allclose(A.sum(axis=1), 1.0, rtol=1e-14)
    E = resize_matrix(6, 12, 2.0, "bicubic", exclude_outside=True)
    np.testing.assert_allclose(E[1, :3], np.array(w[1:]) / sum(w[1:]), rtol=1e-14)


TORCH_CASES = [({"mode": "bicubic"}, (2, 5, 4)), ({"mode": "bicubic", "scale": (3, 2)}, (1, 3, 4)),
               ({"mode": "bicubic", "coordinate_transformation_mode": "align_corners"}, (2, 4, 3)),
               ({"mode": "bicubic", "size": (7, 3)}, (1, 4, 5)), ({"mode": "bicubic", "scale_factor": 0.6}, (2, 7, 6)),
               ({"mode": "bicubic", "scale_factor": 1.5, "coordinate_transformation_mode": "align_corners"}, (1, 4, 5)),
               ({"mode": "bicubic", "coordinate_transformation_mode": "pytorch_half_pixel", "size": (2, 9)}, (1, 5, 4)),
               ({"mode": "bilinear", "coordinate_transformation_mode": "align_corners", "scale_factor": 2.5}, (1, 3, 4))]


@pytest.mark.parametrize("config,shape", TORCH_CASES)
def test_bicubic_and_bilinear_equal_torch_interpolate_in_float64(config, shape):
    torch = pytest.importorskip("torch")
    layer = build("Upsample2D", config, [shape])
    x = np.random.default_rng(0).normal(size=(3,) + shape)
    y = run(layer, [x])
    u = np.random.default_rng(1).normal(size=y.shape)
    (dx,) = layer.backward(u)
    mode = config["mode"]
    ac = config.get("coordinate_transformation_mode") == "align_corners"
    kw = {"size": config["size"]} if "size" in config else {"scale_factor": config.get("scale_factor") or
                                                             tuple(float(v) for v in config.get("scale", (2, 2)))}
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, mode=mode, align_corners=ac, **kw)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", [{"cubic_coeff_a": -0.5, "exclude_outside": True},
                                    {"coordinate_transformation_mode": "asymmetric", "scale_factor": 1.5},
                                    {"antialias": True, "size": (2, 3)}, {"antialias": True, "scale_factor": 0.4,
                                                                          "exclude_outside": True}])
def test_options_torch_lacks_equal_onnx_reference_resize(config):
    """cubic_coeff_a, exclude_outside, asymmetric, antialias: against ONNX's reference evaluator of Resize."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
    shape = (2, 6, 7)
    layer = build("Upsample2D", {"mode": "bicubic", **config}, [shape])
    x = np.random.default_rng(0).normal(size=(2,) + shape)
    y = run(layer, [x], training=False)
    cfg = layer.config
    attrs = dict(mode="cubic", cubic_coeff_a=cfg["cubic_coeff_a"], exclude_outside=int(cfg["exclude_outside"]),
                 coordinate_transformation_mode=cfg["coordinate_transformation_mode"], antialias=int(cfg["antialias"]))
    if layer.size:
        ins, feed = ["x", "", "", "sizes"], {"sizes": np.array((2,) + shape[:1] + layer.size, np.int64)}
    else:
        sh, sw = (cfg["scale_factor"],) * 2 if cfg["scale_factor"] else layer.sc
        ins, feed = ["x", "", "scales"], {"scales": np.array([1, 1, sh, sw], np.float32)}
    node = helper.make_node("Resize", ins, ["y"], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, None)],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    ref = ReferenceEvaluator(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)]))
    want = ref.run(None, {"x": x, **feed})[0]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)      # the reference divides by float32 scales


def test_bicubic_formulas_and_bad_settings():
    f = create("Upsample2D", "u", {"mode": "bicubic", "size": (5, 7)}).formulas([(2, 3, 4)])
    assert f["shape"].endswith("(2, 5, 7)") and "1.25|d|³ − 2.25|d|² + 1" in f["macs"]
    assert f["macs"].endswith("2·(4·3·7 + 4·5·7) = 448")
    from engine.errors import ConfigError, ShapeError
    with pytest.raises(ConfigError, match="size takes"):
        create("Upsample2D", "u", {"size": (3, 0)})
    with pytest.raises(ShapeError, match="must be ≥ 1"):
        create("Upsample2D", "u", {"scale_factor": 0.1}).compute_output_shape([(1, 4, 4)])


# ---- ConvTranspose output_shape / auto_pad SAME ----
@pytest.mark.parametrize("name,config", [
    ("test_convtranspose_output_shape", {"pad": [0, 0], "output_padding": [1, 1]}),          # 9 × 7 → 10 × 8
    ("test_convtranspose_kernel_shape", {"pad": [0, 0], "output_padding": [1, 1]}),
    ("test_convtranspose_autopad_same", {"pad": [0, 1, 0, 1], "output_padding": [0, 0]}),  # 7 → 6: one off the end
])
def test_convtranspose_output_shape_and_same_become_pads_and_output_padding(name, config):
    from engine.onnx_export import to_onnx
    m, (x,), want = frozen(name)
    model = imported(m)
    (node,) = [n for n in model.graph.nodes.values() if n.type == "ConvTranspose2D"]
    assert {k: list(node.config[k]) for k in config} == config
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ort_run(to_onnx(model), [x]), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs", [dict(strides=[2, 2], auto_pad="SAME_LOWER"), dict(strides=[2, 3], pads=[2, 0, 1, 1]),
                                   dict(strides=[3, 2], output_shape=[9, 7], dilations=[1, 2]),
                                   dict(strides=[2, 2], output_shape=[8, 8], output_padding=[1, 0])])
def test_convtranspose_requested_sizes_and_uneven_pads_equal_onnxruntime(attrs):
    from onnx import TensorProto, helper, numpy_helper
    W = np.random.default_rng(1).normal(size=(2, 3, 3, 3)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 4, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(W, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 3)).astype(np.float32)
    model = imported(m)
    assert layer_types(model) == ["ConvTranspose2D"]
    np.testing.assert_allclose(model.predict(x), ort_run(m, [x]), rtol=1e-5, atol=1e-5)


# ---- LpPool, Hardmax, MatMul of two tensors ----
@pytest.mark.parametrize("name,types,data", [
    *[(f"test_lppool_{n}", [f"LpPool{n[0]}D"], 1) for n in
      ("1d_default", "2d_default", "2d_dilations", "2d_pads", "2d_same_lower", "2d_same_upper", "2d_strides",
       "3d_default")],
    *[(f"test_hardmax_{n}", ["Hardmax"], 1) for n in
      ("axis_1", "axis_2", "default_axis", "example", "negative_axis", "one_hot")],
    ("test_matmul_3d", ["MatMul"], 2), ("test_matmul_4d", ["MatMul"], 2)])
def test_lppool_hardmax_matmul_backend_cases_import_and_equal_their_outputs(name, types, data):
    from engine.onnx_export import to_onnx
    m, xs, want = frozen(name, data)
    model = imported(m)
    assert layer_types(model) == types
    names = [i.name for i in m.graph.input]
    assert sorted(model.inputs) == sorted(names)
    got = model.predict(dict(zip(names, xs)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    e = to_onnx(model)
    order = [i.name for i in e.graph.input]
    np.testing.assert_allclose(ort_run(e, [dict(zip(names, xs))[n] for n in order]), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p,shape,k,s", [(2, (2, 3, 7, 6), 3, 2), (3, (1, 2, 6, 6), 2, 1), (1, (2, 3, 9), 4, 3)])
def test_lppool_equals_torch_lppool_in_float64(p, shape, k, s):
    """Without padding LpPool on |x| is nn.LPPool1d/2d (which raises x, not |x|, to the power p)."""
    torch = pytest.importorskip("torch")
    rank = len(shape) - 2
    cfg = {"p": p, "kernel_size": (k,), "stride": (s,)} | ({"layout": "signal"} if rank == 1 else {})
    layer = build(f"LpPool{rank}D", cfg, [shape[1:]])
    x = np.random.default_rng(0).normal(size=shape)
    y = run(layer, [x])
    u = np.random.default_rng(1).normal(size=y.shape)
    (dx,) = layer.backward(u)
    tx = torch.tensor(x, requires_grad=True)
    ty = (torch.nn.LPPool1d(p, k, s) if rank == 1 else torch.nn.LPPool2d(p, k, s))(tx.abs())
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    a = np.abs(x[0, 0, :k, :k] if rank == 2 else x[0, 0, :k])               # the first window by the formula
    assert y[(0, 0, 0, 0) if rank == 2 else (0, 0, 0)] == pytest.approx((a ** p).sum() ** (1 / p), rel=1e-12)


def test_hardmax_is_one_hot_of_the_first_maximum_with_zero_gradient():
    torch = pytest.importorskip("torch")
    layer = build("Hardmax", {"axis": 0}, [(4, 3)])
    x = np.array([[[1.0, 5, 2], [3, 5, 2], [3, 1, 0], [0, 2, 2]]])            # ties: the first maximum wins
    y = run(layer, [x])
    want = torch.nn.functional.one_hot(torch.tensor(x).argmax(dim=1), 4).movedim(-1, 1).numpy()
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(y[0, :, 1], [1, 0, 0, 0])
    assert not layer.backward(np.ones_like(y))[0].any()
    layer.in_masks = [np.array([[True, True, False, False]])]
    from engine.errors import ShapeError
    with pytest.raises(ShapeError, match="padded steps"):
        layer.forward(x)


def test_matmul_shapes_errors_and_masks():
    from engine.errors import ShapeError
    assert create("MatMul", "m").compute_output_shape([(2, 1, 3, 4), (5, 4, 6)]) == (2, 5, 3, 6)
    f = create("MatMul", "m").formulas([(3, 4), (4, 2)])
    assert f["macs"] == "output values·K = 3·2·4 = 24"
    with pytest.raises(ShapeError, match="K = 4 columns but B"):
        create("MatMul", "m").compute_output_shape([(3, 4), (3, 2)])
    with pytest.raises(ShapeError, match="two axes each"):
        create("MatMul", "m").compute_output_shape([(4,), (4, 2)])
    layer = build("MatMul", {}, [(2, 3), (3, 2)])                            # B (T, N) masked: summed over its steps
    layer.in_masks = [None, np.array([[True, True, False]])]
    with pytest.raises(ShapeError, match="padded steps"):
        layer.forward(np.ones((1, 2, 3)), np.ones((1, 3, 2)))


def test_new_layers_sit_under_their_family_in_the_palette_with_formulas(qtbot):
    from gui.palette import PaletteTree
    tree = PaletteTree()
    qtbot.addWidget(tree)
    groups = {tree.topLevelItem(i).text(0): [tree.topLevelItem(i).child(j).text(0)
                                             for j in range(tree.topLevelItem(i).childCount())]
              for i in range(tree.topLevelItemCount())}
    assert {"LpPool1D", "LpPool2D", "LpPool3D"} <= set(groups["Pooling"])
    assert "Hardmax" in groups["Activation"] and "MatMul" in groups["Merge"]
    f = create("LpPool2D", "l", {"p": 3, "kernel_size": [2], "stride": [2]}).formulas([(2, 4, 6)])
    assert f["shape"].startswith("y = (Σ |x|^3)^(1/3) over each window of 4 values") and f["shape"].endswith("(2, 2, 3)")
    assert create("Hardmax", "h").formulas([(5,)])["shape"].startswith("y_i = 1 where x_i is the first maximum")


@pytest.mark.parametrize("kw", [dict(scale_factor=2, mode="bicubic", align_corners=False),
                                dict(size=(5, 9), mode="bicubic", align_corners=True)])
def test_pytorch_bicubic_upsample_imports_as_upsample2d(kw, tmp_path):
    torch = pytest.importorskip("torch")
    from test_onnx_import import export
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Upsample(**kw))
    x = torch.randn(2, 2, 4, 6)
    export(torch, net, x, tmp_path / "up.onnx", False)
    model = imported(str(tmp_path / "up.onnx"))
    assert layer_types(model) == ["Conv2D", "Upsample2D"]
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x.numpy()), net(x).numpy(), rtol=1e-4, atol=1e-5)
