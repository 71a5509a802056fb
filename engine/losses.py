"""Losses (spec §9, §13, §14): per-sample loss summed over outputs, averaged over the batch B."""
import numpy as np
from numba import njit

from .errors import TrainingError
from .kernels import softmax_rows


@njit(cache=True, nogil=True, error_model="numpy")
def _bce_logits(z, y, dz):
    """Stable BCE from logits z: max(z,0) − z·y + log(1 + e^−|z|); dz = (σ(z) − y)/B (spec §1)."""
    b = z.shape[0]
    total = 0.0
    for i in range(b):
        for j in range(z.shape[1]):
            v, t = z[i, j], y[i, j]
            total += max(v, 0.0) - v * t + np.log1p(np.exp(-abs(v)))
            p = 1.0 / (1.0 + np.exp(-v)) if v >= 0 else np.exp(v) / (1.0 + np.exp(v))
            dz[i, j] = (p - t) / b
    return total / b


@njit(cache=True, nogil=True, error_model="numpy")
def _mse(z, y, dz):
    """Σ (z − y)² / B over (B, K) arrays; dz = 2 (z − y) / B."""
    b = z.shape[0]
    total = 0.0
    for i in range(b):
        for j in range(z.shape[1]):
            d = z[i, j] - y[i, j]
            total += d * d
            dz[i, j] = (2.0 / b) * d
    return total / b


@njit(cache=True, nogil=True, error_model="numpy")
def _cce_logits(z, y, dz):
    """Softmax cross-entropy from logits with integer labels y; dz = (softmax(z) − onehot)/B.

    log Σ_j e^(z_j) = z_m − ln p_m for the most probable class m (p_m ≥ 1/C never underflows), so the
    loss ln Σ_j e^(z_j) − z_y stays finite where p_y itself underflows to 0."""
    b, c = z.shape
    softmax_rows(z, dz)                                       # (B, C) probabilities
    total = 0.0
    for i in range(b):
        m = 0
        for j in range(1, c):
            if dz[i, j] > dz[i, m]:
                m = j
        total += z[i, m] - np.log(np.float64(dz[i, m])) - z[i, y[i]]
        dz[i, y[i]] -= 1.0
        for j in range(c):
            dz[i, j] /= b
    return total / b


class Loss:
    """value_and_grad(out, y) -> (loss, dL/dout); `fuses` names the head activation taken as logits."""

    name = ""
    fuses = None
    task = ""

    def __call__(self, out, y, fused=False):
        raise NotImplementedError

    def check_head(self, head_type, head_name):
        """TrainingError unless the output layer gives what this loss reads (probabilities for bce and cce)."""
        if self.fuses and head_type != self.fuses:
            what = {"bce": "binary cross-entropy", "cce": "categorical cross-entropy"}[self.name]
            raise TrainingError(f"{what} needs probabilities from a {self.fuses} output, but the output layer "
                                f"'{head_name}' is a {head_type}: add a {self.fuses} after '{head_name}' or use mse")


class BCE(Loss):
    name, fuses, task = "bce", "Sigmoid", "binary"
    eps = 1e-7

    def __call__(self, out, y, fused=False):
        y = y.reshape(out.shape).astype(out.dtype, copy=False)
        if fused:
            d = np.empty_like(out)
            return _bce_logits(out.reshape(len(out), -1), y.reshape(len(out), -1), d.reshape(len(out), -1)), d
        p = np.clip(out, self.eps, 1 - self.eps)
        b = len(out)
        loss = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) / b
        return float(loss), ((p - y) / (p * (1 - p)) / b).astype(out.dtype)


class MSE(Loss):
    name, task = "mse", "regression"

    def __call__(self, out, y, fused=False):
        b = len(out)
        z = np.ascontiguousarray(out).reshape(b, -1)                        # (B, K)
        d = np.empty_like(z)
        loss = _mse(z, np.ascontiguousarray(y, dtype=out.dtype).reshape(b, -1), d)
        return float(loss), d.reshape(out.shape)


class CCE(Loss):
    name, fuses, task = "cce", "Softmax", "multiclass"
    eps = 1e-7

    def __call__(self, out, y, fused=False):
        if out.ndim != 2:
            raise TrainingError(f"categorical cross-entropy needs (batch, classes) outputs, got {out.shape}")
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= out.shape[1]):
            raise TrainingError(f"class labels must lie in 0…{out.shape[1] - 1} for a {out.shape[1]}-unit "
                                f"output, found {y.min()}…{y.max()}")
        if fused:
            d = np.empty_like(out)
            return _cce_logits(out, y, d), d
        b = len(out)
        p = np.clip(out[np.arange(b), y], self.eps, 1.0)
        d = np.zeros_like(out)
        d[np.arange(b), y] = -1.0 / (p * b)
        return float(-np.sum(np.log(p)) / b), d


LOSSES = {c.name: c for c in (BCE, MSE, CCE)}


def get(name):
    if name not in LOSSES:
        raise TrainingError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
