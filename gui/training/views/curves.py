"""Loss and accuracy (regression: RMSE, MAE, R²) curves: training per batch and per epoch, validation per epoch."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

from .base import View, colour, restyle

# per-epoch columns after (epoch, step): the history keys, in order
EPOCH_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "train_rmse", "val_rmse",
              "train_mae", "val_mae", "train_r2", "val_r2", "val_exact_match")
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
    """One plot of the curves view (the view's single legend, above all plots, explains every panel)."""

    def __init__(self, title, ylabel):
        self.plot = pg.PlotItem()
        self.plot.setTitle(title, size="9pt")
        self.plot.setLabel("left", ylabel)
        self.plot.setLabel("bottom", "step")
        for ax in ("left", "bottom"):
            self.plot.getAxis(ax).enableAutoSIPrefix(False)      # "R² (x0.001)" helps nobody
        self.shown = True


DASH = pg.QtCore.Qt.PenStyle.DashLine
DOT = pg.QtCore.Qt.PenStyle.DotLine          # encoder–decoders: validation exact match of greedy decoding
GREY = "#888888"


class CurvesView(View):
    """Training loss/accuracy per batch (thin) and per epoch (thick), validation per epoch (dashed).

    One legend row above the plots, in the row of its own (it never covers a curve), short enough for the
    default dock: line style = training (solid) or validation (dashed); colour = train/validation, or with k
    folds the fold; in the error panel RMSE is thick and MAE thin."""

    title = "Curves"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()            # one scene for all plots: one paint per update
        self.legend = pg.LegendItem(colCount=6, labelTextSize="8pt", horSpacing=12)
        self.panels = {"loss": Panel("Loss", "loss"), "acc": Panel("Accuracy", "accuracy"),
                       "err": Panel("RMSE, MAE (target units)", "error"), "r2": Panel("R²", "R²")}
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
        sig = (ctx.get("folds", 1), bool(ctx.get("n_val")), ctx.get("classify", True), bool(ctx.get("translation")))
        if sig != self._sig:                                    # new layout: new curves and legend
            for p in self.panels.values():
                p.plot.clear()
            self.legend.clear()
            self._items, self._sig = {}, sig
            self._keys(ctx)
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

    def _key(self, label, colour_, width=2, style=None, opacity=1.0):
        it = pg.PlotDataItem([], [], pen=pg.mkPen(colour_, width=width) if style is None else
                             pg.mkPen(colour_, width=width, style=style))
        it.setOpacity(opacity)
        self.legend.addItem(it, label)

    def _keys(self, ctx):
        """The legend: what colours and line styles mean for this kind of run."""
        kf, val, regress = ctx.get("folds", 1) > 1, bool(ctx.get("n_val")), not ctx.get("classify", True)
        if kf:
            for f in range(ctx["folds"]):
                self._key(f"fold {f + 1}", colour(f))
            self._key("train", GREY)
        else:
            self._key("per batch", colour(0), 1, opacity=0.35)
            self._key("train", colour(0))
        if val:
            self._key("validation", GREY if kf else colour(1), 2, DASH)
        if regress:
            self._key("RMSE", GREY, 2.5)
            self._key("MAE", GREY, 1)
        if ctx.get("translation"):
            self._key("exact match (greedy)", GREY if kf else colour(1), 2, DOT)

    def fold(self, fold, ctx):
        """Curves for a fold; with k folds each fold gets its own colour and the batch curves are hidden."""
        kf = ctx.get("folds", 1) > 1
        tc, vc = (colour(fold), colour(fold)) if kf else (colour(0), colour(1))
        if fold not in self._items:
            self._items[fold] = self._make(kf, tc, vc)
        self.folds[fold] = {"batch": Buffer(4), "epoch": Buffer(2 + len(EPOCH_KEYS)), **self._items[fold]}

    def _make(self, kf, tc, vc):
        """The curves of one fold: train solid in tc, validation dashed in vc; RMSE thick, MAE thin."""
        f = {}
        for key in ("loss", "acc"):
            p = self.panels[key].plot
            f[f"batch_{key}"] = p.plot([], [], pen=pg.mkPen(tc, width=1))
            f[f"batch_{key}"].setOpacity(0.35)
            f[f"batch_{key}"].setDownsampling(auto=True, method="peak")
            f[f"batch_{key}"].setClipToView(True)
            f[f"batch_{key}"].setVisible(not kf)
            f[f"train_{key}"] = p.plot([], [], pen=pg.mkPen(tc, width=2))
            f[f"val_{key}"] = p.plot([], [], pen=pg.mkPen(vc, width=2, style=DASH))
        f["val_exact_match"] = self.panels["acc"].plot.plot([], [], pen=pg.mkPen(vc, width=2, style=DOT))
        for metric, pan, width in (("rmse", "err", 2.5), ("mae", "err", 1), ("r2", "r2", 2)):
            for part, c, style in (("train", tc, pg.QtCore.Qt.PenStyle.SolidLine), ("val", vc, DASH)):
                f[f"{part}_{metric}"] = self.panels[pan].plot.plot([], [], pen=pg.mkPen(c, width=width, style=style))
        return f

    def _arrange(self, side=None):
        """The legend in the top row across the view; the shown panels below it side by side in a wide, short
        dock, stacked otherwise."""
        side = self._side if side is None else side
        shown = tuple(k for k, p in self.panels.items() if p.shown)
        if (side, shown) == self._placed:
            return
        self._placed = (side, shown)
        ci = self.canvas.ci
        rows, cols = ci.layout.rowCount(), ci.layout.columnCount()    # only these: a stretch on a row makes it exist
        for it in [self.legend] + [p.plot for p in self.panels.values()]:
            if it in ci.items:
                ci.removeItem(it)
        for p in self.panels.values():
            p.plot.setVisible(p.shown)
        lay = ci.layout
        for i in range(rows):
            lay.setRowStretchFactor(i, 0)
        for i in range(cols):
            lay.setColumnStretchFactor(i, 0)
        ci.addItem(self.legend, row=0, col=0, colspan=len(shown) if side else 1)
        for i, k in enumerate(shown):
            r, c = (1, i) if side else (1 + i, 0)
            ci.addItem(self.panels[k].plot, row=r, col=c)
            lay.setRowStretchFactor(r, 1)
            lay.setColumnStretchFactor(c, 1)
        used = 2 if side else 1 + len(shown)
        for i in range(max(rows, used)):                       # rows left empty by an earlier arrangement: no gap
            lay.setRowSpacing(i, 0 if i >= used else 2)
        restyle(self)
        lay.activate()
        self._fill()

    def resizeEvent(self, e):
        super().resizeEvent(e)
        side = e.size().width() > 1.8 * e.size().height()
        if side != self._side:
            self._side = side
            self._arrange(side)
        QTimer.singleShot(0, self._fill)

    def _fill(self):
        """Lay the plots out again for the canvas's present size (the grid keeps a stale one otherwise), with
        as many legend columns as fit its width."""
        widest = max((40 + label.item.boundingRect().width() for _, label in self.legend.items), default=1)
        n = max(1, min(len(self.legend.items) or 1, int((self.canvas.width() - 20) // widest)))
        if self.legend.columnCount != n:
            self.legend.setColumnCount(n)
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
