"""Training loop: seeded mini-batches, metrics, events, stop/pause, early stopping, diagnostics."""
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import _malloc, fused, losses, optimizers
from .diagnosis import overfitting
from .divergence import EXPLODED, Divergence
from .errors import TrainingError
from .kernels import sq_norm
from .metrics import Errors, correct
from .parallel import thread_limits, threads as granted_threads
from .data.ahead import Ahead, InTurn
from .data.order import order
from .targets import target_mean, target_stats  # noqa: F401  (target_stats: used by torch_export)
from .seq2seq import Teacher, loss_mask, target_input


@dataclass
class Event:
    """What the trainer reports to subscribers; kind is batch_end, epoch_end, finding or finished."""

    kind: str
    epoch: int
    step: int
    data: dict = field(default_factory=dict)


class Trainer(Divergence):
    """Trains a Model on a Dataset with a project's training settings; thread-safe stop/pause."""

    def __init__(self, model, cfg, train, val=None):
        self.model, self.cfg, self.train, self.val = model, cfg, train, val
        self.loss = losses.get(cfg["loss"])
        self.s2s = Teacher(model) if target_input(model) else None      # encoder–decoder: teacher forcing
        self._check_data()
        ocls = optimizers.OPTIMIZERS[cfg["optimizer"]]
        self.opt = ocls(cfg["weight_decay"], **{h.name: cfg[h.name] for h in ocls.hparams})
        self.fused = self.loss.takes_logits(model.head.type)
        self.classify = self.loss.name in ("bce", "cce")
        self.regress = self.loss.name == "mse" and train.task == "regression"
        if self.regress:                    # standardised targets inside; original units in every metric
            mean, std = target_stats(train)
            model.data["y_mean"], model.data["y_std"] = mean.astype(model.dtype), std.astype(model.dtype)
        self.rng = np.random.default_rng(cfg["seed"])
        self.subscribers = []
        keys = ["train_loss", "val_loss"] + (["train_accuracy", "val_accuracy"] if self.classify else [])
        keys += [f"{s}_{k}" for k in ("rmse", "mae", "r2") for s in ("train", "val")] if self.regress else []
        keys += [f"val_{k}" for k in self.s2s.METRICS] if self.s2s is not None and train.target_vocab else []
        self.history = {k: [] for k in keys}
        self.batch_loss = []
        self.findings = []
        self._stop, self._go = threading.Event(), threading.Event()
        self._go.set()
        self.step = 0
        self.augment = None    # fn(x_batch, rng) -> x_batch, applied to training batches only
        self.threads = None    # compute threads; None: all cores but one (the window's); CLI: --threads
        self.clip = float(cfg.get("clip_norm", 0.0))
        self.start = self.limit = None   # the first step's loss and the exploded-loss bound derived from it
        # the fused kernel knows neither masks, nor input statistics, nor clipping: per-layer steps then
        plain = train.lengths is None and "x_mean" not in model.data and self.clip <= 0 and len(model.inputs) == 1
        self.fast = fused.compile(model, self.loss, self.fused, self.opt) if plain else None

    def _check_data(self):
        m, d = self.model, self.train
        if len(d) == 0:
            raise TrainingError(f"the training set of '{d.name}' is empty (after holding out validation data): "
                                "lower the validation split or add samples")
        self.loss.check_head(m.head.type, m.output, m.head)
        if self.s2s is not None:
            return self.s2s.check(d)
        if tuple(d.x.shape[1:]) != m.input_shape:
            raise TrainingError(f"the dataset '{d.name}' has samples of shape {tuple(d.x.shape[1:])} but the "
                                f"model's Input expects {m.input_shape}")
        out = m.output_shape
        if self.loss.name == "cce" and d.per_step:
            if len(out) != 2 or out != (d.x.shape[1], d.n_classes):
                raise TrainingError(f"'{d.name}' has one of {d.n_classes} classes per step, so the output layer "
                                    f"'{m.output}' needs shape ({d.x.shape[1]}, {d.n_classes}), not {out}")
        elif self.loss.name == "cce" and (len(out) != 1 or out[0] != d.n_classes):
            raise TrainingError(f"'{d.name}' has {d.n_classes} classes, so the output layer '{m.output}' needs "
                                f"shape ({d.n_classes},) for categorical cross-entropy, not {out}")
        if self.loss.name == "bce" and (d.task != "binary" or out != (1,)):
            raise TrainingError(f"binary cross-entropy needs a binary dataset and a (1,) output; "
                                f"'{d.name}' is {d.task} and '{m.output}' outputs {out}")
        ys = tuple(d.y.shape[1:])
        if self.loss.name == "mse" and d.task == "regression" and out != ys and not (
                d.per_step and out[:-1] == ys[:-1] and np.prod(out[-1:]) == np.prod(ys[-1:])):
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
    def evaluate(self, ds, batch_size=None, prefix=None, stoppable=False):
        """(mean loss, accuracy or None) in evaluation mode; with prefix, (loss, accuracy, metrics) where
        metrics holds {prefix}_rmse, _mae, _r2 in the targets' units for regression ({} otherwise). Batches hold
        as many samples as fit in memory (Model.batch_for) unless batch_size is given.

        stoppable: pause and stop() are honoured between batches; None when stopped (no partial figures)."""
        m, tot, hits, count = self.model, 0.0, 0.0, 0.0
        self.finite_outputs = True          # every output of this pass finite (the epoch-end divergence check)
        batch_size = batch_size or m.batch_for()
        errs = self._errors(ds)
        if ds.x.ndim >= 3:                   # long sequences: at most 2**18 steps a batch (memory, not speed)
            batch_size = max(1, min(batch_size, (1 << 18) // ds.x.shape[1]))
        for i in range(0, len(ds), batch_size):
            if stoppable:
                self._go.wait()
                if self._stop.is_set():
                    return None
            j = slice(i, i + batch_size)
            xb, yb, mb = self._batch(ds, j)
            out = m.forward(xb, logits=self.fused, mask=mb)
            self.finite_outputs = self.finite_outputs and bool(np.isfinite(out).all())
            loss, _ = self.loss(out, self._scaled(yb), self.fused, loss_mask(mb))
            tot += loss * len(yb)
            if self.classify:
                c, k = self._correct(out, yb, loss_mask(mb))
                hits, count = hits + c, count + k
            if errs is not None:
                errs.add(out, yb, mb)
        n = max(len(ds), 1)
        acc = hits / max(count, 1.0) if self.classify else None
        if prefix is None:
            return tot / n, acc
        metrics = errs.metrics(prefix) if errs is not None else {}
        if self.s2s is not None and ds.target_vocab is not None:        # greedy decoding of a bounded sample
            metrics.update(self.s2s.metrics(ds, prefix))
        return tot / n, acc, metrics

    def _batch(self, ds, j):
        """(inputs, targets, masks) of samples j: arrays, or for an encoder–decoder seq2seq.Batch dicts."""
        return self.s2s.batch(ds, j) if self.s2s is not None else (ds.x[j], ds.y[j], ds.mask(j))

    def _errors(self, ds):
        if not self.regress:
            return None
        ref = target_mean(ds, self.model.data["y_mean"].shape)        # read in blocks: no copy of every target
        return Errors(self.model.data["y_mean"], self.model.data["y_std"], ref)

    def _scaled(self, y):
        """Targets in the standardised units the model trains on (regression), else as they are."""
        if not self.regress:
            return y
        return ((y - self.model.data["y_mean"]) / self.model.data["y_std"]).astype(self.model.dtype)

    def _correct(self, out, y, mask=None):
        return correct(out, y, "bce_logits" if self.fused and self.loss.name == "bce" else self.loss.name, mask)

    def _acc(self, out, y, mask=None):
        c, n = self._correct(out, y, mask)
        return c / max(n, 1.0)

    @property
    def batch_size(self):
        """Samples per step: the whole training set for full-batch GD, else the configured size."""
        n = len(self.train)
        return n if self.opt.full_batch else min(self.cfg["batch_size"], n)

    @property
    def steps_per_epoch(self):
        return -(-len(self.train) // self.batch_size)

    def train_step(self, xb, yb, mask=None):
        """Forward, loss, backward and, when loss and gradient are finite, the optimizer step on one batch.

        yb is in the units the model trains on (standardised for regression); mask (B, T) marks valid steps.
        Returns (loss, output or logits, squared gradient norm before clipping). Uses the fused kernel when
        the graph allows it (the output is then a view valid until the next step), else the per-layer path.
        With clip_norm c > 0 the gradient g is scaled by min(1, c / ||g||) (global norm) before the step."""
        if self.fast is not None and mask is None:
            r = self.fast.step(xb, yb)
            if r is not None:
                return r
        m = self.model
        out = m.forward(xb, training=True, logits=self.fused, mask=mask)
        loss, d = self.loss(out, yb, self.fused, loss_mask(mask))
        m.backward(d, logits=self.fused)
        gn = sq_norm(m.grad)
        if np.isfinite(loss) and np.isfinite(gn):
            if self.clip > 0 and gn > self.clip * self.clip:
                m.grad *= m.dtype.type(self.clip / np.sqrt(gn))
            self.opt.step(m.theta, m.grad, m.decay)
        return loss, out, gn

    def run(self):
        """Train until the epochs are done, stop() is called, early stopping or divergence; returns a summary."""
        threads = 1 if self.fast is not None else self.threads   # the fused kernel's GEMMs are too small for threads
        _malloc.keep_freed_memory()          # steps reuse freed arrays' pages (engine/_malloc.py)
        with np.errstate(over="ignore", invalid="ignore"), thread_limits(threads):   # divergence: reported below
            try:
                return self._run()
            finally:
                self._batches.close()

    _batches = InTurn(None, 0)      # the epoch's training batches (data.ahead)

    def _train_batch(self, ds, idx, b):
        """(inputs, targets, masks) of step b of an epoch whose samples come in the order idx, augmented."""
        bs = self.batch_size
        xb, yb, mb = self._batch(ds, idx[b * bs:(b + 1) * bs])
        if self.augment is not None:
            xb = self.augment(xb, self.rng)
        return xb, yb, mb

    def _run(self):
        cfg, m, ds = self.cfg, self.model, self.train
        n, bs, per_epoch = len(ds), self.batch_size, self.steps_per_epoch
        best, best_theta, best_state, waited = np.inf, None, None, 0
        status, message, t0 = "completed", "", time.perf_counter()
        # divergence: the weights before the next step (after the latest one) and before the latest step, taken
        # after each update in the pass that checks them finite, and at the last epoch end that predicted finite,
        # not exploded values
        last, prev, good = self._copy(), self._copy(), self._copy()
        good_at = "the start of training"
        run_loss = None                          # the running (exponential) mean of the training loss
        epoch, (xb, yb, mb) = 0, self._batch(ds, slice(0, 1))
        for epoch in range(1, cfg["epochs"] + 1):
            idx = order(self.rng, n)
            tot, hits, count = 0.0, 0.0, 0.0
            errs = self._errors(ds)
            # on two or more threads the next batch is gathered and augmented while a step runs (same draws)
            ahead = Ahead if granted_threads() > 1 else InTurn
            self._batches = ahead(lambda b: self._train_batch(ds, idx, b), per_epoch)
            for b in range(per_epoch):
                self._go.wait()
                if self._stop.is_set():
                    break
                j, (xb, yb, mb) = idx[b * bs:(b + 1) * bs], self._batches.take(b)
                loss, out, gn = self.train_step(xb, self._scaled(yb), mb)
                what = self._not_finite(loss, gn)
                kept = [(last, "the previous step"), (good, good_at)]
                if not what:
                    if run_loss is None:
                        self.start, run_loss = float(loss), float(loss)
                        self.limit = EXPLODED * max(self.start, 1.0)
                    run_loss = 0.9 * run_loss + 0.1 * float(loss)
                    what = self._bad_loss(run_loss, "the training loss (running mean)")
                    if what:
                        kept = [(prev, "the step before the last"), (good, good_at)]
                    elif self._snapshot(into=prev):             # the updated weights, finite: kept for what follows
                        last, prev = prev, last
                    else:
                        what = "the updated weights became NaN or infinite"
                if what:
                    status = "diverged"
                    message = self._diverged(f"epoch {epoch}, step {self.step + 1}", what, xb, yb, mb, kept)
                    break
                self.step += 1
                acc = None
                if self.classify:
                    c, k = self._correct(out, yb, loss_mask(mb))
                    hits, count, acc = hits + c, count + k, c / max(k, 1.0)
                if errs is not None:
                    errs.add(out, yb, mb)
                tot += loss * len(j)
                self.batch_loss.append(loss)
                self._emit("batch_end", epoch, loss=loss, accuracy=acc, batch=b + 1, batches=per_epoch,
                           grad_norm=float(np.sqrt(gn)))
            self._batches.close()
            if status == "diverged" or self._stop.is_set():
                status = status if status == "diverged" else "stopped"
                break
            h = self.history
            ev = (self.evaluate(self.val, prefix="val", stoppable=True) if self.val is not None and len(self.val)
                  else (None, None, {}))
            if ev is None:                                  # stopped during the evaluation
                status = "stopped"
                break
            vl, va, vm = ev
            what = self._bad_loss(tot / n, "the epoch's training loss") or self._bad_loss(vl, "the validation loss")
            # evaluation mode predicts finite values: shown by the validation pass just made (its loss checked
            # above), else on samples of the last batch and of the training set
            checked = vl is not None and self.finite_outputs and self._finite_weights()
            if not what and not checked and not self._predicts_well(xb, yb, mb):
                what = "the evaluation-mode outputs or loss became NaN, infinite or exploded"
            if what:
                status = "diverged"
                message = self._diverged(f"the end of epoch {epoch}", what, xb, yb, mb,
                                         [(prev, "the step before the last"), (good, good_at)])
                break
            self._copy(into=good)
            good_at = f"the end of epoch {epoch}"
            h["train_loss"].append(tot / n)
            if self.classify:
                h["train_accuracy"].append(hits / max(count, 1.0))
            if errs is not None:
                for k, v in errs.metrics("train").items():
                    h[k].append(v)
            if vl is not None:
                h["val_loss"].append(vl)
                if self.classify:
                    h["val_accuracy"].append(va)
                for k, v in vm.items():
                    h[k].append(v)
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
        self._emit("trained", epoch, status=status)     # the weights are final: e.g. save them before evaluating
        result = self.summary(status, message, epoch, time.perf_counter() - t0)
        what = self._bad_loss(result.get("train_loss"), "the loss over the training data") or self._bad_loss(
            result.get("val_loss"), "the loss over the validation data")
        if status != "diverged" and what:
            message = self._diverged(f"the end of training (epoch {epoch})", what, xb, yb, mb, [(good, good_at)])
            result = self.summary("diverged", message, epoch, time.perf_counter() - t0)
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
        if self._stop.is_set():             # Stop answers at once: the last epoch end's figures, no pass over the data
            out.update({k: v[-1] for k, v in self.history.items() if v})
            done = len(self.history["train_loss"])
            out["message"] = message or (f"The figures are those of the end of epoch {done}" if done else
                                         "Stopped before the first epoch ended: no figures yet")
            out["findings"] = [f.message for f in self.findings[-1:]]
            return out
        ev = self.evaluate(self.train, prefix="train", stoppable=True)
        if ev is None:
            return self.summary(status, message, epoch, seconds)
        tl, ta, tm = ev
        out["train_loss"] = tl
        if self.classify:
            out["train_accuracy"] = ta
        out.update(tm)
        if self.val is not None and len(self.val):
            ev = self.evaluate(self.val, prefix="val", stoppable=True)
            if ev is None:
                return self.summary(status, message, epoch, seconds)
            vl, va, vm = ev
            out["val_loss"] = vl
            if self.classify:
                out["val_accuracy"] = va
            out.update(vm)
            if self.regress and self.val.baseline is not None:      # e.g. persistence: next = the last value seen
                r = self.val.baseline.reshape(self.val.y.shape) - self.val.y
                m = self.val.mask() if self.val.per_step else None
                r = r[m] if m is not None else r
                out["baseline_val_rmse"] = float(np.sqrt(np.mean(r.astype(np.float64) ** 2)))
        out["findings"] = [f.message for f in self.findings[-1:]]
        return out
