"""GridSample: every mode × padding × align_corners against torch's F.grid_sample (float64, 1e-10, output and both
gradients), float64 central differences with grid points away from the kinks, ONNX export run in onnxruntime,
import of the ONNX backend GridSample cases, a spatial transformer that trains, and the one-line shape errors."""
import itertools

import numpy as np
import pytest

from engine import Graph
from engine.errors import ShapeError
from engine.layers import create
from engine.model import Model
from gradcheck import numeric
from onnx_node_cases import ATOL, RTOL, coverage_tool, node_cases

COMBOS = list(itertools.product(("bilinear", "nearest", "bicubic"), ("zeros", "border", "reflection"), (False, True)))
IDS = [f"{m}-{p}-{'align' if a else 'edges'}" for m, p, a in COMBOS]


def layer(mode, padding, align, img, grid):
    lyr = create("GridSample", "g", {"mode": mode, "padding_mode": padding, "align_corners": align})
    lyr.build([img, grid])
    return lyr


def grid_away_from_kinks(rng, shape, H, W, align, lo=-1.4, hi=1.4):
    """Grid values in [lo, hi] whose pixel coordinates have a fractional part in [0.15, 0.35] ∪ [0.65, 0.85]: away
    from whole pixels (taps, border clamps, reflections at 0 and size − 1) and half pixels (reflections at −½)."""
    g = rng.uniform(lo, hi, shape)
    for a, n in ((0, W), (1, H)):
        s = (n - 1) / 2 if align else n / 2
        c = (g[..., a] + 1) * s - (0 if align else 0.5)                       # the unnormalised coordinate
        f = c - np.floor(c)
        f = np.where(f < 0.5, 0.15 + 0.4 * f, 0.65 + 0.4 * (f - 0.5))          # into the safe bands
        g[..., a] = (np.floor(c) + f + (0 if align else 0.5)) / s - 1
    return g


@pytest.mark.parametrize("mode,padding,align", COMBOS, ids=IDS)
def test_matches_torch_grid_sample_forward_and_both_gradients(mode, padding, align):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, g = rng.normal(0, 1, (3, 2, 5, 4)), rng.uniform(-1.6, 1.6, (3, 4, 3, 2))   # some points outside [−1, 1]
    lyr = layer(mode, padding, align, (2, 5, 4), (4, 3, 2))
    y = lyr.forward(x, g, training=True)
    u = rng.normal(0, 1, y.shape)
    dx, dg = lyr.backward(u)
    tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(g, requires_grad=True)
    ty = torch.nn.functional.grid_sample(tx, tg, mode=mode, padding_mode=padding, align_corners=align)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg, tg.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert (np.abs(dg).max() > 0.1) == (mode != "nearest")                     # nearest: no grid gradient


