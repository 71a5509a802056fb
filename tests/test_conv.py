"""Convolution, pooling and batch norm: spec §3 analysis by hand, shape errors, BN modes, a whole CNN vs torch."""
import numpy as np
import pytest

from engine import Graph, infer
from engine.model import Model
from gradcheck import build, numeric


def net(*specs):
    g = Graph()
    g.chain(*specs)
    return g


def test_lenet_like_analysis_matches_spec_formulas():
    """Shapes ⌊(H + 2P − K)/S⌋ + 1, params C_out·C_in·K_h·K_w + C_out, MACs, field and stride worked by hand."""
    g = net(("x", "Input", {"shape": [1, 32, 32]}),
            ("c1", "Conv2D", {"filters": 6, "kernel_size": [5]}),
            ("p1", "MaxPool2D", {}),
            ("c2", "Conv2D", {"filters": 16, "kernel_size": [5, 5]}),
            ("p2", "MaxPool2D", {"kernel_size": [2], "stride": [2]}),
            ("f", "Flatten", {}),
            ("d", "Dense", {"units": 120}))
    i = infer(g)
    assert [i[n].shape for n in ("c1", "p1", "c2", "p2", "f", "d")] == [
        (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,)]
    assert (i["c1"].params, i["c2"].params, i["d"].params) == (156, 2416, 48120)
    assert (i["c1"].macs, i["c2"].macs, i["p1"].macs) == (117600, 240000, 0)
    assert [i[n].field for n in ("x", "c1", "p1", "c2", "p2")] == [(1, 1), (5, 5), (6, 6), (14, 14), (16, 16)]
    assert [i[n].stride for n in ("x", "c1", "p1", "c2", "p2")] == [(1, 1), (1, 1), (2, 2), (2, 2), (4, 4)]
    assert i["f"].field is None and "receptive_field" not in i["f"].to_dict()
    assert i["c2"].to_dict()["receptive_field"] == [14, 14] and i["p2"].to_dict()["effective_stride"] == [4, 4]
    assert i["c2"].memory == 1600


def test_strided_non_square_analysis():
    g = net(("x", "Input", {"shape": [3, 28, 28]}),
            ("a", "Conv2D", {"filters": 8, "kernel_size": [5], "stride": [2]}),
            ("b", "Conv2D", {"filters": 4, "kernel_size": [3, 1], "stride": [1, 2], "padding": "explicit",
                             "pad": [1, 0], "use_bias": False}),
            ("bn", "BatchNorm", {}),
            ("p", "MaxPool2D", {"kernel_size": [3], "stride": [2]}),
            ("gap", "GlobalAveragePool", {}))
    i = infer(g)
    assert [i[n].shape for n in "abp"] == [(8, 12, 12), (4, 12, 6), (4, 5, 2)]       # ⌊23/2⌋+1, ⌊11/2⌋+1, ⌊9/2⌋+1
    assert (i["a"].params, i["b"].params, i["bn"].params) == (608, 96, 8)           # BN: γ, β only
    assert (i["a"].macs, i["b"].macs) == (8 * 144 * 75, 4 * 72 * 8 * 3)
    assert i["a"].field == (5, 5) and i["a"].stride == (2, 2)
    assert i["b"].field == (9, 5) and i["b"].stride == (2, 4)
    assert i["bn"].field == (9, 5) and i["p"].field == (13, 13) and i["p"].stride == (4, 8)
    assert i["gap"].shape == (4,)


def test_same_padding_keeps_size_and_strides_round_up():
    g = net(("x", "Input", {"shape": [2, 7, 8]}), ("a", "Conv2D", {"filters": 3, "kernel_size": [5, 3],
                                                                 "padding": "same"}),
            ("b", "Conv2D", {"filters": 3, "padding": "same", "stride": [2]}))
    i = infer(g)
    assert i["a"].shape == (3, 7, 8) and i["b"].shape == (3, 4, 4)                  # ⌈7/2⌉, ⌈8/2⌉


