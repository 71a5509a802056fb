"""Losses (spec §9, §13, §14): per-sample loss summed over outputs, averaged over the batch B."""
import numpy as np
from ._jit import njit

from .errors import TrainingError
from .kernels import softmax_rows


@njit(cache=True, nogil=True, error_model="numpy")
def _labels_in(y, c):
    """Whether every class label lies in 0 … c − 1."""
    ok = True
    for v in y:
        ok &= (v >= 0) & (v < c)
    return ok


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
    """value_and_grad(out, y, fused, mask) -> (loss, dL/dout); `fuses` names the head activation taken as logits.

    mask: (B, T) bool of valid steps; it applies when the output is a sequence (B, T, …) of that T
    (sequence to sequence), and padded steps then count nowhere."""

    name = ""
    fuses = None
    logit_heads = ()      # every head type whose input the loss takes as logits (fuses and e.g. LogSoftmax)
    task = ""

    def takes_logits(self, head_type):
        """True when the loss reads the input of a `head_type` output layer as logits (the fused path)."""
        return head_type in self.logit_heads

    def __call__(self, out, y, fused=False, mask=None):
        raise NotImplementedError

    def check_head(self, head_type, head_name, head=None):
        """TrainingError unless the output layer gives what this loss reads (probabilities for bce and cce; a
        Softmax / LogSoftmax head `head` over the last axis, where the loss reads the classes)."""
        what = {"bce": "binary cross-entropy", "cce": "categorical cross-entropy"}.get(self.name)
        if self.fuses and not self.takes_logits(head_type):
            raise TrainingError(f"{what} needs probabilities from a {self.fuses} output, but the output layer "
                                f"'{head_name}' is a {head_type}: add a {self.fuses} after '{head_name}' or use mse")
        if self.fuses and head is not None and hasattr(head, "_dim") and head._dim() != -1:
            raise TrainingError(f"{what} reads the classes along the last axis, but the output layer '{head_name}' "
                                f"({head_type}) normalises over axis {head.config['axis']}: set its axis to −1 "
                                "or use mse")


def step_mask(out, mask):
    """mask as (B, T) float when it applies to out (B, T, …), else None."""
    if mask is None or out.ndim < 3 or out.shape[:2] != mask.shape:
        return None
    return mask.astype(out.dtype)


class BCE(Loss):
    name, fuses, task = "bce", "Sigmoid", "binary"
    logit_heads = ("Sigmoid",)
    eps = 1e-7

    def __call__(self, out, y, fused=False, mask=None):
        y = y.reshape(out.shape).astype(out.dtype, copy=False)
        if fused:
            d = np.empty_like(out)
            return _bce_logits(out.reshape(len(out), -1), y.reshape(len(out), -1), d.reshape(len(out), -1)), d
        p = np.clip(out, self.eps, 1 - self.eps)
        b = len(out)
        loss = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) / b
        return float(loss), ((p - y) / (p * (1 - p)) / b).astype(out.dtype)


class MSE(Loss):
    """(1/B) Σ_i ||ŷ_i − y_i||²; for sequences (spec §14) (1/N) Σ_i (1/T_i) Σ_{t ≤ T_i} ||y_it − ŷ_it||²."""

    name, task = "mse", "regression"

    def __call__(self, out, y, fused=False, mask=None):
        b = len(out)
        m = step_mask(out, mask)
        if m is None:
            z = np.ascontiguousarray(out).reshape(b, -1)                        # (B, K)
            d = np.empty_like(z)
            loss = _mse(z, np.ascontiguousarray(y, dtype=out.dtype).reshape(b, -1), d)
            return float(loss), d.reshape(out.shape)
        r = out - y.reshape(out.shape).astype(out.dtype, copy=False)
        w = (m / (m.sum(axis=1, keepdims=True) * b)).reshape(m.shape + (1,) * (out.ndim - 2))   # 1/(T_i B) or 0
        return float(np.sum(w * r * r)), (2 * w * r).astype(out.dtype)


class CCE(Loss):
    name, fuses, task = "cce", "Softmax", "multiclass"
    logit_heads = ("Softmax", "LogSoftmax")     # log softmax(z)_y = z_y − ln Σ e^z: the same loss from z
    eps = 1e-7

    def __call__(self, out, y, fused=False, mask=None):
        if out.ndim == 3:
            return self._per_step(out, y, fused, mask)
        if out.ndim != 2:
            raise TrainingError(f"categorical cross-entropy needs (batch, classes) outputs, got {out.shape}")
        y = np.asarray(y).reshape(-1).astype(np.int64, copy=False)
        if not _labels_in(y, out.shape[1]):
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

    def _per_step(self, out, y, fused, mask):
        """Mean over valid steps of −ln p_{t, y_t} for (B, T, C) outputs and (B, T) class ids."""
        b, t, c = out.shape
        y = np.asarray(y).reshape(b, t).astype(np.int64)
        m = step_mask(out, mask)
        m = np.ones((b, t), out.dtype) if m is None else m
        w = m / max(m.sum(), 1.0)                                       # (B, T): 1/(valid steps) or 0
        yy = np.where(m > 0, y, 0)
        if yy.size and (yy.min() < 0 or yy.max() >= c):
            raise TrainingError(f"class labels must lie in 0…{c - 1} for a {c}-unit output, found {yy.min()}…{yy.max()}")
        bi, ti = np.meshgrid(np.arange(b), np.arange(t), indexing="ij")
        if fused:                                                       # out holds logits
            mx = out.max(axis=2, keepdims=True)
            lse = mx + np.log(np.exp(out - mx).sum(axis=2, keepdims=True))   # (B, T, 1)
            d = np.exp(out - lse)
            d[bi, ti, yy] -= 1.0
            return float(np.sum(w * (lse[..., 0] - out[bi, ti, yy]))), (d * w[..., None]).astype(out.dtype)
        p = np.clip(out[bi, ti, yy], self.eps, 1.0)
        d = np.zeros_like(out)
        d[bi, ti, yy] = -w / p
        return float(-np.sum(w * np.log(p))), d


LOSSES = {c.name: c for c in (BCE, MSE, CCE)}


def get(name):
    if name not in LOSSES:
        raise TrainingError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
