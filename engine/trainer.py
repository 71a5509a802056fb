"""Training loop: seeded mini-batches, metrics, events, stop/pause, early stopping, diagnostics."""
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from . import fused, losses, optimizers
from .errors import TrainingError
from .kernels import sq_norm

REMEDIES = ("early stopping with patience", "L2 weight decay", "dropout", "data augmentation",
            "a smaller model", "k-fold cross-validation")


@dataclass
class Event:
    """What the trainer reports to subscribers; kind is batch_end, epoch_end, finding or finished."""

    kind: str
    epoch: int
    step: int
    data: dict = field(default_factory=dict)


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


def single_threaded_blas():
    """Context with numpy's and SciPy's BLAS (the latter serves numba's np.dot) on one thread.

    Training GEMMs are small: extra BLAS threads spin against the trainer, the window and other processes
    for the same cores (a Dense 784→64 step ran 10-100× slower with 2 BLAS threads on a busy 2-core machine).
    """
    if fused._HAVE_SCIPY:
        import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS now so that the limit reaches it)
    return threadpool_limits(limits=1, user_api="blas")


def accuracy(out, y, loss_name):
    """Fraction correct from outputs or logits (sigmoid > 0.5 ⇔ logit > 0)."""
    if loss_name == "cce":
        return float(np.mean(np.argmax(out, axis=1) == y))
    thr = 0.0 if loss_name == "bce_logits" else 0.5
    return float(np.mean((out.reshape(len(y), -1)[:, 0] > thr) == (y > 0.5)))