@pytest.mark.parametrize("cfg,shape,words,fix", [
    ({"kernel_size": [5]}, [1, 3, 3], ["H_out = ⌊(H_in + 2·P_h − K_h)/S_h⌋ + 1 = ⌊(3 + 2·0 − 5)/1⌋ + 1",
                                       "larger than"], ("set", {"padding": "same"})),
    ({"kernel_size": [5], "stride": [2]}, [1, 28, 3], ["W_out", "⌊(3 + 2·0 − 5)/2⌋"], ("set", {"padding": "same"})),
    ({"stride": [0, 1]}, [1, 8, 8], ["stride S_h = 0"], ("set", {"stride": (1,)})),
    ({"kernel_size": [4], "padding": "same"}, [1, 8, 8], ["(K_h − 1)/2 = (4 − 1)/2 = 1.5"],
     ("set", {"kernel_size": (5, 5)})),
    ({}, [784], ["needs an image-like input", "(784,)"], ("insert_before", {"shape": (1, 28, 28)})),
])
def test_bad_conv_hyperparameters_are_node_errors_with_formula_and_fix(cfg, shape, words, fix):
    g = net(("x", "Input", {"shape": shape}), ("conv", "Conv2D", cfg), ("r", "ReLU", {}))
    i = infer(g)
    assert i["conv"].shape is None and i["r"].blocked == "conv"
    for w in words:
        assert w in i["conv"].error, i["conv"].error
    assert "Conv2D 'conv'" in i["conv"].error
    assert (i["conv"].fix.action, i["conv"].fix.to_dict()["config"]) == fix


def test_pooling_errors_and_kernel_list_length():
    i = infer(net(("x", "Input", {"shape": [4, 1, 6]}), ("p", "MaxPool2D", {})))
    assert "⌊(1 + 2·0 − 2)/2⌋ + 1 = 0 is empty" in i["p"].error
    i = infer(net(("x", "Input", {"shape": [4, 6, 6]}), ("p", "AveragePool2D", {"kernel_size": [2, 2, 2]})))
    assert "kernel_size takes one value or two" in i["p"].error


