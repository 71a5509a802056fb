"""Layout layers of ONNX models (issue 22): Transpose as Permute, Slice/Split as Slice layers, DepthToSpace,
SpaceToDepth. The ONNX backend cases are imported and compared with the outputs shipped with them."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from test_onnx_ops_more import frozen, imported, layer_types

spec = importlib.util.spec_from_file_location("onnx_coverage", Path(__file__).parents[1] / "tools" / "onnx_coverage.py")
cov = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cov)


def shipped(suite, name):
    """(model, inputs, expected outputs) of a case the installed onnx wheel ships as files."""
    import onnx
    from onnx import numpy_helper
    d = Path(onnx.__file__).parent / "backend" / "test" / "data" / suite / name
    read = lambda f: numpy_helper.to_array(onnx.load_tensor(str(f)))       # noqa: E731
    ds = d / "test_data_set_0"
    return (onnx.load(str(d / "model.onnx")), [read(f) for f in sorted(ds.glob("input_*.pb"))],
            [read(f) for f in sorted(ds.glob("output_*.pb"))])


# ---- Transpose: a Permute when the batch axis stays first ----
@pytest.mark.parametrize("name", ["test_transpose_all_permutations_0", "test_transpose_all_permutations_1"])
def test_transpose_cases_keeping_the_batch_axis_import_as_permute(name):
    m, xs, want = frozen(name)
    model = imported(m)
    assert layer_types(model) == ["Permute"]
    np.testing.assert_allclose(model.predict(xs[0].astype(np.float32)), want, rtol=1e-6, atol=1e-6)
    assert cov.classify(m)[0] == "layer"


@pytest.mark.parametrize("name", ["test_transpose_all_permutations_2", "test_transpose_default"])
def test_transpose_moving_the_batch_axis_is_a_missing_option(name):
    m, _, _ = frozen(name)
    assert cov.classify(m)[:2] == ("option", ["Transpose: moves the batch axis (Permute)"])


@pytest.mark.parametrize("suite,name,types", [("pytorch-operator", "test_operator_permute2", ["Permute"]),
                                              ("pytorch-converted", "test_PixelShuffle", ["Reshape", "Permute",
                                                                                         "Reshape"]),
                                              ("pytorch-converted", "test_GLU", ["Slice", "Slice", "Sigmoid",
                                                                                 "Multiply"]),
                                              ("pytorch-converted", "test_GLU_dim", ["Slice", "Slice", "Sigmoid",
                                                                                     "Multiply"])])
def test_pytorch_permutes_import_and_predict_the_shipped_outputs(suite, name, types):
    m, xs, want = shipped(suite, name)
    model = imported(m)
    assert sorted(layer_types(model)) == sorted(types)
    np.testing.assert_allclose(model.predict(xs[0].astype(np.float32)), want[0], rtol=1e-5, atol=1e-6)
    assert cov.classify(m)[0] == "layer"


# ---- Slice and Split ----
@pytest.mark.parametrize("config,shape,index", [
    ({"axes": [0], "starts": [1], "ends": [3], "steps": [1]}, (5, 4), np.s_[:, 1:3]),
    ({"axes": [1, 0], "starts": [-1, 2**31 - 1], "ends": [-2**31, -6], "steps": [-2, -1]}, (5, 4),
     np.s_[:, ::-1, ::-2]),
    ({"axes": [2], "starts": [-3], "ends": [2**31 - 1], "steps": [2]}, (2, 3, 7), np.s_[:, :, :, -3::2]),
    ({"axes": [1], "starts": [-100], "ends": [100], "steps": [3]}, (2, 7), np.s_[:, :, ::3])])
def test_slice_is_pythons_slicing_forward_and_backward(config, shape, index):
    from engine.layers import create
    layer = create("Slice", "s", config)
    layer.build([shape])
    x = np.random.default_rng(0).normal(size=(3,) + shape)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, x[index])
    dy = np.random.default_rng(1).normal(size=y.shape)
    dx = np.zeros_like(x)
    dx[index] = dy
    np.testing.assert_array_equal(layer.backward(dy)[0], dx)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(layer.torch_reference([torch.tensor(x)], {}, torch).numpy(), x[index])


def test_slice_refuses_bad_bounds_in_one_line():
    from engine.errors import LayerboardError
    from engine.layers import create
    for cfg, shape, words in [({"axes": [0], "starts": [3], "ends": [3]}, (4,), "keeps nothing of axis 0"),
                              ({"axes": [2], "starts": [0], "ends": [1]}, (4, 5), "slices axis 2"),
                              ({"axes": [0, 1], "starts": [0], "ends": [1, 2], "steps": [1, 1]}, (4, 5), "one value")]:
        with pytest.raises(LayerboardError) as e:
            create("Slice", "cut", cfg).compute_output_shape([shape])
        assert words in str(e.value) and "'cut'" in str(e.value) and "\n" not in str(e.value)


SLICES = ["test_slice", "test_slice_default_axes", "test_slice_default_steps", "test_slice_end_out_of_bounds",
          "test_slice_neg", "test_slice_neg_steps", "test_slice_negative_axes", "test_slice_start_out_of_bounds"]


@pytest.mark.parametrize("name", SLICES)
def test_slice_cases_with_constant_bounds_import_as_slice(name):
    m, xs, want = frozen(name)
    refused = {"test_slice": "slices the batch axis", "test_slice_neg_steps": "slices the batch axis",
               "test_slice_start_out_of_bounds": "keeps nothing"}.get(name)
    if refused:                     # batch rows 0:3 or reversed, an empty output: refused in one line, named
        from engine.onnx_import import ImportFailed, read
        with pytest.raises(ImportFailed, match=refused):
            read(m, strict=True)
        assert cov.classify(m)[0] == "option"
        return
    model = imported(m)
    assert layer_types(model) in (["Slice"], [])
    np.testing.assert_allclose(model.predict(xs[0].astype(np.float32)), want, rtol=0, atol=0)
    assert cov.classify(m)[0] == "layer"


SPLITS = ["test_split_equal_parts_2d_opset13", "test_split_variable_parts_2d_opset13",
          "test_split_variable_parts_2d_opset18", "test_split_2d_uneven_split_opset18", "test_split_equal_parts_2d"]


@pytest.mark.parametrize("name", SPLITS)
def test_split_cases_import_as_one_slice_per_output(name):
    from onnx import ModelProto
    from test_onnx_ops_more import backend_cases
    c = backend_cases()[name]
    m, xs, _ = frozen(name)
    model = imported(m)
    outs = c.data_sets[0][1]
    assert layer_types(model) == ["Slice"] * len(outs)
    ys = model.predict_all(xs[0].astype(np.float32))
    parts = sorted((n for n in model.graph.nodes.values() if n.type == "Slice"), key=lambda n: n.config["starts"])
    for n, w in zip(parts, outs):
        np.testing.assert_array_equal(ys[n.name], w)
    assert cov.classify(ModelProto.FromString(m.SerializeToString()))[0] == "layer"


# ---- DepthToSpace, SpaceToDepth ----
BLOCKS = ["test_depthtospace_example", "test_depthtospace_crd_mode_example", "test_spacetodepth_example",
          "test_spacetodepth", "test_spacetodepth_crd_mode_example", "test_spacetodepth_dcr_mode_example"]


@pytest.mark.parametrize("name", BLOCKS)
def test_depth_space_cases_import_and_equal_their_outputs(name):
    m, xs, want = frozen(name)
    model = imported(m)
    assert layer_types(model) == ["DepthToSpace" if "depthto" in name else "SpaceToDepth"]
    np.testing.assert_allclose(model.predict(xs[0].astype(np.float32)), want, rtol=1e-6, atol=1e-6)
    assert cov.classify(m)[0] == "layer"


@pytest.mark.parametrize("type,fn", [("DepthToSpace", "pixel_shuffle"), ("SpaceToDepth", "pixel_unshuffle")])
def test_crd_mode_is_pytorchs_pixel_shuffle_and_dcr_its_inverse(type, fn):
    torch = pytest.importorskip("torch")
    from engine.layers import create
    shape = (12, 2, 3) if type == "DepthToSpace" else (3, 4, 6)
    x = np.random.default_rng(0).normal(size=(2,) + shape)
    crd = create(type, "b", {"mode": "CRD"})
    crd.build([shape])
    np.testing.assert_array_equal(crd.forward(x), getattr(torch.nn.functional, fn)(torch.tensor(x), 2).numpy())
    other = create("SpaceToDepth" if type == "DepthToSpace" else "DepthToSpace", "i", {"mode": "DCR"})
    dcr = create(type, "d", {"mode": "DCR"})
    dcr.build([shape])
    other.build([dcr.out_shape])
    np.testing.assert_array_equal(other.forward(dcr.forward(x)), x)
    assert not np.array_equal(dcr.forward(x), crd.forward(x))


def test_depth_space_shape_errors_name_the_layer():
    from engine.errors import LayerboardError
    from engine.layers import create
    for t, shape, words in [("DepthToSpace", (6, 2, 2), "divisible by b² = 4"),
                            ("SpaceToDepth", (2, 3, 4), "divisible by b = 2"), ("DepthToSpace", (4, 4), "(C, H, W)")]:
        with pytest.raises(LayerboardError) as e:
            create(t, "blk").compute_output_shape([shape])
        assert words in str(e.value) and "'blk'" in str(e.value)


# ---- Tile ----
def test_tile_is_numpys_tile_and_its_gradient_sums_the_copies():
    from engine.layers import create
    layer = create("Tile", "t", {"repeats": [2, 1, 3]})
    layer.build([(2, 3, 2)])
    x = np.random.default_rng(0).normal(size=(4, 2, 3, 2))
    np.testing.assert_array_equal(layer.forward(x), np.tile(x, (1, 2, 1, 3)))
    dy = np.random.default_rng(1).normal(size=(4, 4, 3, 6))
    want = dy.reshape(4, 2, 2, 3, 3, 2).sum(axis=(1, 4))                      # copies along axes 0 and 2 summed
    np.testing.assert_allclose(layer.backward(dy)[0], want, rtol=1e-12)


@pytest.mark.parametrize("suite,name,ok", [("node", "test_tile_precomputed", False), ("node", "test_tile", False),
                                           ("pytorch-operator", "test_operator_repeat", True)])
def test_tile_cases_keeping_the_batch_axis_import(suite, name, ok):
    if suite == "node":
        m, xs, want = frozen(name)
    else:
        m, xs, w = shipped(suite, name)
        want = w[0]
    if not ok:                                              # these repeat the batch axis: refused, named
        from engine.onnx_import import ImportFailed, read
        with pytest.raises(ImportFailed, match="copy the batch axis"):
            read(m, strict=True)
        assert cov.classify(m)[:2] == ("option", ["Tile: repeats the batch axis (Tile)"])
        return
    model = imported(m)
    assert layer_types(model) == ["Tile"]
    np.testing.assert_array_equal(model.predict(xs[0].astype(np.float32)), want)
    assert cov.classify(m)[0] == "layer"


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_a_pytorch_model_of_layout_ops_imports_as_these_layers(dynamo, tmp_path):
    """chunk, slicing with a step, PixelShuffle and repeat exported by torch.onnx import as Slice, DepthToSpace (or
    Reshape → Permute → Reshape) and Tile, predict like onnxruntime and torch, and export to ONNX again."""
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.up = nn.Conv2d(8, 8, 1), nn.PixelShuffle(2)

        def forward(self, x):                               # (N, 8, 4, 6)
            a, b = self.conv(x).chunk(2, dim=1)             # (N, 4, 4, 6) each
            y = self.up(a * torch.sigmoid(b))               # GLU, then (N, 1, 8, 12)
            return y[:, :, 1:7, ::2].repeat(1, 1, 2, 1)     # (N, 1, 6, 6) → (N, 1, 12, 6)

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(5, 8, 4, 6)
    f = tmp_path / "layout.onnx"
    kw = ({"dynamo": True, "dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else
          {"dynamo": False, "dynamic_axes": {"x": {0: "batch"}}})
    torch.onnx.export(net, (x,), str(f), input_names=["x"], opset_version=17 if not dynamo else 18, **kw)
    import onnx
    from test_onnx_ops_more import ort_run
    m = onnx.load(str(f))
    model = imported(m)
    types = layer_types(model)
    assert {"Slice", "Tile"} <= set(types) and "OnnxNode" not in types, types
    xn = x.numpy()
    want = ort_run(m, [xn])
    np.testing.assert_allclose(model.predict(xn), want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(xn), net(x).numpy(), rtol=1e-5, atol=1e-5)
    from engine.onnx_export import to_onnx
    np.testing.assert_allclose(ort_run(to_onnx(model), [xn]), want, rtol=1e-5, atol=1e-5)
