"""Overlay of the per-epoch curves of run records chosen in the run list."""
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from .base import View, colour


def describe(rec):
    """One line about a run record: label, optimizer, lr, final metrics."""
    c, r = rec.get("config", {}), rec.get("result", {})
    bits = [rec.get("label", "run"), f"{c.get('optimizer', '?')} lr {c.get('lr', '?')}"]
    for k, short in (("val_accuracy", "val acc"), ("val_loss", "val loss"), ("train_loss", "train loss")):
        if k in r:
            bits.append(f"{short} {r[k]:.4g}")
            break
    if "summary" in rec:
        for k, (m, s) in rec["summary"].items():
            bits.append(f"{k} {m:.4g} ± {s:.2g}")
    return " · ".join(bits)


class CompareView(View):
    """Two (or more) finished runs side by side: loss and accuracy per epoch."""

    title = "Compare runs"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget(title="Loss per epoch")
        self.acc_plot = pg.PlotWidget(title="Accuracy per epoch")
        for p in (self.loss_plot, self.acc_plot):
            p.setLabel("bottom", "epoch")
            p.addLegend(offset=(-10, 10), labelTextSize="8pt")
        self.acc_plot.setXLink(self.loss_plot)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        plots = QWidget()
        col = QVBoxLayout(plots)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.loss_plot, 1)
        col.addWidget(self.acc_plot, 1)
        self.split.addWidget(plots)
        self.box.addWidget(self.split, 1)
        self.box.addWidget(self.note)
        self.note.setText("Select two runs in the run list to overlay their curves.")
        self.shown = []

    def attach_list(self, widget):
        """Put the run list (the dock's RunList) to the left of the plots."""
        self.split.insertWidget(0, widget)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([260, 600])

    def show_runs(self, records):
        """Overlay the records' histories (solid: training, dashed: validation)."""
        self.shown = list(records)
        for p in (self.loss_plot, self.acc_plot):
            p.clear()
            p.plotItem.legend.clear()
        for i, rec in enumerate(self.shown):
            h, c = rec.get("history", {}), colour(i)
            lab = rec.get("label", f"run {i + 1}")
            for key, p in (("loss", self.loss_plot), ("accuracy", self.acc_plot)):
                for part, style in (("train", Qt.PenStyle.SolidLine), ("val", Qt.PenStyle.DashLine)):
                    ys = h.get(f"{part}_{key}", [])
                    if ys:
                        p.plot(range(1, len(ys) + 1), ys, pen=pg.mkPen(c, width=2, style=style),
                               name=f"{lab} {'training' if part == 'train' else 'validation'}")
        self.note.setText("\n".join(describe(r) for r in self.shown) or
                          "Select two runs in the run list to overlay their curves.")
