"""Principal component analysis (spec §6): a general PCA, the two-feature closed form, and layer activations."""
from dataclasses import dataclass
from math import sqrt

import numpy as np

from .errors import DataError, LayerboardError, ShapeError
from .layers.base import fmt


class PCA:
    """PCA of (n, d) data by SVD of the centred data; keeps n_components (all when None) for transform."""

    def __init__(self, n_components=None):
        self.n_components = n_components

    def fit(self, x):
        """Fit mean, components (k, d), and the variance of every component (sample covariance, n − 1)."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or len(x) < 1:
            raise DataError(f"PCA needs data of shape (samples, features) with at least one sample, got {fmt(x.shape)}")
        if not np.isfinite(x).all():
            raise DataError("PCA data holds NaN or infinite values (did training diverge?)")
        n = len(x)
        self.mean = x.mean(axis=0)                                      # (d,)
        _, s, vt = np.linalg.svd(x - self.mean, full_matrices=False)    # (n, r) (r,) (r, d), r = min(n, d)
        big = np.argmax(np.abs(vt), axis=1)                             # deterministic signs: the largest
        vt *= np.sign(vt[np.arange(len(vt)), big])[:, None]             # entry of each component is positive
        self.explained_variance = s ** 2 / max(n - 1, 1)                # eigenvalues of the covariance, all r
        total = self.explained_variance.sum()
        self.explained_variance_ratio = self.explained_variance / total if total > 0 else np.zeros_like(s)
        k = len(s) if self.n_components is None else min(self.n_components, len(s))
        self.components = vt[:k]                                        # (k, d) unit rows
        return self

    def transform(self, x):
        """Scores (n, k): centred data projected on the kept components."""
        return (np.asarray(x, np.float64) - self.mean) @ self.components.T    # (n, d) @ (d, k)

    def inverse_transform(self, scores):
        """Data (n, d) rebuilt from scores (n, k)."""
        return self.mean + np.asarray(scores, np.float64) @ self.components   # (n, k) @ (k, d)

    def reconstruct(self, x):
        """x projected onto the span of the kept components (rank-k reconstruction)."""
        return self.inverse_transform(self.transform(x))


def rank1_reconstruction(a):
    """Spec §6: B + C Cᵀ (A − B) for data A (d × n), B its row means, C the top unit eigenvector of the covariance."""
    a = np.asarray(a, np.float64)
    b = a.mean(axis=1, keepdims=True)                                   # (d, 1), broadcast over the n columns
    c = PCA(1).fit(a.T).components.T                                    # (d, 1)
    return b + c @ (c.T @ (a - b))                                      # (d, 1)(1, n) → (d, n)


@dataclass
class PCA2:
    """The spec's two-feature PCA: A = XXᵀ = [[a, b], [b, c]], its eigenpairs, scores and EVRs."""

    mean: np.ndarray         # (2,) row means of the data
    a: float
    b: float
    c: float
    lam: tuple               # (λ₁, λ₂), λ₁ ≥ λ₂
    v1: np.ndarray           # (2,) unit eigenvector of λ₁
    v2: np.ndarray           # (2,) unit eigenvector of λ₂ (v1 turned by 90°)
    h1: np.ndarray           # (n,) scores v₁ᵀX
    evr: tuple               # (EVR₁, EVR₂)

    def reconstruct(self):
        """Spec §6 rank-1 form B + v₁v₁ᵀ(A − B) = mean + v₁ h₁, as (2, n)."""
        return self.mean[:, None] + np.outer(self.v1, self.h1)          # (2, 1) + (2, n)


def pca2(data):
    """Closed-form PCA (spec §6) of two-feature data given as a 2 × n array (features in rows)."""
    d = np.asarray(data, np.float64)
    if d.ndim != 2 or d.shape[0] != 2 or d.shape[1] < 1:
        raise DataError(f"two-feature PCA needs data of shape (2, n), got {fmt(d.shape)}")
    mean = d.mean(axis=1)
    x = d - mean[:, None]                                               # (2, n) centred
    A = x @ x.T                                                         # (2, 2)
    a, b, c = float(A[0, 0]), float(A[0, 1]), float(A[1, 1])
    r = sqrt((a - c) ** 2 + 4 * b * b)
    lam1, lam2 = ((a + c) + r) / 2, ((a + c) - r) / 2
    # λ₁ − c = ((a − c) + r)/2; when a < c use the equal 2b²/(r − (a − c)) to avoid cancellation
    l1c = ((a - c) + r) / 2 if a >= c else 2 * b * b / (r - (a - c))
    u1 = np.array([l1c, b])                                             # spec: u₁ = (λ₁ − c, b)
    norm = np.hypot(*u1)
    if norm == 0:                                                       # b = 0 and a ≤ c: λ₁ = c
        v1 = np.array([1.0, 0.0]) if a >= c else np.array([0.0, 1.0])   # a = c, b = 0: every direction is one
    else:
        v1 = u1 / norm
    v2 = np.array([-v1[1], v1[0]])
    total = lam1 + lam2
    evr1 = lam1 / total if total > 0 else 0.0
    return PCA2(mean, a, b, c, (lam1, lam2), v1, v2, v1 @ x, (evr1, 1 - evr1 if total > 0 else 0.0))


