"""PCA projection of a chosen layer's activations on a fixed validation sample, coloured by class."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel

from engine.pca import PCA, activations, pair_activations

from .base import ClassScatter, View, colour


def project(a, k=2):
    """(scores (n, k), explained-variance ratios of all components) of activations a (n, d), engine PCA."""
    p = PCA(k).fit(a)
    s = p.transform(a)                                             # (n, ≤ k)
    if s.shape[1] < k:                                             # a one-feature layer: a flat second axis
        s = np.c_[s, np.zeros((len(s), k - s.shape[1]))]
    return s, p.explained_variance_ratio


def default_layer(layers, feats, types=None):
    """The last hidden layer with at least two features (before the logits of a Sigmoid/Softmax head)."""
    skip = 2 if len(layers) > 2 and (types or {}).get(layers[-1]) in ("Sigmoid", "Softmax") else 1
    for name in reversed(layers[:-skip]):
        if feats.get(name, 0) >= 2:
            return name
    return layers[0] if layers else ""


class PCAView(View):
    """Scatter of the first two principal components with their explained-variance ratios."""

    title = "PCA"
    key = "pca"

    @staticmethod
    def compute(model, probe, options):
        layer = options.get("pca_layer")
        if layer not in model.layers:          # not chosen yet (the UI may not have seen this run start)
            layer = default_layer(model.order, {n: int(np.prod(model.infos[n].shape)) for n in model.order},
                                  {n: model.graph.nodes[n].type for n in model.order})
        if len(model.inputs) > 1:              # an encoder–decoder: each pair's mean over the layer's valid steps
            if probe.target_lengths is None:
                return None
            a = pair_activations(model, layer, probe.x, probe.lengths, probe.y, probe.target_lengths)
        else:
            a = activations(model, layer, probe.x)                   # (n, d)
        scores, evr = project(a, 2)
        return {"layer": layer, "scores": scores, "evr": evr, "y": probe.y, "features": a.shape[1],
                "pooled": len(model.inputs) > 1}

    def __init__(self, parent=None):
        super().__init__(parent)
        row = QHBoxLayout()
        row.addWidget(QLabel("Layer:"))
        self.layer = QComboBox()
        self.layer.setMinimumContentsLength(10)
        self.layer.currentTextChanged.connect(self._chose)
        row.addWidget(self.layer, 1)
        self.evr_label = QLabel("")
        self.evr_label.setWordWrap(True)                        # long layer names never widen the view
        row.addWidget(self.evr_label, 2)
        self.box.addLayout(row)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "PC1")
        self.plot.setLabel("left", "PC2")
        self.scatter = ClassScatter(self.plot, size=6)
        self.plot.enableAutoRange(x=False, y=False)            # ranges move in steps (see _fit): fewer re-layouts
        self.legend = self.plot.addLegend(offset=(-5, 5), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 210))
        self.box.addWidget(self.plot, 1)
        self.box.addWidget(self.note)
        self.evr = None
        self._classes = None

    def begin(self, ctx):
        super().begin(ctx)
        keep = self.layer.currentText()
        self.layer.blockSignals(True)
        self.layer.clear()
        layers = ctx.get("layers", [])
        self.layer.addItems(layers)
        pick = keep if keep in layers else default_layer(layers, ctx.get("features", {}), ctx.get("types"))
        self.layer.setCurrentText(pick)
        self.layer.blockSignals(False)
        self.options["pca_layer"] = pick
        self.scatter.clear()
        self.evr_label.setText("")
        self.note.setText(f"{min(300, ctx.get('n_val') or ctx.get('n_train', 0))} fixed "
                          f"{'validation' if ctx.get('n_val') else 'training'} samples; updated at epoch ends.")
        classes = list(ctx.get("classes", []) if ctx.get("classify") else [])[:10]
        if classes != self._classes:                           # the legend only changes with the classes
            self.legend.clear()
            for i, c in enumerate(classes):
                self.legend.addItem(pg.ScatterPlotItem(size=7, pen=None, brush=colour(i)), f"class {c}")
            self._classes = classes

    def _chose(self, name):
        if name:
            self.options["pca_layer"] = name
            self.reprobe.emit(self.key)

    def refresh(self):
        p = self.take()
        if p is None:
            return
        s, y = p["scores"], p["y"]
        n_cls = len(self.ctx.get("classes", [])) if self.ctx.get("classify") else 0
        self.scatter.set(s[:, 0], s[:, 1], y, n_cls)
        self._fit(s[:, 0], s[:, 1])
        self.evr = np.asarray(p["evr"], float)
        shown = self.evr[:2]
        self.evr_label.setText("explained variance: " + ", ".join(
            f"PC{i + 1} {100 * v:.1f} %" for i, v in enumerate(shown)) +
            f" (of {p['features']} feature{'s' if p['features'] != 1 else ''} in '{p['layer']}'"
            + (", mean over valid steps)" if p.get("pooled") else ")"))
        self.evr_label.setToolTip(f"EVR_k = λ_k / Σ_j λ_j (λ: eigenvalues of the covariance of the {p['features']} "
                                  "features): " + ", ".join(f"PC{i + 1} = {v:.4g}" for i, v in enumerate(shown)))

    def _fit(self, x, y):
        """Re-range an axis only when the points leave it or fill less than half of it (15 % margins)."""
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        for lo, hi, a0, a1, set_range in ((x.min(), x.max(), x0, x1, self.plot.setXRange),
                                          (y.min(), y.max(), y0, y1, self.plot.setYRange)):
            span = max(hi - lo, 1e-6)
            if lo < a0 or hi > a1 or span < 0.5 * (a1 - a0):
                set_range(lo - 0.15 * span, hi + 0.15 * span, padding=0)

