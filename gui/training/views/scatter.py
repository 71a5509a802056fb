"""Regression: predicted against actual target values on the validation set, with the y = x line of perfect fit."""
import numpy as np
import pyqtgraph as pg

from .base import View, colour

MAX_POINTS = 2000


def fit_numbers(pred, true):
    """RMSE, MAE and R² of predictions (original units), each with its formula and this data's numbers."""
    e = pred - true
    n = len(e)
    sse, sst = float(np.sum(e ** 2)), float(np.sum((true - true.mean()) ** 2))
    rmse, mae = float(np.sqrt(sse / n)), float(np.mean(np.abs(e)))
    r2 = 1 - sse / sst if sst > 0 else float("nan")
    return {"rmse": rmse, "mae": mae, "r2": r2,
            "text": [f"RMSE = √(Σ(ŷ−y)²/n) = √({sse:.4g}/{n}) = {rmse:.4g}",
                     f"MAE = Σ|ŷ−y|/n = {mae:.4g}",
                     f"R² = 1 − Σ(ŷ−y)²/Σ(y−ȳ)² = 1 − {sse:.4g}/{sst:.4g} = {r2:.4g}"]}


class ScatterView(View):
    """Each validation sample as a point (actual, predicted); on the diagonal when the prediction is exact."""

    title = "Predicted vs actual"
    key = "scatter"

    @staticmethod
    def compute(model, probe, options):
        if probe.task != "regression":
            return None
        x, y = probe.eval_x[:MAX_POINTS], probe.eval_y[:MAX_POINTS]
        pred = np.asarray(model.predict(x), float).reshape(len(x), -1)[:, 0]       # original units
        true = np.asarray(y, float).reshape(len(y), -1)[:, 0]
        if not np.all(np.isfinite(pred)):
            return {"error": "the model's predictions are not finite"}
        return {"pred": pred, "true": true}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "actual y")
        self.plot.setLabel("left", "predicted ŷ")
        self.diag = self.plot.plot([], [], pen=pg.mkPen("#888", width=1, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.points = pg.ScatterPlotItem(size=6, pen=None, brush=pg.mkBrush(colour(0) + "b0"))
        self.plot.addItem(self.points)
        self.box.addWidget(self.plot, 1)
        self.box.addWidget(self.note)
        self.numbers = None

    def applies(self, ctx):
        return ctx.get("task") == "regression"

    def begin(self, ctx):
        super().begin(ctx)
        self.points.clear()
        self.diag.setData([], [])
        self.numbers = None
        self.note.setText("Each point is a validation sample: on the dashed line y = ŷ the prediction is exact.")

    def show_points(self, pred, true):
        """Draw (actual, predicted) points and the diagonal; the note gives RMSE, MAE, R² with their formulas."""
        self.points.setData(x=true, y=pred)
        both = np.r_[pred, true]
        both = both[np.isfinite(both)]
        if len(both):
            lo, hi = float(both.min()), float(both.max())
            self.diag.setData([lo, hi], [lo, hi])
        self.numbers = fit_numbers(pred, true)
        self.note.setText("   ".join(self.numbers["text"]))
        self.note.setToolTip("ŷ: the model's prediction, y: the actual value, ȳ: the mean of y, n: samples")

    def refresh(self):
        p = self.take()
        if p is not None:
            self.show_points(p["pred"], p["true"])