@pytest.mark.parametrize("mode,padding,align", COMBOS, ids=IDS)
def test_gradients_equal_central_differences(mode, padding, align):
    rng = np.random.default_rng(1)
    x, g = rng.normal(0, 1, (2, 2, 4, 5)), grid_away_from_kinks(rng, (2, 3, 2, 2), 4, 5, align)
    lyr = layer(mode, padding, align, (2, 4, 5), (3, 2, 2))
    u = rng.normal(0, 1, (2, 2, 3, 2))
    lyr.forward(x, g, training=True)
    dx, dg = (np.array(d) for d in lyr.backward(u))
    loss = lambda: float(np.sum(lyr.forward(x, g, training=True) * u))
    np.testing.assert_allclose(dx, numeric(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dg, numeric(loss, g), rtol=1e-6, atol=1e-8)


def test_identity_grid_reproduces_the_image_and_points_outside_read_the_padding():
    """align_corners: the grid of pixel centres linspace(−1, 1) gives x back; x = ±3 reads 0 (zeros), the edge
    pixel (border) or the mirrored pixel (reflection)."""
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (1, 1, 3, 4))
    gx, gy = np.meshgrid(np.linspace(-1, 1, 4), np.linspace(-1, 1, 3))
    ident = np.stack([gx, gy], -1)[None]                                      # (1, 3, 4, 2)
    for mode in ("bilinear", "nearest", "bicubic"):
        np.testing.assert_allclose(layer(mode, "zeros", True, (1, 3, 4), (3, 4, 2)).forward(x, ident), x, atol=1e-12)
    far = np.array([[[[3.0, -1.0], [-1.0 - 2 / 3, -1.0]]]])                     # x = 3 and one pixel left of x = −1
    y = {p: layer("bilinear", p, True, (1, 3, 4), (1, 2, 2)).forward(x, far)[0, 0, 0] for p in
         ("zeros", "border", "reflection")}
    np.testing.assert_allclose(y["zeros"], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(y["border"], [x[0, 0, 0, 3], x[0, 0, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(y["reflection"], [x[0, 0, 0, 0], x[0, 0, 0, 1]], atol=1e-12)   # 6 → 3 → 0; −1 → 1


def two_input_model(mode, padding, align, img=(2, 5, 4), grid=(3, 4, 2)):
    g = Graph()
    g.add_node("Input", "img", {"shape": list(img), "standardize": False})
    g.add_node("Input", "grid", {"shape": list(grid), "standardize": False})
    g.add_node("GridSample", "sample", {"mode": mode, "padding_mode": padding, "align_corners": align})
    g.connect("img", "sample", 0)
    g.connect("grid", "sample", 1)
    return Model(g)


@pytest.mark.parametrize("mode,padding,align", COMBOS, ids=IDS)
def test_onnx_export_runs_in_onnxruntime_like_the_engine(mode, padding, align):
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx_export import to_onnx
    m = two_input_model(mode, padding, align)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (4, 2, 5, 4)).astype(np.float32)
    g = grid_away_from_kinks(rng, (4, 3, 4, 2), 5, 4, align).astype(np.float32)
    want = m.predict({"img": x, "grid": g})
    proto = to_onnx(m)
    assert [n.op_type for n in proto.graph.node] == ["GridSample"]
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = s.run(None, {"img": x, "grid": g})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def backend_cases():
    return node_cases("gridsample")


def ort_session(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_onnx_backend_gridsample_cases_import_and_give_their_expected_outputs():
    """The 14 4-D backend cases import as Input, Input → GridSample and predict their expected outputs (written
    with 4 decimals: the backend's tolerance) and onnxruntime's on the case's model (1e-5); the 4
    volumetric (5-D) cases are refused in one line (GridSample samples (C, H, W) images only)."""
    pytest.importorskip("onnx")
    from engine.onnx_import import ImportFailed, read
    done, refused = [], []
    for name, model, (x, grid), (want,) in backend_cases():
        if x.ndim == 5:
            with pytest.raises(ImportFailed) as e:
                read(model, strict=True)
            assert "\n" not in str(e.value) and "volumetric" in str(e.value)
            refused.append(name)
            continue
        g, w, kept = read(model, strict=True)
        assert not kept and [n.type for n in g.nodes.values()].count("GridSample") == 1
        m = Model(g)
        ins = [i.name for i in model.graph.input]
        got = m.predict({m.inputs[0]: x, m.inputs[1]: grid}) if m.inputs == ins else None
        assert got is not None, (m.inputs, ins)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)     # written with 4 decimals
        ort = ort_session(model)
        np.testing.assert_allclose(got, ort.run(None, dict(zip(ins, (x, grid))))[0], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
        done.append(name)
    assert len(done) == 14 and len(refused) == 4


def test_a_spatial_transformer_trains():
    """img → Flatten → Dense(2·H_out·W_out) → Reshape(H_out, W_out, 2) → GridSample(img, grid) → Dense: the grid is
    learned from the image (the localisation network); a few Adam steps lower the loss."""
    from engine.data import Dataset
    from engine.project import training_config
    from engine.trainer import Trainer
    g = Graph()
    g.add_node("Input", "img", {"shape": [1, 6, 6]})
    g.chain(("flat", "Flatten", {}), ("loc", "Dense", {"units": 2 * 4 * 4}), ("grid", "Reshape", {"shape": [4, 4, 2]}),
            after="img")
    g.add_node("GridSample", "stn", {})
    g.connect("img", "stn", 0)
    g.connect("grid", "stn", 1)
    g.chain(("flat2", "Flatten", {}), ("head", "Dense", {"units": 2}), after="stn")
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (64, 1, 6, 6)).astype(np.float32)
    y = np.stack([x[:, 0, 1:3, 1:3].mean((1, 2)), x[:, 0, 3:5, 2:4].mean((1, 2))], 1)
    m = Model(g, dtype=np.float64, seed=0)
    tr = Trainer(m, training_config({"loss": "mse", "optimizer": "adam", "lr": 0.01, "batch_size": 64}),
                 Dataset(x, y, "regression", "t"))
    before = tr.train_step(x, y)[0]
    for _ in range(30):
        last = tr.train_step(x, y)[0]
    assert np.isfinite(last) and last < 0.7 * before
    assert np.abs(m.layers["loc"].g["W"]).max() > 0                         # the grid gradient reaches the net


def test_shape_errors_name_what_arrived_in_one_line():
    lyr = create("GridSample", "warp")
    for shapes, words in (([(3, 8, 8)], "two inputs"), ([(8, 8), (4, 4, 2)], "image (C, H, W)"),
                          ([(3, 8, 8), (4, 4, 3)], "grid (H_out, W_out, 2)")):
        with pytest.raises(ShapeError) as e:
            lyr.compute_output_shape(shapes)
        assert words in str(e.value) and "GridSample 'warp'" in str(e.value) and "\n" not in str(e.value)
    f = create("GridSample", "g", {"mode": "bicubic"}).formulas([(3, 8, 8), (4, 5, 2)])
    assert f["macs"] == "taps·C·H_out·W_out = 16·3·4·5 = 960" and f["shape"].endswith("(3, 4, 5)")


def test_palette_family_and_node_tooltip_show_the_formulas(qtbot):
    """In the palette under Reshape; hovering the node shows its shape, parameter and MAC lines with its numbers."""
    pytest.importorskip("PySide6")
    from gui_layer_info import family_and_tooltip
    family, tip = family_and_tooltip(qtbot, two_input_model("bicubic", "border", False).graph, "sample")
    assert family.lower() == "reshape"
    assert "taps·C·H_out·W_out = 16·2·3·4 = 384" in tip and "(2, 3, 4)" in tip and "= 0" in tip


def test_the_receptive_field_ends_at_a_grid_sample():
    """An output pixel reads wherever its grid point lies: no field is claimed after GridSample (the conv before it
    has one)."""
    from engine.shapes import infer
    g = Graph()
    g.add_node("Input", "img", {"shape": [2, 5, 4]})
    g.add_node("Input", "grid", {"shape": [3, 4, 2]})
    g.chain(("conv", "Conv2D", {"filters": 2, "kernel_size": [3]}), after="img")
    g.add_node("GridSample", "sample", {})
    g.connect("conv", "sample", 0)
    g.connect("grid", "sample", 1)
    infos = infer(g)
    assert infos["conv"].field == (3, 3) and infos["sample"].field is None


def test_onnx_coverage_counts_the_4d_backend_cases_as_mapped_and_volumetric_ones_as_an_option():
    cov = coverage_tool()
    got = {name: cov.classify(model)[0] for name, model, _, _ in backend_cases()}
    assert sorted(n for n, s in got.items() if s == "option") == sorted(n for n in got if "volumetric" in n)
    assert sum(s == "layer" for s in got.values()) == 14