def _bn_case(shape, seed=0):
    layer = build("BatchNorm", {"momentum": 0.2}, [shape], seed)
    layer.p["running_var"][...] = np.abs(layer.p["running_var"]) + 0.1
    x = np.random.default_rng(seed + 1).normal(1.5, 2.0, (5,) + shape)
    return layer, x


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
def test_batchnorm_eval_mode_gradients_by_finite_differences(shape):
    layer, x = _bn_case(shape)
    u = np.random.default_rng(2).normal(size=x.shape)
    y = layer.forward(x, training=False)
    rm, rv = layer.p["running_mean"].copy(), layer.p["running_var"].copy()
    dx, = layer.backward(u)
    assert np.array_equal(rm, layer.p["running_mean"]) and np.array_equal(rv, layer.p["running_var"])
    c = (slice(None), slice(None)) + (None,) * (x.ndim - 2)
    want = (x - rm[c[1:]]) / np.sqrt(rv[c[1:]] + 1e-5) * layer.p["gamma"][c[1:]] + layer.p["beta"][c[1:]]
    np.testing.assert_allclose(y, want, rtol=1e-12)
    loss = lambda: float(np.sum(layer.forward(x, training=False) * u))
    np.testing.assert_allclose(dx, numeric(loss, x), rtol=1e-6, atol=1e-8)
    for k in ("gamma", "beta"):
        np.testing.assert_allclose(layer.g[k], numeric(loss, layer.p[k]), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
def test_batchnorm_eval_mode_and_running_stats_match_torch(shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer, x = _bn_case(shape)
    trm = torch.tensor(layer.p["running_mean"].copy())
    trv = torch.tensor(layer.p["running_var"].copy())
    for step in range(3):                                      # momentum 0.2: r ← 0.8·r + 0.2·batch stat
        xs = x + step
        layer.forward(xs, training=True)
        F.batch_norm(torch.tensor(xs), trm, trv, training=True, momentum=0.2, eps=1e-5)
        np.testing.assert_allclose(layer.p["running_mean"], trm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(layer.p["running_var"], trv.numpy(), rtol=1e-12)
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(layer.p["gamma"].copy(), requires_grad=True)
    tb = torch.tensor(layer.p["beta"].copy(), requires_grad=True)
    ty = F.batch_norm(tx, trm, trv, tg, tb, training=False, eps=1e-5)
    y = layer.forward(x, training=False)
    u = np.random.default_rng(4).normal(size=y.shape)
    dx, = layer.backward(u)
    (ty * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.g["gamma"], tg.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.g["beta"], tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_batchnorm_running_stats_by_hand():
    """One step from (0, 1): mean ← m·μ_B, var ← (1 − m) + m·σ²_B·N/(N − 1) (unbiased, like torch)."""
    layer = build("BatchNorm", {"momentum": 0.25}, [(2,)])
    layer.p["running_mean"][...], layer.p["running_var"][...] = 0.0, 1.0
    x = np.array([[1.0, 4.0], [2.0, 0.0], [6.0, 2.0]])
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.p["running_mean"], 0.25 * x.mean(0))
    np.testing.assert_allclose(layer.p["running_var"], 0.75 + 0.25 * x.var(0, ddof=1))


def _cnn(dtype=np.float64):
    g = net(("x", "Input", {"shape": [1, 8, 7]}),
            ("c1", "Conv2D", {"filters": 3, "padding": "same"}), ("bn1", "BatchNorm", {}), ("r1", "ReLU", {}),
            ("p1", "MaxPool2D", {}),
            ("c2", "Conv2D", {"filters": 4, "kernel_size": [2, 3], "stride": [1, 2], "padding": "explicit",
                              "pad": [1, 1]}),
            ("bn2", "BatchNorm", {}), ("r2", "ReLU", {}), ("a", "AveragePool2D", {"stride": [1]}),
            ("drop", "Dropout", {"rate": 0.0}), ("f", "Flatten", {}), ("d", "Dense", {"units": 5}))
    return Model(g, dtype=dtype, seed=3)


def test_whole_cnn_in_a_model_matches_torch_and_keeps_bn_state():
    """Model plumbing: no input gradient for the first conv, running stats in model.state, both modes."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    m = _cnn()
    assert not m.layers["c1"].need_dx and m.layers["c2"].need_dx
    assert set(m.state) == {"bn1/running_mean", "bn1/running_var", "bn2/running_mean", "bn2/running_var"}
    x = np.random.default_rng(0).normal(size=(6, 1, 8, 7))
    w = {k: torch.tensor(v, requires_grad=True) for k, v in m.weights().items()}
    st = {k: w[k].detach().clone() for k in m.state}

    def tnet(t, training):
        h = F.conv2d(t, w["c1/W"], w["c1/b"], padding=1)
        h = F.batch_norm(h, st["bn1/running_mean"], st["bn1/running_var"], w["bn1/gamma"], w["bn1/beta"], training)
        h = F.max_pool2d(F.relu(h), 2, 2)
        h = F.conv2d(h, w["c2/W"], w["c2/b"], stride=(1, 2), padding=1)
        h = F.batch_norm(h, st["bn2/running_mean"], st["bn2/running_var"], w["bn2/gamma"], w["bn2/beta"], training)
        h = F.avg_pool2d(F.relu(h), 2, 1)
        return F.linear(h.flatten(1), w["d/W"], w["d/b"])

    y = m.forward(x, training=True)
    ty = tnet(torch.tensor(x), True)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-12)
    u = np.random.default_rng(1).normal(size=y.shape)
    m.backward(u)
    (ty * torch.tensor(u)).sum().backward()
    for k, sl in m.slices.items():
        np.testing.assert_allclose(m.grad[sl].reshape(m.shapes[k]), w[k].grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=k)
    for k in m.state:
        np.testing.assert_allclose(m.state[k], st[k].numpy(), rtol=1e-12, err_msg=k)
    np.testing.assert_allclose(m.forward(x), tnet(torch.tensor(x), False).detach().numpy(), rtol=1e-9, atol=1e-12)


def test_float32_model_outputs_are_not_overwritten_by_later_calls():
    """Evaluation outputs are fresh arrays (predict concatenates them); float32 all the way through."""
    m = _cnn(np.float32)
    x = np.random.default_rng(0).normal(size=(10, 1, 8, 7)).astype(np.float32)
    a = m.forward(x[:5])
    b = m.forward(x[5:])
    assert a.dtype == np.float32 and not np.allclose(a, b)
    np.testing.assert_allclose(m.predict(x, batch_size=5), np.concatenate([a, b]), rtol=1e-6)
    m.forward(x, every=True)                               # every node's output (no fused groups)
    for n in ("c1", "bn1", "p1", "c2", "a"):
        assert m.acts[n].dtype == np.float32, n
