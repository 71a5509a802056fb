"""Loss and accuracy curves: training per batch and per epoch, validation per epoch; k-fold folds overlaid."""
import numpy as np
import pyqtgraph as pg

from .base import View, colour


class Buffer:
    """A growing float array (amortised appends) for one curve."""

    def __init__(self, cols):
        self.a = np.empty((256, cols))
        self.n = 0

    def extend(self, rows):
        rows = np.atleast_2d(rows)
        need = self.n + len(rows)
        if need > len(self.a):
            grown = np.empty((max(need, 2 * len(self.a)), self.a.shape[1]))
            grown[:self.n] = self.a[:self.n]
            self.a = grown
        self.a[self.n:need] = rows
        self.n = need

    @property
    def data(self):
        return self.a[:self.n]


def _plot(canvas, row, title, ylabel, corner):
    p = canvas.addPlot(row=row, col=0, title=title)
    p.setLabel("left", ylabel)
    p.setLabel("bottom", "step")
    p.addLegend(offset=corner, labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 210))
    return p


class CurvesView(View):
    """Training loss/accuracy per batch (thin) and per epoch (thick), validation per epoch (dashed)."""

    title = "Curves"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()            # one scene for both plots: one paint per update
        self.loss_plot = _plot(self.canvas, 0, "Loss", "loss", (-10, 10))              # top right
        self.acc_plot = _plot(self.canvas, 1, "Accuracy", "accuracy", (-10, -10))     # bottom right
        self.acc_plot.setXLink(self.loss_plot)
        self._side = None
        self.box.addWidget(self.canvas, 1)
        self.box.addWidget(self.note)
        self.folds = {}
        self._dirty, self._dirty_epochs = set(), set()
        self._items, self._sig = {}, None
        self._xmax = self._total = 1
        self._ymax = 0.0
        self.begin({"folds": 1, "n_val": 1, "epochs": 1})      # the usual curves now: the first run starts quicker

    def begin(self, ctx):
        super().begin(ctx)
        sig = (ctx.get("folds", 1), bool(ctx.get("n_val")))
        if sig != self._sig:                                    # new layout: new curves and legend
            for p in (self.loss_plot, self.acc_plot):
                p.clear()
                p.legend.clear()
            self._items, self._sig = {}, sig
        else:                                                   # same layout: reuse the curves (cheap start)
            for items in self._items.values():
                for it in items.values():
                    it.setData([], [])
        self.folds, self._dirty, self._dirty_epochs = {}, set(), set()
        self.acc_plot.setVisible(ctx.get("classify", True))
        self._total = ctx.get("epochs", 1) * ctx.get("per_epoch", 1)
        self._xmax = min(self._total, max(50, ctx.get("per_epoch", 1)))
        self.loss_plot.setXRange(0, self._xmax, padding=0.02)  # x grows by doubling: few axis re-layouts
        self._ymax = 0.0                                        # loss axis [0, ymax] grows in steps (same reason)
        self.loss_plot.enableAutoRange(x=False, y=False)
        self.acc_plot.setYRange(0, 1.0, padding=0.02)
        self.acc_plot.enableAutoRange(x=False, y=False)
        self.note.setText("")
        self.fold(0, ctx)

    def fold(self, fold, ctx):
        """Curves for a fold; with k folds each fold gets its own colour and the batch curves are hidden."""
        kf = ctx.get("folds", 1) > 1
        tc, vc = (colour(fold), colour(fold)) if kf else (colour(0), colour(1))
        name = f"fold {fold + 1} " if kf else ""
        if fold not in self._items:
            self._items[fold] = self._make(fold, ctx, kf, tc, vc, name)
        self.folds[fold] = {"batch": Buffer(4), "epoch": Buffer(6), **self._items[fold]}

    def _make(self, fold, ctx, kf, tc, vc, name):
        f = {}
        for key, p in (("loss", self.loss_plot), ("acc", self.acc_plot)):
            f[f"batch_{key}"] = p.plot([], [], pen=pg.mkPen(tc, width=1),
                                       name=None if kf else "train (batch)")
            f[f"batch_{key}"].setOpacity(0.35)
            f[f"batch_{key}"].setDownsampling(auto=True, method="peak")
            f[f"batch_{key}"].setClipToView(True)
            f[f"batch_{key}"].setVisible(not kf)
            f[f"train_{key}"] = p.plot([], [], pen=pg.mkPen(tc, width=2), name=f"{name}train (epoch)")
            f[f"val_{key}"] = p.plot([], [], pen=pg.mkPen(vc, width=2, style=pg.QtCore.Qt.PenStyle.DashLine),
                                     name=f"{name}validation" if ctx.get("n_val") else None)
        return f

    def resizeEvent(self, e):
        """Loss and accuracy side by side in a wide, short dock; stacked otherwise."""
        super().resizeEvent(e)
        side = e.size().width() > 1.8 * e.size().height()
        if side != self._side:
            self._side = side
            ci = self.canvas.ci
            ci.removeItem(self.acc_plot)
            ci.addItem(self.acc_plot, row=0 if side else 1, col=1 if side else 0)
            lay = ci.layout
            lay.setRowStretchFactor(0, 3)
            lay.setRowStretchFactor(1, 0 if side else 2)
            lay.setColumnStretchFactor(0, 1)
            lay.setColumnStretchFactor(1, 1 if side else 0)

    def batches(self, fold, rows):
        self.folds[fold]["batch"].extend(rows)
        self._dirty.add(fold)

    def epoch(self, fold, epoch, step, data):
        g = lambda k: data.get(k, np.nan)                      # noqa: E731
        self.folds[fold]["epoch"].extend([epoch, step, g("train_loss"), g("val_loss"),
                                          g("train_accuracy"), g("val_accuracy")])
        self._dirty_epochs.add(fold)

    def refresh(self):
        last = max((self.folds[f]["batch"].data[-1, 1] for f in self._dirty if self.folds[f]["batch"].n), default=0)
        if last > self._xmax:
            self._xmax = min(self._total, max(2 * self._xmax, last))
            self.loss_plot.setXRange(0, self._xmax, padding=0.02)
        top = max((np.nanmax(self.folds[f]["batch"].data[:, 2], initial=0) for f in self._dirty
                   if self.folds[f]["batch"].n), default=0)
        top = max([top] + [np.nanmax(self.folds[f]["epoch"].data[:, 2:4], initial=0) for f in self._dirty_epochs
                           if self.folds[f]["epoch"].n])
        if np.isfinite(top) and top > self._ymax:
            self._ymax = 1.25 * top
            self.loss_plot.setYRange(0, self._ymax, padding=0)
        for fold in self._dirty:
            f = self.folds[fold]
            b = f["batch"].data
            f["batch_loss"].setData(b[:, 1], b[:, 2])
            if self.ctx.get("classify", True):
                f["batch_acc"].setData(b[:, 1], b[:, 3])
        for fold in self._dirty_epochs:                         # per-epoch curves change only at epoch ends
            f = self.folds[fold]
            e = f["epoch"].data
            for col, key in ((2, "train_loss"), (3, "val_loss"), (4, "train_acc"), (5, "val_acc")):
                ok = np.isfinite(e[:, col])
                f[key].setData(e[ok, 1], e[ok, col])
        self._dirty.clear()
        self._dirty_epochs.clear()

    def finish(self, fold, result):
        if "summary" in result:
            self.note.setText(result["summary"])

    # ---- for tests and the run list ----
    def batch_curve(self, fold=0):
        return self.folds[fold]["batch_loss"]

    def epoch_curve(self, fold=0, key="val_loss"):
        return self.folds[fold][key]
