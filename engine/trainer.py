"""Training loop: seeded mini-batches, metrics, events, stop/pause, early stopping, diagnostics."""
import os
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


def overfitting(hist, window=3, gap_min=0.05, rise_min=0.05):
    """Finding if validation loss rose over `window` epochs while training loss fell, or the gap keeps growing.

    A rise counts when it is more than `rise_min` (relative) above both the value `window` epochs ago and the
    best so far, so epoch-to-epoch noise in a flat validation curve is not reported.
    """
    tl, vl = hist.get("train_loss", []), hist.get("val_loss", [])
    if len(vl) <= window:
        return None
    e = len(vl)
    up = 1 + rise_min
    rising = vl[-1] > vl[-1 - window] * up and vl[-1] > min(vl) * up and tl[-1] < tl[-1 - window]
    ta, va = hist.get("train_accuracy", []), hist.get("val_accuracy", [])
    gap = [a - b for a, b in zip(ta, va)] if va else [b - a for a, b in zip(tl, vl)]
    growing = gap[-1] > gap_min and gap[-1] > gap[-1 - window] + 0.02
    if not (rising or growing):
        return None
    parts = []
    if rising:
        parts.append(f"validation loss rose from {vl[-1 - window]:.4g} to {vl[-1]:.4g} over the last {window} "
                     f"epochs while training loss fell from {tl[-1 - window]:.4g} to {tl[-1]:.4g}")
    if growing:
        parts.append(f"the train/validation gap grew from {gap[-1 - window]:.3g} to {gap[-1]:.3g}")
    return Finding("overfitting", e, "Overfitting: " + "; ".join(parts) + ".",
                   {"rising": rising, "growing_gap": growing, "gap": gap[-1]}, REMEDIES)


def thread_limits(n=None):
    """Context with numpy's and SciPy's BLAS (the latter serves numba's np.dot) on n threads; None: all cores
    but one, which the window keeps for itself (headless: `layerboard train --threads N`).

    Training GEMMs are small: extra BLAS threads spin against the trainer, the window and other processes
    for the same cores (a Dense 784→64 step ran 10-100× slower with 2 BLAS threads on a busy 2-core machine).
    """
    n = max(1, int(n or (os.cpu_count() or 1) - 1))
    if fused._HAVE_SCIPY:
        import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS now so that the limit reaches it)
    return threadpool_limits(limits=n, user_api="blas")


def free_cores():
    """Cores not busy with other work (cores − 1-minute load average, at least 1): headless training's default.

    On a machine shared with other jobs, multithreaded BLAS spin-waits against them: measured on a 2-core
    machine at load 7, two BLAS threads made a digits-cnn epoch 24× slower than one."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cores, cores - int(load + 0.5)))


def single_threaded_blas():
    """thread_limits(1): BLAS on one thread."""
    return thread_limits(1)


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
        self.threads = None    # compute threads; None: all cores but one (the window's); CLI: --threads
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
        threads = 1 if self.fast is not None else self.threads   # the fused kernel's GEMMs are too small for threads
        with np.errstate(over="ignore", invalid="ignore"), thread_limits(threads):   # divergence: reported below
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
        f = overfitting(self.history)
        onset = f and not (self.findings and self.findings[-1].kind == "overfitting"
                           and self.findings[-1].epoch == epoch - 1)
        if f:
            if onset:
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
