"""A post-norm transformer sublayer, LayerNorm(u + f(u)), with the Add and the LayerNorm run inside f's own
batch-parallel loop: f = MultiHeadSelfAttention, or Dense → ReLU → Dense (fusion_ffn.DenseReLUDense).

Forward, each row chunk of f's output is normalised with the residual added while it is in cache, on the thread
that made it; backward, the LayerNorm's gradient of a chunk is formed right before f's backward reads it. The
LayerNorm runs in parallel with no loop of its own, and the Add is never stored. The math is the layers' own kernels
(normalization._ln_fwd / _ln_bwd); γ, β gradients are summed over chunks in chunk order. A group of
engine/layers/fusion.py: used only where nothing else reads f's output or the sum.
"""
import numpy as np

from .fusion_ffn import DenseReLUDense
from .normalization import _ln_bwd, _ln_fwd


class SublayerAddNorm:
    """LayerNorm(u + f(u)) for f a MultiHeadSelfAttention layer or a DenseReLUDense group."""

    def __init__(self, f, first, add, ln, nodes):
        self.f, self.first, self.add, self.ln, self.nodes = f, first, add, ln, nodes

    def forward(self, u, training=False):
        ln = self.ln
        F = u.shape[-1]
        dt = ln.p["gamma"].dtype
        u2 = np.ascontiguousarray(u, dtype=dt).reshape(-1, F)                      # (M, F) the residual
        out = np.empty_like(u2)                                                     # (M, F)
        xhat, inv = ln.xhat, ln.inv = np.empty_like(u2), np.empty(len(u2), dt)      # as LayerNorm.forward keeps
        g, b, eps = ln.p["gamma"].reshape(-1), ln.p["beta"].reshape(-1), ln.config["eps"]

        def epilogue(a, e, y2):                                                     # rows a … e−1 of f(u)
            _ln_fwd(y2[a:e], u2[a:e], g, b, eps, out[a:e], xhat[a:e], inv[a:e])

        self.f.forward(u, training, epilogue=epilogue)
        self.add.n = 2
        return out.reshape(u.shape)

    def backward(self, dy):
        ln = self.ln
        xhat, inv, gamma = ln.xhat, ln.inv, ln.p["gamma"].reshape(-1)
        dy2 = np.ascontiguousarray(dy, dtype=xhat.dtype).reshape(xhat.shape)       # (M, F)
        ds = np.empty_like(dy2)                                                     # (M, F) dL/d(u + f(u))
        parts = {}                                                                  # chunk → its dγ, dβ

        def prologue(i, a, e):
            p = parts[i] = np.empty((2, xhat.shape[1]), ln.g["gamma"].dtype)
            _ln_bwd(dy2[a:e], xhat[a:e], inv[a:e], gamma, ds[a:e], p[0], p[1], True)

        need = self.first.need_dx                                                   # u's gradient: f's dx + ds
        (dx,) = self.f.backward(ds.reshape(dy.shape), prologue=prologue, add_to=ds if need else None)
        tot = parts[0] if parts else np.zeros((2, xhat.shape[1]), ln.g["gamma"].dtype)   # no chunk: no rows
        for i in range(1, len(parts)):                                              # in chunk order
            tot = tot + parts[i]
        ln.g["gamma"][...] = tot[0].reshape(ln.g["gamma"].shape)
        ln.g["beta"][...] = tot[1].reshape(ln.g["beta"].shape)
        return (dx.reshape(dy.shape) if need else None,)


def _only_user(model, users, n, kind):
    """The one node reading n if it is a layer of type `kind` with n as its only input, else None."""
    u = users.get(n, [])
    if len(u) != 1 or type(model.layers[u[0]]).__name__ != kind or len(model.srcs[u[0]]) != 1:
        return None
    return u[0]


def find(model, users):
    """{first node: SublayerAddNorm} for each f → Add(f's input, f) → LayerNorm (over the last axis) whose f output
    and sum feed nothing else, the model's output excluded."""
    out = {}
    for n in model.order:
        layer, srcs = model.layers[n], model.srcs[n]
        if len(srcs) != 1:
            continue
        kind, chain = type(layer).__name__, [n]
        if kind == "Dense":
            relu = _only_user(model, users, n, "ReLU")
            d2 = relu and _only_user(model, users, relu, "Dense")
            if not d2 or not DenseReLUDense.fits(layer, model.layers[relu], model.layers[d2]):
                continue
            chain += [relu, d2]
            f = DenseReLUDense(layer, model.layers[relu], model.layers[d2])
        elif kind == "MultiHeadSelfAttention":
            f = layer
        else:
            continue
        add = users.get(chain[-1], [])
        if len(add) != 1 or type(model.layers[add[0]]).__name__ != "Add" or \
                sorted(model.srcs[add[0]]) != sorted([srcs[0], chain[-1]]) or srcs[0] == chain[-1]:
            continue
        add = add[0]
        ln = users.get(add, [])
        if len(ln) != 1 or type(model.layers[ln[0]]).__name__ != "LayerNorm" or \
                model.layers[ln[0]].config["axes"] != 1:
            continue
        ln = ln[0]
        a = model.layers[add]
        if a.in_shapes[0] != a.in_shapes[1] or model.output in chain + [add, ln]:
            continue
        nodes = tuple(chain + [add, ln])
        out[n] = SublayerAddNorm(f, layer, a, model.layers[ln], nodes)
    return out
