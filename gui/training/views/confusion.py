"""Confusion matrix on the validation set (training set without one) at each epoch end."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor

from engine.confusion import confusion, outcomes, predictions  # noqa: F401 (older code imports them here)

from .base import View, plain_axes


class CellLabels(pg.GraphicsObject):
    """The counts written in the cells, painted by one item in screen pixels (cheap to update)."""

    def __init__(self):
        super().__init__()
        self.m = None

    def set(self, m):
        self.prepareGeometryChange()
        self.m = m
        self.update()

    def boundingRect(self):
        n = 0 if self.m is None else len(self.m)
        return QRectF(-0.5, -0.5, n, n)

    def paint(self, p, *args):
        if self.m is None or len(self.m) > ConfusionView.MAX_TEXT:
            return
        tr = p.transform()
        p.resetTransform()
        hi = max(int(self.m.max()), 1)
        light, dark = QColor("white"), QColor("black")
        for (i, j), v in np.ndenumerate(self.m):
            c = tr.map(QPointF(j, i))                               # cell centre in pixels
            p.setPen(light if v > 0.6 * hi else dark)
            p.drawText(QRectF(c.x() - 40, c.y() - 10, 80, 20), Qt.AlignmentFlag.AlignCenter, str(int(v)))


class ConfusionView(View):
    """Counts per (true, predicted) class as a heatmap with the numbers written in the cells."""

    title = "Confusion"
    key = "confusion"
    MAX_TEXT = 20                        # write counts in cells up to this many classes

    @staticmethod
    def compute(model, probe, options):
        if probe.task == "regression":
            return None
        n = len(probe.classes)
        lens = getattr(probe, "eval_lengths", None)
        y, pred, where = outcomes(model, probe.eval_x, probe.eval_y, lens,
                                  getattr(probe, "eval_target_lengths", None))
        return {"matrix": confusion(y, pred, n), "y": np.asarray(y), "pred": pred, "where": where,
                "x": probe.eval_x, "lengths": lens, "vocab": probe.vocab, "features": getattr(probe, "features", None)}

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
        plain_axes(self.plot)
        self.box.addWidget(self.plot, 1)
        self.box.addWidget(self.note)
        self.labels = CellLabels()
        self.plot.addItem(self.labels)
        self.matrix, self.cells, self.dialog = None, None, None
        self.plot.scene().sigMouseClicked.connect(self._clicked)

    def applies(self, ctx):
        return bool(ctx.get("classify"))

    def begin(self, ctx):
        super().begin(ctx)
        self.matrix = None
        self.image.clear()
        classes = [str(c) for c in ctx.get("classes", [])]
        ticks = [list(enumerate(classes))]
        for ax in ("bottom", "left"):
            self.plot.getAxis(ax).setTicks(ticks)
        self.labels.set(None)
        src = "validation" if ctx.get("n_val") else "training"
        self.note.setText(f"Rows: true class; columns: predicted class ({src} set).")
        self.cells = None

    def refresh(self):
        p = self.take()
        if p is None:
            return
        m = self.matrix = p["matrix"]
        self.cells = p
        n = len(m)
        self.image.setImage(m.T.astype(float), levels=(0, max(int(m.max()), 1)))   # (pred, true): x = predicted
        self.image.setRect(QRectF(-0.5, -0.5, n, n))
        self.labels.set(m)
        acc = np.trace(m) / max(m.sum(), 1)
        src = "validation" if self.ctx.get("n_val") else "training"
        self.note.setText(f"Rows: true class; columns: predicted class ({src} set, accuracy {100 * acc:.1f} %). "
                          "Click a cell to list its samples.")

    def _clicked(self, ev):
        """A click on cell (true i, predicted j) lists its samples."""
        if self.matrix is None or ev.button() != Qt.MouseButton.LeftButton:
            return
        pt = self.plot.getPlotItem().vb.mapSceneToView(ev.scenePos())
        i, j = int(round(pt.y())), int(round(pt.x()))
        if 0 <= i < len(self.matrix) and 0 <= j < len(self.matrix):
            self.open_cell(i, j)

    def open_cell(self, i, j):
        """The dialog listing the samples of true class i predicted as j (images as images)."""
        from .cell_samples import CellSamples
        if self.cells is None or "pred" not in self.cells:
            return None
        if self.dialog is not None:
            self.dialog.close()
        classes = [str(c) for c in self.ctx.get("classes", [])] or [str(k) for k in range(len(self.matrix))]
        self.dialog = CellSamples(self.cells, i, j, classes, self)
        self.dialog.show()
        return self.dialog
