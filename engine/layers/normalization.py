"""Batch normalisation over the channel axis (the first sample axis: features of (F,), channels of (C, H, W))."""
import numpy as np

from ..hparams import HP
from . import conv_kernels as k
from .base import Layer, Param, register


@register
class BatchNorm(Layer):
    category = "normalization"
    doc = "Normalises each channel with batch statistics while training and running statistics at evaluation."
    hparams = (
        HP("momentum", "float", 0.1, min=0.0, max=1.0,
           doc="Running stat update r ← (1 − momentum)·r + momentum·batch stat (PyTorch's convention)"),
        HP("eps", "float", 1e-5, min=1e-12, max=1.0, doc="ε added to the variance"),
    )

    def compute_output_shape(self, in_shapes):
        self._expect_rank(in_shapes[0], (1, 2, 3), "features (F,), (C, L) or an image (C, H, W)")
        return in_shapes[0]

    def params(self, in_shapes):
        c = (in_shapes[0][0],)
        return {"gamma": Param(c, "ones"), "beta": Param(c, "zeros"),
                "running_mean": Param(c, "zeros", trainable=False),
                "running_var": Param(c, "ones", trainable=False)}

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0]))                      # one multiply-add per value

    def forward(self, x, training=False):
        x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)    # (B, C, S)
        C, p = x3.shape[1], self.p
        scale = k.scratch(self, "scale", (C,), x.dtype)
        shift = k.scratch(self, "shift", (C,), x.dtype)
        y = k.scratch(self, "y", x.shape, x.dtype) if training else np.empty(x.shape, x.dtype)
        self.training, self.x3 = training, x3
        if training:
            self.mean = k.scratch(self, "mean", (C,), np.float64)
            self.inv = k.scratch(self, "inv", (C,), np.float64)
            k.bn_train_fwd(x3, p["gamma"], p["beta"], y.reshape(x3.shape), self.mean, self.inv, scale, shift,
                           p["running_mean"], p["running_var"], self.config["momentum"], self.config["eps"])
        else:
            k.bn_eval_coefs(p["gamma"], p["beta"], p["running_mean"], p["running_var"], self.config["eps"],
                            scale, shift)
            k.affine(x3, scale, shift, y.reshape(x3.shape))
        return y

    def backward(self, dy):
        x3, p, g = self.x3, self.p, self.g
        dy3 = np.ascontiguousarray(dy).reshape(x3.shape)                    # (B, C, S)
        dx = k.scratch(self, "dx", dy.shape if self.need_dx else (1, 1, 1), dy.dtype)
        dx3 = dx.reshape(x3.shape) if self.need_dx else dx
        if self.training:
            k.bn_train_bwd(x3, dy3, p["gamma"], self.mean, self.inv, dx3, g["gamma"], g["beta"], self.need_dx)
        else:
            k.bn_eval_bwd(x3, dy3, p["gamma"], p["running_mean"], p["running_var"], self.config["eps"],
                          dx3, g["gamma"], g["beta"], self.need_dx)
        return (dx if self.need_dx else None,)

    @classmethod
    def samples(cls):
        return [({}, [(3,)]), ({}, [(3, 4)]), ({"momentum": 0.3}, [(2, 3, 4)]), ({"eps": 1e-3}, [(3, 2, 5)])]


# ---- layer normalisation (per step, over the last axis) ----
from numba import njit  # noqa: E402


@njit(cache=True, nogil=True, error_model="numpy")
def _ln_fwd(x, gamma, beta, eps, y, xhat, inv):
    """Per row of x (M, F): xhat = (x − mean)/√(var + ε), y = γ·xhat + β; inv[i] = 1/√(var + ε)."""
    m, f = x.shape
    for i in range(m):
        mu = 0.0
        for j in range(f):
            mu += x[i, j]
        mu /= f
        var = 0.0
        for j in range(f):
            c = x[i, j] - mu
            var += c * c
        r = 1.0 / np.sqrt(var / f + eps)
        inv[i] = r
        for j in range(f):
            xh = (x[i, j] - mu) * r
            xhat[i, j] = xh
            y[i, j] = gamma[j] * xh + beta[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _ln_bwd(dy, xhat, inv, gamma, dx, dgamma, dbeta, need_dx):
    """dx = inv·(g − mean(g) − xhat·mean(g·xhat)) with g = γ·dy; dγ = Σ dy·xhat, dβ = Σ dy over rows."""
    m, f = dy.shape
    for j in range(f):
        dgamma[j] = 0.0
        dbeta[j] = 0.0
    for i in range(m):
        s1 = 0.0
        s2 = 0.0
        for j in range(f):
            gj = gamma[j] * dy[i, j]
            s1 += gj
            s2 += gj * xhat[i, j]
            dgamma[j] += dy[i, j] * xhat[i, j]
            dbeta[j] += dy[i, j]
        if need_dx:
            s1 /= f
            s2 /= f
            for j in range(f):
                dx[i, j] = inv[i] * (gamma[j] * dy[i, j] - s1 - xhat[i, j] * s2)


@register
class LayerNorm(Layer):
    category = "normalization"
    doc = ("Normalises each step over its features (the last axis): y = γ·(x − μ)/√(σ² + ε) + β with μ, σ² "
           "of that step alone; the same at training and evaluation.")
    hparams = (HP("eps", "float", 1e-5, min=1e-12, max=1.0, doc="ε added to the variance"),)

    def compute_output_shape(self, in_shapes):
        self._expect_rank(in_shapes[0], (1, 2), "features (F,) or a sequence (T, F)")
        return in_shapes[0]

    def params(self, in_shapes):
        f = (in_shapes[0][-1],)
        return {"gamma": Param(f, "ones"), "beta": Param(f, "zeros")}

    def macs(self, in_shapes):
        return 2 * int(np.prod(in_shapes[0]))                  # scale and shift per value

    def formulas(self, in_shapes):
        f, n = in_shapes[0][-1], int(np.prod(in_shapes[0]))
        return {"params": f"2·F (γ, β) = 2·{f} = {2 * f}", "macs": f"2·values = 2·{n} = {2 * n}"}

    def forward(self, x, training=False):
        x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])     # (M, F)
        y = np.empty_like(x2)
        self.xhat = np.empty_like(x2)
        self.inv = np.empty(len(x2), x2.dtype)
        _ln_fwd(x2, self.p["gamma"], self.p["beta"], self.config["eps"], y, self.xhat, self.inv)
        return y.reshape(x.shape)

    def backward(self, dy):
        dy2 = np.ascontiguousarray(dy).reshape(self.xhat.shape)   # (M, F)
        dx = np.empty_like(dy2) if self.need_dx else np.empty((1, 1), dy2.dtype)
        _ln_bwd(dy2, self.xhat, self.inv, self.p["gamma"], dx, self.g["gamma"], self.g["beta"], self.need_dx)
        return (dx.reshape(dy.shape) if self.need_dx else None,)

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({"eps": 1e-3}, [(3, 4)])]
