"""Overlay of the per-epoch curves of run records chosen in the run list."""
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter

from .base import View, colour

SHORT = {"val_accuracy": "val acc", "val_loss": "val loss", "train_loss": "train loss", "val_rmse": "val RMSE",
         "val_mae": "val MAE", "val_r2": "val R²"}


def describe(rec):
    """One line about a run record: label, optimizer, lr, final metrics (for k-fold: mean ± std over folds only)."""
    c, r = rec.get("config", {}), rec.get("result", {})
    bits = [rec.get("label", "run"), f"{c.get('optimizer', '?')} lr {c.get('lr', '?')}"]
    if "summary" in rec:                      # k-fold: the last fold's own numbers would contradict the mean
        n = len(rec.get("folds", [])) or "k"
        for k, (m, s) in rec["summary"].items():
            bits.append(f"{SHORT.get(k, k.replace('_', ' '))} {m:.3g} ± {s:.2g} over {n} folds")
        return " · ".join(bits)
    for k in ("val_accuracy", "val_r2", "val_loss", "train_loss"):
        if r.get(k) is not None:
            bits.append(f"{SHORT[k]} {r[k]:.4g}")
            break
    return " · ".join(bits)


def panel(canvas, col, title, ylabel):
    """A legend row above a plot (the legend never covers a curve); returns (plot, legend)."""
    sub = canvas.addLayout(row=0, col=col)
    legend = pg.LegendItem(colCount=4, labelTextSize="8pt")
    sub.addItem(legend, row=0, col=0)
    p = sub.addPlot(row=1, col=0, title=title)
    p.setLabel("left", ylabel)
    p.setLabel("bottom", "epoch")
    p.setMinimumHeight(150)
    sub.layout.setRowStretchFactor(1, 1)
    return p, legend


class CompareView(View):
    """Two (or more) finished runs side by side: loss and accuracy per epoch."""

    title = "Compare runs"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setMinimumHeight(200)
        self.loss_plot, self.loss_legend = panel(self.canvas, 0, "Loss", "loss")
        self.acc_plot, self.acc_legend = panel(self.canvas, 1, "Accuracy", "accuracy")
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.canvas)
        self.box.addWidget(self.split, 1)
        self.box.addWidget(self.note)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        self.note.setText("Select two runs in the run list to overlay their curves.")
        self.shown = []

    def attach_list(self, widget):
        """Put the run list (the dock's RunList) to the left of the plots."""
        self.split.insertWidget(0, widget)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([180, 680])

    def show_runs(self, records):
        """Overlay the records' histories (solid: training, dashed: validation); #i in the legend is the note's line."""
        self.shown = list(records)
        regression = bool(self.shown) and all("train_accuracy" not in r.get("history", {}) for r in self.shown)
        akey = "rmse" if regression else "accuracy"
        self.acc_plot.setTitle("RMSE" if regression else "Accuracy")
        self.acc_plot.setLabel("left", "RMSE" if regression else "accuracy")
        for p, leg in ((self.loss_plot, self.loss_legend), (self.acc_plot, self.acc_legend)):
            p.clear()
            leg.clear()
        for i, rec in enumerate(self.shown):
            h, c = rec.get("history", {}), colour(i)
            for key, p, leg in (("loss", self.loss_plot, self.loss_legend), (akey, self.acc_plot, self.acc_legend)):
                for part, style in (("train", Qt.PenStyle.SolidLine), ("val", Qt.PenStyle.DashLine)):
                    ys = [float("nan") if v is None else v for v in h.get(f"{part}_{key}", [])]
                    if ys:
                        it = p.plot(range(1, len(ys) + 1), ys, pen=pg.mkPen(c, width=2, style=style))
                        if part == "train":                   # one entry per run: the note says solid / dashed
                            leg.addItem(it, f"#{i + 1}")
        self.note.setText(("Solid: training, dashed: validation.<br>" if self.shown else "") +
                          "<br>".join(f"<span style='color:{colour(i)}'>■</span> #{i + 1} {describe(r)}"
                                      for i, r in enumerate(self.shown)) or
                          "Select two runs in the run list to overlay their curves.")
