"""Every layer, loss and optimizer against PyTorch (forward and backward), where torch is installed."""
import numpy as np
import pytest

from engine import losses, optimizers
from engine.layers import REGISTRY
from gradcheck import build, exempt, run

try:
    import torch
except ImportError:                 # optional: only the tests that run PyTorch skip
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch==2.13.0)")
F = torch.nn.functional if torch else None


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


CASES = [(t, c, s, (o or [{}])[0].get("domain")) for t, cls in sorted(REGISTRY.items()) for c, s, *o in cls.samples()
         if not (o and o[0].get("ints"))       # integer-id samples: tests/test_recurrent.py
         and not exempt(t, "torch")]           # exempted, with the reason: tests/gradcheck.py EXEMPT


def reference(layer):
    """fn(xs, p) -> the layer's forward in torch ops: the torch_reference declared beside it."""
    return lambda xs, p: layer.torch_reference(xs, p, torch)


@pytest.mark.parametrize("type,config,shapes,domain", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@needs_torch
def test_layer_matches_torch(type, config, shapes, domain):
    rng = np.random.default_rng(3)
    layer = build(type, config, shapes)
    xs = [rng.normal(0, 1, (4,) + tuple(s)) if domain is None else rng.uniform(*domain, (4,) + tuple(s)) for s in shapes]
    y = run(layer, xs)
    u = rng.normal(0, 1, y.shape)
    dxs = layer.backward(u)
    txs = [_t(x) for x in xs]
    tp = {k: _t(v) for k, v in layer.p.items()}
    ty = reference(layer)(txs, tp)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    (ty * torch.tensor(u)).sum().backward()
    for dx, tx in zip(dxs, txs):
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k in layer.g:
        np.testing.assert_allclose(layer.g[k], tp[k].grad.numpy(), rtol=1e-10, atol=1e-12)


@needs_torch
def test_dropout_statistics_match_torch():
    """Inverted dropout against torch's own F.dropout (its mask drawn by torch): the same kept fraction 1 − p,
    the same scale 1/(1 − p), masks independent of x and of each other, identity at evaluation."""
    rate, shape = 0.25, (20, 1000)
    layer = build("Dropout", {"rate": rate}, [shape[1:]])
    x = np.random.default_rng(0).normal(0, 1, shape)
    y = run(layer, [x])
    torch.manual_seed(0)
    ty = F.dropout(torch.tensor(x), rate, training=True).numpy()
    for out in (y, ty):
        kept = out != 0
        np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-12)
        assert abs(kept.mean() - (1 - rate)) < 0.01                       # 20 000 draws: σ ≈ 0.003
        assert abs(kept[x > 0].mean() - kept[x < 0].mean()) < 0.02      # independent of the values
    assert abs((y != 0).mean() - (ty != 0).mean()) < 0.015
    again = layer.forward(x, training=True)
    assert 0.3 < np.mean((again != 0) != (y != 0)) < 0.45              # a fresh mask: 2·p·(1 − p) = 0.375 differ
    assert np.array_equal(layer.forward(x, training=False), x)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
@needs_torch
def test_loss_matches_torch(name):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (6, 4 if name != "bce" else 1))
    loss = losses.get(name)
    tz = _t(z)
    if name == "bce":
        y = rng.integers(0, 2, (6, 1)).astype(np.float64)
        ref = F.binary_cross_entropy_with_logits(tz, torch.tensor(y))
    elif name == "cce":
        y = rng.integers(0, 4, 6)
        ref = F.cross_entropy(tz, torch.tensor(y))
    else:
        y = rng.normal(0, 1, z.shape)
        ref = F.mse_loss(tz, torch.tensor(y), reduction="sum") / len(z)   # spec §9: (1/B) Σ ||ŷ − y||²
    val, d = loss(z, y, fused=loss.fuses is not None)
    ref.backward()
    assert val == pytest.approx(ref.item(), rel=1e-10)
    np.testing.assert_allclose(d, tz.grad.numpy(), rtol=1e-9, atol=1e-12)


TORCH_OPT = {
    "gd": lambda p, c: torch.optim.SGD(p, lr=c["lr"]),
    "sgd": lambda p, c: torch.optim.SGD(p, lr=c["lr"]),
    # spec's v = βv + η∇ equals torch's v = βv + ∇, θ −= ηv when η is constant
    "momentum": lambda p, c: torch.optim.SGD(p, lr=c["lr"], momentum=c["beta"]),
    "adagrad": lambda p, c: torch.optim.Adagrad(p, lr=c["lr"], eps=c["eps"]),
    "rmsprop": lambda p, c: torch.optim.RMSprop(p, lr=c["lr"], alpha=c["beta"], eps=c["eps"]),
    "adam": lambda p, c: torch.optim.Adam(p, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"]),
}


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
@pytest.mark.parametrize("wd", [0.0, 0.1])
@needs_torch
def test_optimizer_matches_torch(name, wd):
    """Five steps on a quadratic; L2 decay on the masked (weight) entries only, as torch param groups."""
    rng = np.random.default_rng(1)
    theta = rng.normal(0, 1, 6)
    mask = np.array([1, 1, 1, 1, 0, 0], float)
    opt = optimizers.get(name, wd, lr=0.1)
    w, b = torch.tensor(theta[:4], requires_grad=True), torch.tensor(theta[4:], requires_grad=True)
    topt = TORCH_OPT[name]([{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0}], opt.config)
    target = rng.normal(0, 1, 6)
    for _ in range(5):
        g = 2 * (theta - target)
        opt.step(theta, g, mask)
        topt.zero_grad()
        ((torch.cat([w, b]) - torch.tensor(target)) ** 2).sum().backward()
        topt.step()
    np.testing.assert_allclose(theta, torch.cat([w, b]).detach().numpy(), rtol=1e-10, atol=1e-12)
