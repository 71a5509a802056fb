"""Decision boundary of a 2-D input model: predicted class colours as a heatmap behind the data points."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

from ..job import GRID
from .base import PALETTE, ClassScatter, View, plain_axes

RGB = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in PALETTE], float)   # (10, 3)


def class_image(out, task, n_classes):
    """(GRID, GRID, 4) uint8 RGBA, rows over y, from model outputs on the grid: colour by class, pale when unsure."""
    if task == "regression" or n_classes < 2:
        v = out.reshape(len(out), -1)[:, 0]
        lo, hi = np.nanmin(v), np.nanmax(v)
        t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        p = np.c_[1 - t, t]                                        # (n, 2) blue → orange
    elif out.shape[1] == 1:
        q = np.clip(out[:, 0], 0, 1)
        p = np.c_[1 - q, q]                                        # (n, 2) sigmoid → two classes
    else:
        p = np.clip(out, 0, 1)
        p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)    # (n, C)
    rgb = p @ RGB[np.arange(p.shape[1]) % len(RGB)]                # (n, 3) probability-weighted colour
    conf = p.max(axis=1, keepdims=True)                            # (n, 1)
    k = 0.15 + 0.4 * (conf - 1 / p.shape[1]) / (1 - 1 / p.shape[1])
    rgb = 255 * (1 - k) + rgb * k                                  # pale where the model is unsure
    img = np.empty((len(out), 4), np.uint8)
    img[:, :3] = np.clip(rgb, 0, 255)
    img[:, 3] = 255
    return img.reshape(GRID, GRID, 4)                              # (y, x, 4)


class BoundaryView(View):
    """Heatmap of the model's prediction over the input plane with the training points on top."""

    title = "Decision boundary"
    key = "boundary"

    @staticmethod
    def compute(model, probe, options):
        if probe.grid is None:
            return None
        out = model.predict(probe.grid)                            # (GRID*GRID, out)
        out = np.asarray(out, float).reshape(len(out), -1)
        if not np.all(np.isfinite(out)):
            return {"error": "the model's outputs are not finite on the input plane"}
        return {"image": class_image(out, probe.task, len(probe.classes)), "extent": probe.extent,
                "x": probe.points_x, "y": probe.points_y}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(False)
        self.plot.setLabel("bottom", "x₁")
        self.plot.setLabel("left", "x₂")
        self.image = pg.ImageItem()
        self.image.setZValue(-10)
        self.plot.addItem(self.image)
        plain_axes(self.plot)
        self.points = ClassScatter(self.plot, size=8, pen=pg.mkPen("#222", width=1))
        self.box.addWidget(self.plot, 1)
        self.box.addWidget(self.note)

    def applies(self, ctx):
        return bool(ctx.get("two_d"))

    def begin(self, ctx):
        super().begin(ctx)
        self.image.clear()
        self.points.clear()
        self.note.setText("Colour: predicted class (pale where the model is unsure); points: training data.")

    def refresh(self):
        p = self.take()
        if p is None:
            return
        x0, x1, y0, y1 = p["extent"]
        self.image.setImage(np.ascontiguousarray(p["image"].transpose(1, 0, 2)), autoLevels=False)  # (x, y, 4)
        self.image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        n_cls = len(self.ctx.get("classes", [])) if self.ctx.get("classify") else 0
        self.points.set(p["x"][:, 0], p["x"][:, 1], p["y"], n_cls)
