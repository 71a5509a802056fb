"""Hidden states over time: the heatmap h_t (time × unit) of one validation sequence for a chosen recurrent layer
(every layer type that declares the tap "hidden": RNN, LSTM, GRU)."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QSpinBox

from .base import View, plain_axes
from .sequence import chosen, exposing, forward, image_item, layer_row, refill, sample_index, set_ticks, tokens

PROBE_CAP = 300         # the probe's sample (job.PROBE_SAMPLES)


class HiddenView(View):
    """ImageItem of h_t for t = 1…T_i (valid steps only), one column per step."""

    title = "Hidden states"
    key = "hidden"
    needs = exposing("hidden")

    @staticmethod
    def compute(model, probe, options):
        layer = chosen(model, HiddenView.needs, options.get("hidden_layer"))
        if not layer:
            return None
        i = sample_index(probe, options, "hidden_sample")
        n = int(forward(model, probe, i)[0])
        h = np.array(model.layers[layer].taps["hidden"][0, :n], np.float32)          # (T_i, H)
        lay = model.layers[layer]
        act = lay.config.get("activation", "tanh")
        return {"layer": layer, "sample": i, "h": h, "length": n, "tokens": tokens(probe, i, n),
                "activation": act, "y": probe.y[i], "formula": getattr(lay, "state_formula", "").format(f=act)}

    def __init__(self, parent=None):
        super().__init__(parent)
        row, self.layer = layer_row(self, "hidden_layer")
        row.addWidget(QLabel("Validation sample:"))
        self.sample = QSpinBox()
        self.sample.setRange(0, 0)
        self.sample.valueChanged.connect(self._sample)
        row.addWidget(self.sample)
        self.box.addLayout(row)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "time step t")
        self.plot.setLabel("left", "hidden unit")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.image = image_item("CET-D1")
        self.plot.addItem(self.image)
        plain_axes(self.plot)
        self.bar = pg.ColorBarItem(values=(-1, 1), colorMap=pg.colormap.get("CET-D1"), width=12, interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        self.box.addWidget(self.plot, 1)
        self.hover = QLabel("")
        self.box.addWidget(self.hover)
        self.box.addWidget(self.note)
        self.payload = None
        self.h = None                  # the (T_i, H) states shown
        self.labels = None
        self.plot.scene().sigMouseMoved.connect(self._moved)

    def applies(self, ctx):
        return any(t in HiddenView.needs for t in ctx.get("types", {}).values())

    def begin(self, ctx):
        super().begin(ctx)
        self.options["hidden_layer"] = refill(self.layer, ctx, self.needs)
        self.sample.blockSignals(True)
        self.sample.setRange(0, max(min(PROBE_CAP, ctx.get("n_val") or ctx.get("n_train", 1)) - 1, 0))
        self.sample.blockSignals(False)
        self.options["hidden_sample"] = self.sample.value()
        self.note.setText("One validation sequence, valid steps only; updated at epoch ends.")

    def _sample(self, i):
        self.options["hidden_sample"] = i
        self.reprobe.emit(self.key)

    def refresh(self):
        p = self.take()
        if p is None:
            return
        self.show_states(p)

    def show_states(self, p):
        """Draw a compute() payload: h (T_i, H), tokens or step numbers on the time axis."""
        h = np.asarray(p["h"], np.float32)                                           # (T_i, H)
        self.h, self.labels, self.payload = h, p.get("tokens"), p
        n, units = h.shape
        top = float(np.abs(h).max()) if h.size else 1.0
        top = 1.0 if p.get("activation", "tanh") == "tanh" and top <= 1 else max(top, 1e-6)
        self.image.setImage(h.T, levels=(-top, top), autoLevels=False)                # rows: units, columns: t
        self.image.setRect(0, 0, n, units)
        self.bar.setLevels((-top, top))
        self.plot.setXRange(0, max(n, 1), padding=0)
        self.plot.setYRange(0, max(units, 1), padding=0)
        set_ticks(self.plot.getAxis("bottom"), self.labels, n)
        self.plot.setLabel("bottom", "token" if self.labels else "time step t")
        self.note.setText(f"'{p['layer']}', validation sample {p['sample']}: {n} valid step{'s' * (n != 1)} × "
                          f"{units} units, {p.get('formula') or 'h_t'}; "
                          "updated at epoch ends.")

    def _moved(self, pos):
        if self.h is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        q = self.plot.getPlotItem().vb.mapSceneToView(pos)
        t, j = int(np.floor(q.x())), int(np.floor(q.y()))
        if 0 <= t < self.h.shape[0] and 0 <= j < self.h.shape[1]:
            what = f" ('{self.labels[t]}')" if self.labels else ""
            self.hover.setText(f"h_{t + 1}[{j}] = {self.h[t, j]:.4g} at step {t + 1}{what}, unit {j}")
