"""Diagnoses of a training run's curves (spec §7): overfitting, with the remedies to offer."""
from dataclasses import dataclass, field

import numpy as np

REMEDIES = ("early stopping with patience", "L2 weight decay", "dropout", "data augmentation",
            "a smaller model", "k-fold cross-validation")


@dataclass
class Finding:
    """A structured diagnosis, e.g. overfitting (spec §7), with the remedies to offer."""

    kind: str
    epoch: int
    message: str
    details: dict = field(default_factory=dict)
    remedies: tuple = ()


def _smooth(a, k):
    """Trailing moving average over k epochs (fewer at the start)."""
    a = np.asarray(a, float)
    c = np.cumsum(np.r_[0.0, a])
    i = np.arange(1, len(a) + 1)
    lo = np.maximum(i - k, 0)
    return (c[i] - c[lo]) / (i - lo)


def _pct(new, old):
    """Relative change in percent, e.g. '+18 %'."""
    return f"{100 * (new - old) / abs(old):+.0f} %" if old else "n/a"


def overfitting(hist, classify=None, smooth=3, patience=4, rise=0.10, fall=0.02, acc_gap=0.05):
    """Finding when the smoothed validation loss has stayed > `rise` (relative) above its own minimum for
    `patience` epochs while the smoothed training loss fell by > `fall` over those epochs; for classification
    the smoothed training accuracy must also exceed the validation accuracy by ≥ `acc_gap`. None otherwise.

    Smoothing is a trailing mean over `smooth` epochs, so one noisy validation epoch is never a finding; all
    comparisons are relative, so the loss's scale (a regression loss of 1e9) does not matter.
    """
    tl, vl = hist.get("train_loss", []), hist.get("val_loss", [])
    n = min(len(tl), len(vl))
    if n < smooth + patience + 1:
        return None
    ts, vs = _smooth(tl[:n], smooth), _smooth(vl[:n], smooth)
    if not (np.all(np.isfinite(ts)) and np.all(np.isfinite(vs))):
        return None
    best = int(np.argmin(vs))
    margin = rise * abs(vs[best])
    if n - 1 - best < patience or not np.all(vs[n - patience:] > vs[best] + margin):
        return None
    if not ts[-1] < ts[-1 - patience] - fall * abs(ts[-1 - patience]):   # training loss no longer falls
        return None
    ta, va = hist.get("train_accuracy", []), hist.get("val_accuracy", [])
    classify = bool(va) if classify is None else classify
    gap = None
    if classify:
        if min(len(ta), len(va)) < n:
            return None
        gap = float(np.mean(ta[n - smooth:n]) - np.mean(va[n - smooth:n]))
        if gap < acc_gap:
            return None
    onset = best + 2                                             # the first epoch (1-based) after the minimum
    msg = (f"Overfitting since epoch {onset}: validation loss ({smooth}-epoch mean) is "
           f"{_pct(vs[-1], vs[best])} above its minimum ({vs[best]:.3g} at epoch {best + 1}, now {vs[-1]:.3g}) "
           f"while training loss changed {_pct(ts[-1], ts[best])} ({ts[best]:.3g} → {ts[-1]:.3g})")
    if gap is not None:
        msg += (f"; training accuracy {np.mean(ta[n - smooth:n]):.2f} vs validation "
                f"{np.mean(va[n - smooth:n]):.2f}")
    return Finding("overfitting", n, msg + ".",
                   {"onset": onset, "best_epoch": best + 1, "val_rise": float(vs[-1] / vs[best] - 1) if vs[best] else None,
                    "train_change": float(ts[-1] / ts[best] - 1) if ts[best] else None, "accuracy_gap": gap},
                   REMEDIES)
