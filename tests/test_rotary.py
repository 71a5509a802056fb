"""RotaryEmbedding: against a torch reference written here (rotate_half; complex products for interleaved pairs) and
ONNX's own definition (onnx.reference and onnxruntime's opset-23 RotaryEmbedding with the standard table), float64
central differences with masks, the rotation's properties, ONNX export and import, and the one-line shape errors."""

import numpy as np
import pytest

from engine import Graph
from engine.errors import ShapeError
from engine.layers import create
from engine.layers.rotary import angles
from engine.model import Model
from gradcheck import check_layer
from onnx_node_cases import coverage_tool, node_cases

CONFIGS = [({}, (6, 8)), ({"heads": 2}, (5, 8)), ({"heads": 2, "interleaved": True}, (5, 8)),
           ({"heads": 2, "rotary_dim": 2}, (4, 12)), ({"heads": 3, "rotary_dim": 4, "interleaved": True}, (7, 18)),
           ({"heads": 1, "base": 500.0}, (9, 4))]
IDS = [f"{i}" for i in range(len(CONFIGS))]


def rope(cfg, shape):
    lyr = create("RotaryEmbedding", "rope", cfg)
    lyr.build([shape])
    return lyr


def torch_rope(torch, x, heads, r, interleaved, base):
    """RoPE as the usual torch code writes it: rotate_half (GPT-NeoX / Llama) or complex products (Meta's Llama)."""
    B, T, F = x.shape
    x = x.reshape(B, T, heads, F // heads)
    inv = 1.0 / base ** (torch.arange(0, r, 2, dtype=torch.float64) / r)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)                   # (T, r/2)
    rot, rest = x[..., :r], x[..., r:]
    if interleaved:
        z = torch.view_as_complex(rot.reshape(B, T, heads, r // 2, 2).contiguous())
        rot = torch.view_as_real(z * torch.polar(torch.ones_like(freqs), freqs)[:, None]).flatten(-2)
    else:
        emb = torch.cat((freqs, freqs), -1)[:, None]                                   # (T, 1, r)
        half = torch.cat((-rot[..., r // 2:], rot[..., :r // 2]), -1)                 # rotate_half
        rot = rot * emb.cos() + half * emb.sin()
    return torch.cat((rot, rest), -1).reshape(B, T, F)


@pytest.mark.parametrize("cfg,shape", CONFIGS, ids=IDS)
def test_matches_a_torch_reference_forward_and_backward(cfg, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    lyr = rope(cfg, shape)
    x = rng.normal(0, 1, (3,) + shape)
    y = lyr.forward(x, training=True)
    u = rng.normal(0, 1, y.shape)
    (dx,) = lyr.backward(u)
    tx = torch.tensor(x, requires_grad=True)
    h = cfg.get("heads", 1)
    ty = torch_rope(torch, tx, h, cfg.get("rotary_dim", 0) or shape[1] // h, cfg.get("interleaved", False),
                    cfg.get("base", 10000.0))
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cfg,shape", CONFIGS, ids=IDS)
def test_equals_the_onnx_definition_with_the_standard_table(cfg, shape):
    from onnx.reference.ops.op_rotary_embedding import rotary_embedding
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (2,) + shape)
    h = cfg.get("heads", 1)
    r = cfg.get("rotary_dim", 0) or shape[1] // h
    a = angles(shape[0], r, cfg.get("base", 10000.0))
    want = rotary_embedding(x, np.cos(a), np.sin(a), position_ids=np.tile(np.arange(shape[0]), (2, 1)),
                            interleaved=int(cfg.get("interleaved", False)), rotary_embedding_dim=r, num_heads=h)
    np.testing.assert_allclose(rope(cfg, shape).forward(x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg,shape", CONFIGS, ids=IDS)
@pytest.mark.parametrize("training", [True, False])
def test_gradients_equal_central_differences_with_masks(cfg, shape, training):
    check_layer("RotaryEmbedding", cfg, [shape], {"mask": True}, training=training)


def test_rotation_keeps_pair_norms_and_scores_depend_on_the_offset_only():
    """|(y_a, y_b)| = |(x_a, x_b)|, and ⟨R_t q, R_s k⟩ is the same for every (t, s) with t − s fixed."""
    T, F = 8, 6
    lyr = rope({}, (T, F))
    rng = np.random.default_rng(2)
    q, k = rng.normal(0, 1, F), rng.normal(0, 1, F)
    Rq = lyr.forward(np.broadcast_to(q, (1, T, F)))[0]                               # (T, F): q at every step
    Rk = lyr.forward(np.broadcast_to(k, (1, T, F)))[0]
    np.testing.assert_allclose(Rq[:, :3] ** 2 + Rq[:, 3:] ** 2, np.broadcast_to(q[:3] ** 2 + q[3:] ** 2, (T, 3)),
                               rtol=1e-12)
    scores = Rq @ Rk.T                                                                 # (T, T)
    for off in (-3, 0, 2):
        d = np.diagonal(scores, off)
        np.testing.assert_allclose(d, d[0], rtol=1e-12, atol=1e-12)
    assert abs(scores[0, 0] - scores[0, 2]) > 1e-3                                     # the offset does matter
    np.testing.assert_array_equal(Rq[0], q)                                            # step 0: no rotation


def test_padded_steps_stay_zero_and_never_reach_a_valid_step():
    lyr = rope({"heads": 2}, (6, 8))
    rng = np.random.default_rng(3)
    lengths = np.array([6, 2, 4])
    valid = np.arange(6) < lengths[:, None]                                            # (B, T)
    lyr.in_masks = [valid]
    x = rng.normal(0, 1, (3, 6, 8)) * valid[..., None]
    y = lyr.forward(x)
    assert np.all(y[~valid] == 0)
    noisy = x + rng.normal(0, 1, x.shape) * ~valid[..., None]                          # other padded values
    np.testing.assert_array_equal(lyr.forward(noisy)[valid], y[valid])
    np.testing.assert_array_equal(lyr.compute_mask([valid]), valid)


def sequence_model(cfg, shape):
    g = Graph()
    g.add_node("Input", "seq", {"shape": list(shape), "standardize": False})
    g.add_node("RotaryEmbedding", "rope", cfg)
    g.connect("seq", "rope")
    return Model(g)


def ort_run(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def onnx_rope_model(T, F, heads, r, interleaved, cos, sin, pos=None, cache_inputs=False, x4d=False):
    """An opset-23 model: one RotaryEmbedding node on x (B, T, F) (or (B, heads, T, d)) with its caches as
    initializers (or graph inputs) and position_ids as an initializer when given."""
    from onnx import TensorProto, helper, numpy_helper
    xs = [1, heads, T, F // heads] if x4d else [1, T, F]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)]
    inits = []
    for name, v in (("cos", cos), ("sin", sin)):
        if cache_inputs:
            ins.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(v.shape)))
        else:
            inits.append(numpy_helper.from_array(np.asarray(v, np.float32), name))
    names = ["x", "cos", "sin"]
    if pos is not None:
        inits.append(numpy_helper.from_array(np.asarray(pos, np.int64), "pos"))
        names.append("pos")
    attrs = {"interleaved": int(interleaved)} | ({} if x4d else {"num_heads": heads}) | (
        {"rotary_embedding_dim": r} if r != F // heads else {})
    node = helper.make_node("RotaryEmbedding", names, ["y"], **attrs)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, xs)
    return helper.make_model(helper.make_graph([node], "rope", ins, [out], inits),
                             opset_imports=[helper.make_opsetid("", 23)])


@pytest.mark.parametrize("cfg,shape", CONFIGS, ids=IDS)
def test_export_runs_in_onnxruntime_like_the_engine_and_like_onnxruntimes_own_operator(cfg, shape):
    from engine.onnx_export import to_onnx
    m = sequence_model(cfg, shape)
    x = np.random.default_rng(4).normal(0, 1, (1,) + shape).astype(np.float32)
    want = m.predict(x)
    proto = to_onnx(m)
    assert sorted(n.op_type for n in proto.graph.node) == ["Add", "Gather", "Mul", "Mul"]
    np.testing.assert_allclose(ort_run(proto, {"seq": x}), want, rtol=1e-5, atol=1e-5)
    h = cfg.get("heads", 1)
    r = cfg.get("rotary_dim", 0) or shape[1] // h
    a = angles(shape[0], r, cfg.get("base", 10000.0))
    op = onnx_rope_model(*shape, h, r, cfg.get("interleaved", False), np.cos(a), np.sin(a), np.arange(shape[0])[None])
    np.testing.assert_allclose(ort_run(op, {"x": x}), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg,shape", CONFIGS, ids=IDS)
@pytest.mark.parametrize("with_positions", [True, False])
def test_import_maps_a_node_whose_caches_are_the_standard_table(cfg, shape, with_positions):
    from engine.onnx_import import read
    T, F = shape
    h, base = cfg.get("heads", 1), cfg.get("base", 10000.0)
    r = cfg.get("rotary_dim", 0) or F // h
    a = angles(T + 3 if with_positions else T, r, base)                                # a longer cache: rows 0…T−1
    cos, sin = np.cos(a), np.sin(a)
    op = onnx_rope_model(T, F, h, r, cfg.get("interleaved", False), cos if with_positions else cos[None],
                         sin if with_positions else sin[None], np.arange(T)[None] if with_positions else None)
    g, w, kept = read(op, strict=True)
    (node,) = [n for n in g.nodes.values() if n.type == "RotaryEmbedding"]
    assert node.config == {"heads": h, "rotary_dim": cfg.get("rotary_dim", 0), "interleaved": cfg.get("interleaved",
                                                                                                       False),
                           "base": base}
    x = np.random.default_rng(5).normal(0, 1, (1, T, F)).astype(np.float32)
    np.testing.assert_allclose(Model(g).predict(x), ort_run(op, {"x": x}), rtol=1e-5, atol=1e-5)


def test_import_refuses_other_caches_and_layouts_in_one_line():
    from engine.onnx_import import ImportFailed, read
    T, F = 4, 8
    a = angles(T, F, 10000.0)
    bad = [(onnx_rope_model(T, F, 1, F, False, np.cos(a) + 0.01, np.sin(a), np.arange(T)[None]), "not the table"),
           (onnx_rope_model(T, F, 1, F, False, np.cos(a), np.sin(a), np.arange(T)[None] + 1), "steps 0…T−1"),
           (onnx_rope_model(T, F, 2, 4, False, np.cos(a[:, :2]), np.sin(a[:, :2]), np.arange(T)[None], x4d=True),
            "heads, T, d"),
           (onnx_rope_model(T, F, 1, F, False, np.cos(a), np.sin(a), cache_inputs=True), "graph inputs")]
    for model, words in bad:
        with pytest.raises(ImportFailed) as e:
            read(model, strict=True)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_onnx_backend_rotary_cases_are_refused_in_one_line():
    """All 8 backend cases feed random cos/sin caches as graph inputs: no table a layer computes."""
    from engine.onnx_import import ImportFailed, read
    cases = node_cases("rotaryembedding")
    assert len(cases) == 8
    for name, model, _, _ in cases:
        with pytest.raises(ImportFailed) as e:
            read(model, strict=True)
        assert "RotaryEmbedding" in str(e.value) and "\n" not in str(e.value), name


def test_shape_errors_and_formulas():
    for cfg, shape, words in (({"heads": 3}, (4, 8), "not a multiple of 3"),
                              ({"heads": 2, "rotary_dim": 3}, (4, 8), "must be even and at most 4"),
                              ({"heads": 2, "rotary_dim": 6}, (4, 8), "must be even and at most 4"),
                              ({}, (8,), "a sequence (steps, features)")):
        with pytest.raises(ShapeError) as e:
            create("RotaryEmbedding", "rope", cfg).compute_output_shape([shape])
        assert words in str(e.value) and "RotaryEmbedding 'rope'" in str(e.value) and "\n" not in str(e.value)
    f = create("RotaryEmbedding", "r", {"heads": 4, "rotary_dim": 8}).formulas([(10, 64)])
    assert f["macs"] == "2·T·heads·rotary_dim = 2·10·4·8 = 640" and f["params"].endswith("= 0")
    assert f["shape"].endswith("(10, 4·16) = (10, 64)")


def test_palette_family_and_node_tooltip_show_the_formulas(qtbot):
    """In the palette under Attention; hovering the node shows its shape, parameter and MAC lines with its numbers."""
    pytest.importorskip("PySide6")
    from gui_layer_info import family_and_tooltip
    family, tip = family_and_tooltip(qtbot, sequence_model({"heads": 2, "rotary_dim": 2}, (4, 12)).graph, "rope")
    assert family.lower() == "attention"
    assert "2·T·heads·rotary_dim = 2·4·2·2 = 32" in tip and "(4, 2·6) = (4, 12)" in tip


def test_onnx_coverage_maps_a_table_node_and_names_what_the_backend_cases_miss():
    cov = coverage_tool()
    a = angles(4, 8, 10000.0)
    assert cov.classify(onnx_rope_model(4, 8, 1, 8, False, np.cos(a), np.sin(a), np.arange(4)[None])) == \
        ("layer", [], ["RotaryEmbedding"])
    why = {name: cov.classify(model) for name, model, _, _ in node_cases("rotaryembedding")}
    assert all(s == "option" for s, _, _ in why.values())
    assert why["test_rotary_embedding_3d_input"][1] == ["RotaryEmbedding: cos/sin caches that are graph inputs (the "
                                                        "layer computes the standard table) (RotaryEmbedding)"]
