"""Confusion matrix on the validation set (training set without one) at each epoch end."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

from .base import View


def predictions(out, n_classes):
    """Class ids from evaluation-mode outputs: argmax, or sigmoid > 0.5 for a single output."""
    out = out.reshape(len(out), -1)
    return (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else np.argmax(out, axis=1)


def confusion(y, pred, n):
    """(n, n) counts: row = true class, column = predicted class."""
    m = np.zeros((n, n), np.int64)
    ok = (pred >= 0) & (pred < n)
    np.add.at(m, (y[ok], pred[ok]), 1)
    return m


class ConfusionView(View):
    """Counts per (true, predicted) class as a heatmap with the numbers written in the cells."""

    title = "Confusion"
    key = "confusion"
    MAX_TEXT = 15                        # write counts in cells up to this many classes

    @staticmethod
    def compute(model, probe, options):
        if probe.task == "regression":
            return None
        n = len(probe.classes)
        pred = predictions(np.asarray(model.predict(probe.eval_x)), n)
        return {"matrix": confusion(probe.eval_y, pred, n)}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.setLabel("bottom", "predicted class")
        self.plot.setLabel("left", "true class")
        self.image = pg.ImageItem()
        self.image.setLookupTable(pg.colormap.get("CET-L12").getLookupTable(nPts=256))
        self.plot.addItem(self.image)
        self.box.addWidget(self.plot, 1)
        self.box.addWidget(self.note)
        self.texts = []
        self.matrix = None
        self._last = None

    def applies(self, ctx):
        return bool(ctx.get("classify"))

    def begin(self, ctx):
        super().begin(ctx)
        for t in self.texts:
            self.plot.removeItem(t)
        self.texts, self.matrix = [], None
        self.image.clear()
        classes = [str(c) for c in ctx.get("classes", [])]
        ticks = [list(enumerate(classes))]
        for ax in ("bottom", "left"):
            self.plot.getAxis(ax).setTicks(ticks)
        n = len(classes)
        if n <= self.MAX_TEXT:
            for i in range(n * n):
                t = pg.TextItem("", anchor=(0.5, 0.5), color="k")
                t.setPos(i % n, i // n)
                self.plot.addItem(t)
                self.texts.append(t)
        src = "validation" if ctx.get("n_val") else "training"
        self.note.setText(f"Rows: true class; columns: predicted class ({src} set).")

    def snapshot(self, fold, payload):
        self._last = payload

    def refresh(self):
        p, self._last = self._last, None
        if p is None:
            return
        m = self.matrix = p["matrix"]
        n = len(m)
        self.image.setImage(m.T.astype(float), levels=(0, max(int(m.max()), 1)))   # (pred, true): x = predicted
        self.image.setRect(QRectF(-0.5, -0.5, n, n))
        hi = max(int(m.max()), 1)
        for i, t in enumerate(self.texts):
            v = int(m[i // n, i % n])
            t.setText(str(v))
            t.setColor("w" if v > 0.6 * hi else "k")
        acc = np.trace(m) / max(m.sum(), 1)
        src = "validation" if self.ctx.get("n_val") else "training"
        self.note.setText(f"Rows: true class; columns: predicted class ({src} set, accuracy {100 * acc:.1f} %).")
