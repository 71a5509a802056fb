"""Training metrics: accuracy over samples or valid steps, and RMSE / MAE / R² in the targets' units."""
import numpy as np

from ._jit import njit


@njit(cache=True, nogil=True, error_model="numpy")
def argmax_hits(out, y):
    """Σ_i [argmax_j out[i, j] = y[i]], argmax as np.argmax's (the first maximum; the first NaN if any)."""
    n = 0
    for i in range(out.shape[0]):
        m, best = 0, out[i, 0]
        for j in range(1, out.shape[1]):
            if best != best:
                break
            v = out[i, j]
            if v > best or v != v:
                m, best = j, v
        n += m == y[i]
    return n


def correct(out, y, loss_name, mask=None):
    """(number correct, number counted) from outputs or logits (sigmoid > 0.5 ⇔ logit > 0); per-step
    outputs (B, T, C) count every valid step (mask (B, T)) against y (B, T)."""
    if loss_name == "cce":
        if out.ndim == 3:
            hit = np.argmax(out, axis=2) == np.asarray(y).reshape(out.shape[:2])
            if mask is not None and mask.shape == hit.shape:
                return float(np.sum(hit & mask)), float(np.sum(mask))
            return float(np.sum(hit)), float(hit.size)
        y = np.asarray(y)
        if y.ndim == 1 and len(y) == len(out) and y.dtype.kind in "iu":      # one kernel call (per step)
            return float(argmax_hits(out, y)), float(len(y))
        return float(np.sum(np.argmax(out, axis=1) == y)), float(len(y))
    thr = 0.0 if loss_name == "bce_logits" else 0.5
    return float(np.sum((out.reshape(len(y), -1)[:, 0] > thr) == (y > 0.5))), float(len(y))


class Errors:
    """Running sums for RMSE, MAE and R² in the targets' original units, over valid steps and components."""

    def __init__(self, mean, std, ref_mean):
        self.mean, self.std, self.ref = mean, std, ref_mean      # ref: the set's own target mean (for R²)
        self.sse = self.sae = self.sst = self.n = 0.0

    def add(self, out, y, mask=None):
        """out: model outputs (standardised units), y: targets (original units)."""
        pred = out.reshape(y.shape) * self.std + self.mean
        r = (pred - y).astype(np.float64)
        c = (y - self.ref).astype(np.float64)
        if mask is not None and y.ndim >= 2 and y.shape[:2] == mask.shape:
            w = mask.reshape(mask.shape + (1,) * (y.ndim - 2)).astype(np.float64)
            k = y[0, 0].size
            self.n += float(mask.sum()) * k
        else:
            w, self.n = 1.0, self.n + y.size
        self.sse += float(np.sum(w * r * r))
        self.sae += float(np.sum(w * np.abs(r)))
        self.sst += float(np.sum(w * c * c))

    def metrics(self, prefix):
        n = max(self.n, 1.0)
        r2 = 1.0 - self.sse / self.sst if self.sst > 0 else None
        return {f"{prefix}_rmse": float(np.sqrt(self.sse / n)), f"{prefix}_mae": self.sae / n, f"{prefix}_r2": r2}