def activations(model, layer, x, batch_size=None):
    """(n, features) evaluation-mode activations of `layer` for samples x, each sample flattened; batches of
    batch_size samples (default: as many as fit in memory, Model.batch_for, at most 256).

    Runs model.forward, so it must not be called on a model that another thread is training at that moment."""
    if layer not in model.layers:
        raise LayerboardError(f"no layer named '{layer}' in the model; layers: {', '.join(model.order)}")
    x = np.asarray(x)
    if tuple(x.shape[1:]) != model.input_shape:
        raise ShapeError(f"the model expects samples of shape {fmt(model.input_shape)} but got {fmt(x.shape[1:])}")
    parts, batch_size = [], batch_size or model.batch_for(256)
    for i in range(0, len(x), batch_size):
        model.forward(x[i:i + batch_size], every=True)
        a = model.acts[layer]
        parts.append(np.array(a, copy=True).reshape(len(a), -1))        # (batch, features)
    if not parts:
        return np.zeros((0, int(np.prod(model.infos[layer].shape))), model.dtype)
    return np.concatenate(parts)


def step_mean(a, mask):
    """(B, features): each sample's output a (B, T, …) averaged over its valid steps (mask (B, T)), flattened;
    outputs without a mask of their steps are flattened whole."""
    if mask is None or a.ndim < 3 or a.shape[:2] != mask.shape:
        return np.array(a, copy=True).reshape(len(a), -1)
    m = mask.astype(np.float64)[:, :, None]                                             # (B, T, 1)
    s = (np.asarray(a, np.float64).reshape(a.shape[0], a.shape[1], -1) * m).sum(1)      # (B, F)
    return s / np.maximum(m.sum(1), 1.0)


def pair_activations(model, layer, src, lengths, y, target_lengths, batch_size=None):
    """(n, features) evaluation-mode hidden vectors of `layer` of an encoder–decoder for sources src (n, S) with
    `lengths` and targets y (n, T) with `target_lengths`, fed as in training (teacher forcing): a sequence
    output is the mean of its valid steps, source steps on the encoder side and target steps on the decoder
    side (padded steps never count)."""
    from .seq2seq import encoder_nodes, source_input, steps_mask, target_input, teacher_inputs
    if layer not in model.layers:
        raise LayerboardError(f"no layer named '{layer}' in the model; layers: {', '.join(model.order)}")
    s_name, t_name = source_input(model), target_input(model)
    src, y = np.asarray(src), np.asarray(y)
    for name, arr in ((s_name, src), (t_name, y)):
        if tuple(arr.shape[1:]) != tuple(model.infos[name].shape):
            raise ShapeError(f"the Input '{name}' expects samples of shape {fmt(model.infos[name].shape)} but got "
                             f"{fmt(arr.shape[1:])}")
    if not len(src):
        raise DataError("no sentence pairs to compute hidden vectors of")
    enc = layer in encoder_nodes(model)
    parts, batch_size = [], batch_size or model.batch_for(256)
    for i in range(0, len(src), batch_size):
        j = slice(i, i + batch_size)
        masks = {s_name: steps_mask(lengths[j], src.shape[1]), t_name: steps_mask(target_lengths[j], y.shape[1])}
        model.forward({s_name: src[j], t_name: teacher_inputs(y[j])}, mask=masks, every=True)
        a, m = model.acts[layer], model.masks.get(layer)
        if m is None and a.ndim >= 3:                   # a layer that drops masks still runs over its stream
            m = masks[s_name if enc else t_name] if a.shape[1] == (src if enc else y).shape[1] else None
        parts.append(step_mean(a, m))
    return np.concatenate(parts)
