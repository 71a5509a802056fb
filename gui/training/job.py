"""A training run (single or k-fold) in a worker thread; messages go to a deque the UI drains (no Qt here)."""
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engine.errors import LayerboardError
from engine.project import Project
from engine.session import fold_summary, folds, prepare, record

PROBE_SAMPLES = 300      # fixed validation sample for the PCA projection
EVAL_CAP = 2000          # samples used for the confusion matrix
GRID = 80                # decision-boundary grid resolution per axis
READY_TIMEOUT = 2.0      # seconds the worker waits for the UI to set up its views for a run
GATE_TIMEOUT = 0.25      # longest the worker waits for one UI redraw


@dataclass
class Probe:
    """Fixed data the epoch-end views are computed on: a validation sample, an evaluation set, a 2-D grid."""

    task: str
    classes: list
    x: np.ndarray                     # (n ≤ 300, *input_shape) sample for PCA
    y: np.ndarray
    eval_x: np.ndarray                # validation set (or training set without one), capped
    eval_y: np.ndarray
    points_x: np.ndarray | None = None    # 2-D inputs only: training points drawn on the boundary
    points_y: np.ndarray | None = None
    extent: tuple | None = None           # (x0, x1, y0, y1) of the boundary grid
    grid: np.ndarray | None = None        # (GRID*GRID, 2) grid points, row-major over y then x
    lengths: np.ndarray | None = None     # sequences: (n,) valid steps of the samples x
    eval_lengths: np.ndarray | None = None    # sequences: (n,) valid steps of eval_x
    vocab: list | None = None             # token id -> text, when the data is text
    features: list | None = None          # tables: the name of each encoded feature
    target_lengths: np.ndarray | None = None  # sentence pairs: (n,) valid target steps of the samples x (y's)
    target_vocab: list | None = None      # sentence pairs: target token id -> text
    eval_target_lengths: np.ndarray | None = None     # sentence pairs: (n,) valid target steps of eval_y
    loss_grad: object = None              # fn(out, y, mask) -> (loss, dL/dout) as the trainer computes it
    logits: bool = False                  # the loss takes the head's logits (forward/backward logits=True)


def make_probe(train, val, seed):
    """Probe for a run: the sample and evaluation set come from validation data when there is some."""
    ref = val if val is not None and len(val) else train
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ref), min(PROBE_SAMPLES, len(ref)), replace=False))
    ev = np.sort(rng.choice(len(ref), min(EVAL_CAP, len(ref)), replace=False))
    p = Probe(train.task, list(train.classes), ref.x[pick], ref.y[pick], ref.x[ev], ref.y[ev])
    if getattr(ref, "lengths", None) is not None:
        p.lengths, p.eval_lengths = np.asarray(ref.lengths)[pick], np.asarray(ref.lengths)[ev]
    p.vocab, p.features = getattr(train, "vocab", None), getattr(train, "features", None)
    if getattr(ref, "target_lengths", None) is not None:                 # sentence pairs: the decoder's side
        p.target_lengths, p.target_vocab = np.asarray(ref.target_lengths)[pick], train.target_vocab
        p.eval_target_lengths = np.asarray(ref.target_lengths)[ev]
    if train.x.ndim == 2 and train.x.shape[1] == 2:
        allx = train.x if ref is train else np.concatenate([train.x, val.x])
        lo, hi = allx.min(axis=0), allx.max(axis=0)
        pad = 0.1 * np.maximum(hi - lo, 1e-3)
        lo, hi = lo - pad, hi + pad
        gx, gy = np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID)
        mx, my = np.meshgrid(gx, gy)                                     # (GRID, GRID) each
        p.grid = np.c_[mx.ravel(), my.ravel()].astype(np.float32)       # (GRID*GRID, 2)
        p.extent = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
        cap = np.sort(rng.choice(len(train), min(1000, len(train)), replace=False))
        p.points_x, p.points_y = train.x[cap], train.y[cap]
    return p


def loss_grad(trainer):
    """fn(out, y, mask) -> (loss, dL/dout): the trainer's loss on a batch (for probes that back-propagate)."""
    scaled = getattr(trainer, "_scaled", lambda y: y)          # regression targets in the units trained on
    return lambda out, y, mask: trainer.loss(out, scaled(y), trainer.fused, mask)