class Trainer:
    """Trains a Model on a Dataset with a project's training settings; thread-safe stop/pause."""

    def __init__(self, model, cfg, train, val=None):
        self.model, self.cfg, self.train, self.val = model, cfg, train, val
        self.loss = losses.get(cfg["loss"])
        self._check_data()
        ocls = optimizers.OPTIMIZERS[cfg["optimizer"]]
        self.opt = ocls(cfg["weight_decay"], **{h.name: cfg[h.name] for h in ocls.hparams})
        self.fused = model.head.type == self.loss.fuses
        self.classify = self.loss.name in ("bce", "cce")
        self.rng = np.random.default_rng(cfg["seed"])
        self.subscribers = []
        self.history = {k: [] for k in ("train_loss", "val_loss", "train_accuracy", "val_accuracy")}
        self.batch_loss = []
        self.findings = []
        self._stop, self._go = threading.Event(), threading.Event()
        self._go.set()
        self.step = 0
        self.augment = None    # fn(x_batch, rng) -> x_batch, applied to training batches only
        self.fast = fused.compile(model, self.loss, self.fused, self.opt)   # None: per-layer steps only

    def _check_data(self):
        m, d = self.model, self.train
        if tuple(d.x.shape[1:]) != m.input_shape:
            raise TrainingError(f"the dataset '{d.name}' has samples of shape {tuple(d.x.shape[1:])} but the "
                                f"model's Input expects {m.input_shape}")
        out = m.output_shape
        if self.loss.name == "cce" and (len(out) != 1 or out[0] != d.n_classes):
            raise TrainingError(f"'{d.name}' has {d.n_classes} classes, so the output layer '{m.output}' needs "
                                f"shape ({d.n_classes},) for categorical cross-entropy, not {out}")
        if self.loss.name == "bce" and (d.task != "binary" or out != (1,)):
            raise TrainingError(f"binary cross-entropy needs a binary dataset and a (1,) output; "
                                f"'{d.name}' is {d.task} and '{m.output}' outputs {out}")
        if self.loss.name == "mse" and d.task == "regression" and out != tuple(d.y.shape[1:]):
            raise TrainingError(f"'{d.name}' has targets of shape {tuple(d.y.shape[1:])} but '{m.output}' outputs {out}")

    # ---- control (any thread) ----
    def subscribe(self, fn):
        self.subscribers.append(fn)

    def stop(self):
        self._stop.set()
        self._go.set()

    def pause(self):
        self._go.clear()

    def resume(self):
        self._go.set()

    @property
    def paused(self):
        return not self._go.is_set()

    def _emit(self, kind, epoch, **data):
        ev = Event(kind, epoch, self.step, data)
        for fn in self.subscribers:
            fn(ev)

    # ---- training ----
    def evaluate(self, ds, batch_size=512):
        """(mean loss, accuracy or None) in evaluation mode."""
        m, tot, correct = self.model, 0.0, 0.0
        for i in range(0, len(ds), batch_size):
            xb, yb = ds.x[i:i + batch_size], ds.y[i:i + batch_size]
            out = m.forward(xb, logits=self.fused)
            loss, _ = self.loss(out, yb, self.fused)
            tot += loss * len(xb)
            if self.classify:
                correct += self._acc(out, yb) * len(xb)
        n = max(len(ds), 1)
        return tot / n, (correct / n if self.classify else None)

    def _acc(self, out, y):
        return accuracy(out, y, "bce_logits" if self.fused and self.loss.name == "bce" else self.loss.name)

    @property
    def batch_size(self):
        """Samples per step: the whole training set for full-batch GD, else the configured size."""
        n = len(self.train)
        return n if self.opt.full_batch else min(self.cfg["batch_size"], n)

    @property
    def steps_per_epoch(self):
        return -(-len(self.train) // self.batch_size)

    def train_step(self, xb, yb):
        """Forward, loss, backward and, when loss and gradient are finite, the optimizer step on one batch.

        Returns (loss, output or logits, squared gradient norm). Uses the fused kernel when the graph
        allows it (the output is then a view valid until the next step), else the per-layer path."""
        if self.fast is not None:
            r = self.fast.step(xb, yb)
            if r is not None:
                return r
        m = self.model
        out = m.forward(xb, training=True, logits=self.fused)
        loss, d = self.loss(out, yb, self.fused)
        m.backward(d, logits=self.fused)
        gn = sq_norm(m.grad)
        if np.isfinite(loss) and np.isfinite(gn):
            self.opt.step(m.theta, m.grad, m.decay)
        return loss, out, gn

    def run(self):
        """Train until the epochs are done, stop() is called, early stopping or divergence; returns a summary."""
        with np.errstate(over="ignore", invalid="ignore"), single_threaded_blas():   # divergence: reported below
            return self._run()

    def _run(self):
        cfg, m, ds = self.cfg, self.model, self.train
        n, bs, per_epoch = len(ds), self.batch_size, self.steps_per_epoch
        best, best_theta, best_state, waited = np.inf, None, None, 0
        status, message, t0 = "completed", "", time.perf_counter()
        epoch = 0
        for epoch in range(1, cfg["epochs"] + 1):
            idx = self.rng.permutation(n)
            tot, correct = 0.0, 0.0
            for b in range(per_epoch):
                self._go.wait()
                if self._stop.is_set():
                    break
                j = idx[b * bs:(b + 1) * bs]
                xb, yb = ds.x[j], ds.y[j]
                if self.augment is not None:
                    xb = self.augment(xb, self.rng)
                loss, out, gn = self.train_step(xb, yb)
                if not (np.isfinite(loss) and np.isfinite(gn)):
                    status = "diverged"
                    message = (f"training diverged at epoch {epoch}, step {self.step + 1}: the "
                               f"{'loss' if not np.isfinite(loss) else 'gradient'} became "
                               f"{'NaN' if np.isnan(loss if not np.isfinite(loss) else gn) else 'infinite'}; "
                               "the weights are those of the last good step. Try a smaller learning rate.")
                    break
                self.step += 1
                acc = self._acc(out, yb) if self.classify else None
                tot += loss * len(j)
                correct += (acc or 0.0) * len(j)
                self.batch_loss.append(loss)
                self._emit("batch_end", epoch, loss=loss, accuracy=acc, batch=b + 1, batches=per_epoch,
                           grad_norm=float(np.sqrt(gn)))
            if status == "diverged" or self._stop.is_set():
                status = status if status == "diverged" else "stopped"
                break
            h = self.history
            h["train_loss"].append(tot / n)
            if self.classify:
                h["train_accuracy"].append(correct / n)
            if self.val is not None and len(self.val):
                vl, va = self.evaluate(self.val)
                h["val_loss"].append(vl)
                if self.classify:
                    h["val_accuracy"].append(va)
            self._emit("epoch_end", epoch, **{k: v[-1] for k, v in h.items() if v}, epochs=cfg["epochs"],
                       elapsed=time.perf_counter() - t0)
            self._diagnose(epoch)
            if cfg["patience"]:
                score = (h["val_loss"] or h["train_loss"])[-1]
                if score < best:
                    best, waited = score, 0
                    best_theta, best_state = m.theta.copy(), {k: v.copy() for k, v in m.state.items()}
                else:
                    waited += 1
                    if waited >= cfg["patience"]:
                        status = "early_stopped"
                        message = (f"early stopping at epoch {epoch}: no improvement for {waited} epochs; "
                                   f"restored the best weights (loss {best:.4g})")
                        break
        if best_theta is not None and status != "diverged":
            m.theta[...] = best_theta
            for k, v in best_state.items():
                m.state[k][...] = v
        result = self.summary(status, message, epoch, time.perf_counter() - t0)
        self._emit("finished", epoch, **result)
        return result

    def _diagnose(self, epoch):
        """Report overfitting once per onset (a new minimum of the validation loss starts a new one)."""
        f = overfitting(self.history, self.classify)
        if f:
            if not any(o.kind == f.kind and o.details.get("onset") == f.details["onset"] for o in self.findings):
                self._emit("finding", epoch, finding=f)
            self.findings.append(f)

    def summary(self, status, message, epoch, seconds):
        """Final metrics on the full training and validation sets, in evaluation mode."""
        out = {"status": status, "message": message, "epochs": epoch if status != "stopped" else epoch - 1,
               "steps": self.step, "seconds": seconds}
        tl, ta = self.evaluate(self.train)
        out["train_loss"] = tl
        if self.classify:
            out["train_accuracy"] = ta
        if self.val is not None and len(self.val):
            vl, va = self.evaluate(self.val)
            out["val_loss"] = vl
            if self.classify:
                out["val_accuracy"] = va
        out["findings"] = [f.message for f in self.findings[-1:]]
        return out
