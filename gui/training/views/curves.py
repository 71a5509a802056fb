"""Loss and accuracy (regression: RMSE, MAE, R²) curves: training per batch and per epoch, validation per epoch."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

from .base import View, colour, restyle

# per-epoch columns after (epoch, step): the history keys, in order
EPOCH_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "train_rmse", "val_rmse",
              "train_mae", "val_mae", "train_r2", "val_r2")
COL = {k: 2 + i for i, k in enumerate(EPOCH_KEYS)}


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


class Panel:
    """A plot with its legend in a grid row of its own above it, so the legend never covers a curve."""

    def __init__(self, title, ylabel):
        self.legend = pg.LegendItem(colCount=3, labelTextSize="8pt")
        self.plot = pg.PlotItem(title=title)
        self.plot.setLabel("left", ylabel)
        self.plot.setLabel("bottom", "step")
        for ax in ("left", "bottom"):
            self.plot.getAxis(ax).enableAutoSIPrefix(False)      # "R² (x0.001)" helps nobody
        self.shown = True

    def add(self, item, name):
        if name:
            self.legend.addItem(item, name)

    def clear(self):
        self.plot.clear()
        self.legend.clear()


class CurvesView(View):
    """Training loss/accuracy per batch (thin) and per epoch (thick), validation per epoch (dashed)."""

    title = "Curves"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()            # one scene for all plots: one paint per update
        self.panels = {"loss": Panel("Loss", "loss"), "acc": Panel("Accuracy", "accuracy"),
                       "err": Panel("RMSE and MAE (target units)", "error"), "r2": Panel("R²", "R²")}
        self.loss_plot, self.acc_plot = self.panels["loss"].plot, self.panels["acc"].plot
        self.err_plot, self.r2_plot = self.panels["err"].plot, self.panels["r2"].plot
        for k in ("acc", "err", "r2"):
            self.panels[k].plot.setXLink(self.loss_plot)
        self._side, self._placed = None, None
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
            for p in self.panels.values():
                p.clear()
            self._items, self._sig = {}, sig
        else:                                                   # same layout: reuse the curves (cheap start)
            for items in self._items.values():
                for it in items.values():
                    it.setData([], [])
        self.folds, self._dirty, self._dirty_epochs = {}, set(), set()
        classify = ctx.get("classify", True)
        self.panels["acc"].shown = classify
        self.panels["err"].shown = self.panels["r2"].shown = False      # shown once their metrics arrive
        self._arrange()
        self._total = ctx.get("epochs", 1) * ctx.get("per_epoch", 1)
        self._xmax = min(self._total, max(50, ctx.get("per_epoch", 1)))
        self.loss_plot.setXRange(0, self._xmax, padding=0.02)  # x grows by doubling: few axis re-layouts
        self._ymax = 0.0                                        # loss axis [0, ymax] grows in steps (same reason)
        self.loss_plot.enableAutoRange(x=False, y=False)
        self.acc_plot.setYRange(0, 1.0, padding=0.02)
        self.acc_plot.enableAutoRange(x=False, y=False)
        for p in (self.err_plot, self.r2_plot):
            p.enableAutoRange(x=False, y=True)
        self.note.setText("")
        self.fold(0, ctx)

    def fold(self, fold, ctx):
        """Curves for a fold; with k folds each fold gets its own colour and the batch curves are hidden."""
        kf = ctx.get("folds", 1) > 1
        tc, vc = (colour(fold), colour(fold)) if kf else (colour(0), colour(1))
        name = f"fold {fold + 1} " if kf else ""
        if fold not in self._items:
            self._items[fold] = self._make(fold, ctx, kf, tc, vc, name)
        self.folds[fold] = {"batch": Buffer(4), "epoch": Buffer(2 + len(EPOCH_KEYS)), **self._items[fold]}

    def _make(self, fold, ctx, kf, tc, vc, name):
        f, val = {}, bool(ctx.get("n_val"))
        dash = pg.QtCore.Qt.PenStyle.DashLine
        for key, pan in (("loss", self.panels["loss"]), ("acc", self.panels["acc"])):
            p = pan.plot
            f[f"batch_{key}"] = p.plot([], [], pen=pg.mkPen(tc, width=1))
            pan.add(f[f"batch_{key}"], None if kf else "per batch")
            f[f"batch_{key}"].setOpacity(0.35)
            f[f"batch_{key}"].setDownsampling(auto=True, method="peak")
            f[f"batch_{key}"].setClipToView(True)
            f[f"batch_{key}"].setVisible(not kf)
            f[f"train_{key}"] = p.plot([], [], pen=pg.mkPen(tc, width=2))
            pan.add(f[f"train_{key}"], f"{name}train")
            f[f"val_{key}"] = p.plot([], [], pen=pg.mkPen(vc, width=2, style=dash))
            pan.add(f[f"val_{key}"], f"{name}validation" if val else None)
        for metric, pan, c in (("rmse", "err", 0), ("mae", "err", 2), ("r2", "r2", 0)):
            pc = colour(fold) if kf else colour(c)
            for part, style in (("train", pg.QtCore.Qt.PenStyle.SolidLine), ("val", dash)):
                it = f[f"{part}_{metric}"] = self.panels[pan].plot.plot([], [], pen=pg.mkPen(pc, width=2, style=style))
                label = {"rmse": "RMSE", "mae": "MAE", "r2": "R²"}[metric]
                if part == "train" or val:
                    self.panels[pan].add(it, f"{name}{label} {'train' if part == 'train' else 'validation'}")
        return f

    def _arrange(self, side=None):
        """The shown panels side by side in a wide, short dock, stacked otherwise; each legend above its plot."""
        side = self._side if side is None else side
        shown = tuple(k for k, p in self.panels.items() if p.shown)
        if (side, shown) == self._placed:
            return
        self._placed = (side, shown)
        ci = self.canvas.ci
        rows, cols = ci.layout.rowCount(), ci.layout.columnCount()    # only these: a stretch on a row makes it exist
        for p in self.panels.values():
            for it in (p.legend, p.plot):
                if it in ci.items:
                    ci.removeItem(it)
                it.setVisible(p.shown)
        lay = ci.layout
        for i in range(rows):
            lay.setRowStretchFactor(i, 0)
        for i in range(cols):
            lay.setColumnStretchFactor(i, 0)
        for i, k in enumerate(shown):
            r, c = (0, i) if side else (2 * i, 0)
            ci.addItem(self.panels[k].legend, row=r, col=c)
            ci.addItem(self.panels[k].plot, row=r + 1, col=c)
            lay.setRowStretchFactor(r + 1, 1)
            lay.setColumnStretchFactor(c, 1)
        used = 2 if side else 2 * len(shown)
        for i in range(max(rows, used)):                       # rows left empty by an earlier arrangement: no gap
            lay.setRowSpacing(i, 0 if i >= used else (2 if i % 2 == 0 else 6))
        restyle(self)
        lay.activate()
        self.canvas.resizeEvent(None)                 # the layout fills the view again (it shrank to its hint)

    def resizeEvent(self, e):
        super().resizeEvent(e)
        side = e.size().width() > 1.8 * e.size().height()
        if side != self._side:
            self._side = side
            self._arrange(side)
        QTimer.singleShot(0, self._fill)

    def _fill(self):
        """Lay the plots out again for the canvas's present size (the grid keeps a stale one otherwise)."""
        shown = [p for p in self.panels.values() if p.shown]
        width = self.canvas.width() / (len(shown) if self._side else 1)
        for p in shown:                                          # legend columns that fit the panel's width
            n = max(1, min(3, int(width // 95)))
            if p.legend.columnCount != n:
                p.legend.setColumnCount(n)
        self.canvas.ci.layout.invalidate()
        self.canvas.ci.layout.activate()
        self.canvas.resizeEvent(None)

    def batches(self, fold, rows):
        self.folds[fold]["batch"].extend(rows)
        self._dirty.add(fold)

    def epoch(self, fold, epoch, step, data):
        g = lambda k: np.nan if data.get(k) is None else data[k]       # noqa: E731  (JSON null: no value)
        self.folds[fold]["epoch"].extend([epoch, step] + [g(k) for k in EPOCH_KEYS])
        self._dirty_epochs.add(fold)

    def refresh(self):
        last = max((self.folds[f][k].data[-1, 1] for f in self._dirty | self._dirty_epochs
                    for k in ("batch", "epoch") if self.folds[f][k].n), default=0)   # a reopened run has epochs only
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
        regression = False
        for fold in self._dirty_epochs:                         # per-epoch curves change only at epoch ends
            f = self.folds[fold]
            e = f["epoch"].data
            for key in EPOCH_KEYS:
                col = e[:, COL[key]]
                ok = np.isfinite(col)
                item = key.replace("accuracy", "acc")
                f[item].setData(e[ok, 1], col[ok])
                regression |= bool(ok.any()) and key.endswith(("rmse", "mae", "r2"))
        if regression and not self.panels["err"].shown:
            self.panels["err"].shown = self.panels["r2"].shown = True
            self._arrange()
        self._dirty.clear()
        self._dirty_epochs.clear()

    def finish(self, fold, result):
        if "summary" in result:
            self.note.setText(result["summary"])

    # ---- for tests and the run list ----
    def batch_curve(self, fold=0):
        return self.folds[fold]["batch_loss"]

    def epoch_curve(self, fold=0, key="val_loss"):
        return self.folds[fold][key.replace("accuracy", "acc")]