def snapshot_project(project):
    """A private copy of what a run reads, so edits in the window cannot race with the worker."""
    p = Project(project.graph.copy(), dict(project.training), dict(project.dataset), project.name)
    p.path = project.path
    return p


@dataclass
class Job:
    """Runs training in a thread. probes: {key: fn(model, probe, options) -> payload} computed at epoch ends."""

    project: Project
    k: int = 0                                      # k ≥ 2: k-fold cross-validation
    probes: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)     # read by probes (e.g. the PCA layer); set from the UI
    probe_interval: float = 0.25                    # seconds between epoch-end probes (the last epoch always)
    live: tuple = ()                                # probe keys also computed between batches (throttled)
    label: str = ""
    ui_wait: float = READY_TIMEOUT                  # 0 when nobody sets `ready` (headless use)
    weights: dict | None = None                     # loaded weights every run/fold starts from

    def __post_init__(self):
        self.outbox = deque()
        self.trainer = self.model = self.probe = None
        self.results, self._histories = [], []
        self._stop = threading.Event()
        self._go = threading.Event()                # cleared while paused (also before the trainer exists)
        self._go.set()
        self.ready = threading.Event()              # set by the UI once it has set up its views for a run/fold
        self.gate = threading.Event()               # cleared by the UI while it redraws: the worker waits
        self.gate.set()                             # between batches, so the redraw need not fight for the GIL
        self._last_probe = self._last_live = 0.0
        self._fold = 0
        self.model_lock = threading.Lock()          # one user of the model's forward buffers at a time
        self.thread = threading.Thread(target=self._main, name="layerboard-training", daemon=True)

    # ---- control (UI thread) ----
    def start(self):
        self.thread.start()

    def stop(self):
        """Ends the run within one batch, evaluation batch or probe (a paused run is released first)."""
        self._stop.set()
        self._go.set()
        self.ready.set()
        self.gate.set()
        t = self.trainer
        if t is not None:
            t.stop()

    @property
    def stopping(self):
        return self._stop.is_set()

    def pause(self):
        """Holds the run at its next check (batch, evaluation batch, probe); also while the data still loads."""
        if not self._stop.is_set():
            self._go.clear()
            if self.trainer is not None:
                self.trainer.pause()

    def resume(self):
        self._go.set()
        if self.trainer is not None:
            self.trainer.resume()

    @property
    def paused(self):
        return not self._go.is_set()

    def _check(self):
        """Worker: wait while paused; True when the run should end."""
        self._go.wait()
        return self._stop.is_set()

    @property
    def alive(self):
        return self.thread.is_alive()

    def join(self, timeout=10.0):
        if self.thread.is_alive() or self.thread.ident is not None:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def drain(self):
        """All messages posted since the last call, oldest first."""
        out, q = [], self.outbox
        while q:
            out.append(q.popleft())
        return out

    def probe_now(self, key):
        """Compute one probe on the finished model in a short thread; the result arrives as a 'snapshot'.

        Probes share the model's scratch buffers, so they run one after the other (model_lock)."""
        if self.model is None or key not in self.probes or self.thread.is_alive():
            return
        threading.Thread(target=self._run_probe, args=(key, dict(self.options)), daemon=True).start()

    # ---- worker ----
    def _post(self, *msg):
        self.outbox.append(msg)

    def _main(self):
        try:
            if self.k >= 2:
                self._kfold()
            else:
                model, trainer = prepare(self.project, weights=self.weights)
                self._one(model, trainer, 0, 1)     # stopped meanwhile: ends at once with a "stopped" result
        except LayerboardError as e:
            self._post("error", str(e))
        except Exception as e:                      # a bug must not take the window down: report it
            traceback.print_exc(file=sys.stderr)
            self._post("error", f"unexpected {type(e).__name__}: {e}")
        finally:
            self._post("done")

    def _kfold(self):
        for i, model, trainer in folds(self.project, self.k, weights=self.weights):
            if self._check():
                break
            self._one(model, trainer, i, self.k)
        done = [r for r in self.results if r["status"] != "stopped"]
        if len(done) == self.k:
            keys = [k for k in ("val_loss", "val_accuracy", "val_rmse", "val_mae", "val_r2") if done[0].get(k) is not None]
            summary = {k: fold_summary(done, k) for k in keys}
            rec = record(self.trainer, done[-1], self.label or f"{self.k}-fold cross-validation")
            rec["folds"] = [{"history": h, "result": {k: v for k, v in r.items() if k != "findings"}}
                            for h, r in zip(self._histories, done)]
            rec["summary"] = {k: list(v) for k, v in summary.items()}
            self._post("kfold", summary, rec)

    def _one(self, model, trainer, fold, nfolds):
        self.model, self.trainer = model, trainer
        if self._stop.is_set():
            trainer.stop()
        if not self._go.is_set():
            trainer.pause()
        self.probe = make_probe(trainer.train, trainer.val, trainer.cfg["seed"])
        self.probe.loss_grad, self.probe.logits = loss_grad(trainer), trainer.fused
        n, cfg = len(trainer.train), trainer.cfg
        self._fold = fold
        self._post("start", fold, {"folds": nfolds, "epochs": cfg["epochs"], "per_epoch": trainer.steps_per_epoch,
                                   "task": self.probe.task, "classes": self.probe.classes, "n_train": n,
                                   "n_val": len(trainer.val) if trainer.val is not None else 0,
                                   "input_shape": model.input_shape, "layers": list(model.order),
                                   "features": {n: int(np.prod(model.infos[n].shape)) for n in model.order},
                                   "types": {n: model.graph.nodes[n].type for n in model.order},
                                   "two_d": self.probe.grid is not None, "classify": trainer.classify,
                                   "translation": "val_exact_match" in trainer.history})
        self.ready.wait(self.ui_wait)                # let the UI build its plots before the worker takes the CPU
        self.ready.clear()
        trainer.subscribe(self._on_event)
        from engine.history import recorder
        runlog = recorder(self.project, trainer)         # the run history (engine/history.py)
        self._last_probe = 0.0
        try:
            result = trainer.run()
        except BaseException as e:
            if runlog is not None:
                runlog.failed(str(e) or type(e).__name__)
            raise
        if runlog is not None:
            runlog.done(result)
        self._probes(force=True)                    # nothing after Stop: the views keep the last epoch's
        self.results.append(result)
        self._histories.append({k: list(v) for k, v in trainer.history.items()})
        label = self.label or time.strftime("%Y-%m-%d %H:%M:%S")
        rec = record(trainer, result, label) if nfolds == 1 else None
        self._post("result", fold, result, rec)

    def _on_event(self, ev):
        """Trainer subscriber (worker thread): cheap appends only, probes throttled."""
        if ev.kind == "batch_end":
            self.gate.wait(GATE_TIMEOUT)
            acc = ev.data["accuracy"]
            self._post("batch", self._fold, ev.epoch, ev.step, ev.data["loss"],
                       np.nan if acc is None else acc)
            now = time.perf_counter()
            if self.live and now - self._last_live >= self.probe_interval:
                self._last_live = now
                for key in self.live:
                    if key in self.probes and not self._check():
                        self._run_probe(key)
        elif ev.kind == "epoch_end":
            self._post("epoch", self._fold, ev.epoch, ev.step, dict(ev.data))
            last = ev.epoch >= ev.data.get("epochs", 0)
            self._probes(force=last)
        elif ev.kind == "finding":
            f = ev.data["finding"]
            self._post("finding", self._fold, ev.epoch, f.message, list(f.remedies))

    def _probes(self, force=False):
        now = time.perf_counter()
        if not force and now - self._last_probe < self.probe_interval:
            return
        self._last_probe = now
        for key in self.probes:
            if self._check():                       # Stop and Pause answer between probes
                return
            self._run_probe(key)

    def _run_probe(self, key, options=None):
        """options: as they were when the probe was asked for (the UI may change them meanwhile)."""
        try:
            with self.model_lock:
                payload = self.probes[key](self.model, self.probe, self.options if options is None else options)
        except LayerboardError as e:
            payload = {"error": str(e)}
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            payload = {"error": f"{type(e).__name__}: {e}"}
        if payload is not None:
            self._post("snapshot", self._fold, key, payload)
