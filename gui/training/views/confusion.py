"""Confusion matrix on the validation set (training set without one) at each epoch end."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor

from .base import View


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
    MAX_TEXT = 20                        # write counts in cells up to this many classes

    @staticmethod
    def compute(model, probe, options):
        if probe.task == "regression":
            return None
        n = len(probe.classes)
        lens = getattr(probe, "eval_lengths", None)
        from engine.seq2seq import source_input, target_input, teacher_inputs
        tgt = target_input(model)
        if tgt is not None:                                    # an encoder–decoder: next tokens, teacher-forced
            lens, src = probe.eval_target_lengths, source_input(model)
            out = np.asarray(model.predict({src: probe.eval_x, tgt: teacher_inputs(probe.eval_y)},
                                           lengths={src: probe.eval_lengths, tgt: lens}))
        else:
            out = np.asarray(model.predict(probe.eval_x, lengths=lens))
        y = probe.eval_y
        if lens is not None and out.ndim == 3:                 # a class per step: every valid step counts
            valid = np.arange(out.shape[1])[None, :] < lens[:, None]             # (n, T)
            out, y = out[valid], y[valid]
        return {"matrix": confusion(y, predictions(out, n), n)}

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
        self.labels = CellLabels()
        self.plot.addItem(self.labels)
        self.matrix = None

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

    def refresh(self):
        p = self.take()
        if p is None:
            return
        m = self.matrix = p["matrix"]
        n = len(m)
        self.image.setImage(m.T.astype(float), levels=(0, max(int(m.max()), 1)))   # (pred, true): x = predicted
        self.image.setRect(QRectF(-0.5, -0.5, n, n))
        self.labels.set(m)
        acc = np.trace(m) / max(m.sum(), 1)
        src = "validation" if self.ctx.get("n_val") else "training"
        self.note.setText(f"Rows: true class; columns: predicted class ({src} set, accuracy {100 * acc:.1f} %).")
