"""Gates over time: the mean activation of each gate per step t of a chosen gated recurrent layer (every layer type
that declares the tap "gates": LSTM, GRU) over valid steps of a validation batch."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel

from engine.layers import REGISTRY

from .base import View, colour
from .sequence import chosen, exposing, forward, layer_row, refill

BATCH = 64              # validation sequences of the forward pass

MEANING = {"LSTM": "i_t = σ(·): how much of the candidate g_t is written; f_t = σ(·): how much of c_(t−1) is kept; "
                   "o_t = σ(·): how much of tanh(c_t) is shown; g_t = tanh(·) ∈ (−1, 1).",
           "GRU": "r_t = σ(·) scales W_hn·h_(t−1) + b_hn in n_t; z_t = σ(·): how much of h_(t−1) is kept "
                  "(h_t = (1 − z_t)⊙n_t + z_t⊙h_(t−1)); n_t = tanh(·) ∈ (−1, 1)."}


def gate_means(gates, lens):
    """(n_gates, T) mean over units and valid sequences of gates (n, T, n_gates, units); NaN where no sequence
    reaches step t. Also returns (T,) the sequences per step."""
    n, t = gates.shape[:2]
    valid = np.arange(t)[None, :] < np.asarray(lens)[:, None]                     # (n, T)
    per = gates.mean(axis=3, dtype=np.float64)                                   # (n, T, n_gates)
    count = valid.sum(axis=0)                                                    # (T,)
    total = np.einsum("bt,btg->gt", valid.astype(np.float64), per)              # (n_gates, T)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan), count


class GateView(View):
    """One curve per gate: mean over units and valid validation sequences of its activation at step t."""

    title = "Gates"
    key = "gates"
    needs = exposing("gates")

    @staticmethod
    def compute(model, probe, options):
        layer = chosen(model, GateView.needs, options.get("gates_layer"))
        if not layer:
            return None
        idx = np.arange(min(BATCH, len(probe.x)))
        lens = forward(model, probe, idx)
        mean, count = gate_means(model.layers[layer].taps["gates"], lens)
        kind = model.graph.nodes[layer].type
        return {"layer": layer, "type": kind, "gates": list(REGISTRY[kind].gate_names), "mean": mean,
                "count": count, "sequences": len(idx)}

    def __init__(self, parent=None):
        super().__init__(parent)
        row, self.layer = layer_row(self, "gates_layer", "Gated layer:")
        self.box.addLayout(row)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "time step t")
        self.plot.setLabel("left", "mean gate activation")
        self.plot.showGrid(x=False, y=True, alpha=0.25)
        self.plot.setYRange(-1, 1, padding=0.02)
        self.legend = self.plot.addLegend(offset=(10, 10))
        self.curves = []
        self.box.addWidget(self.plot, 1)
        self.hover = QLabel("")
        self.box.addWidget(self.hover)
        self.box.addWidget(self.note)
        self.mean, self.gates = None, []
        self.plot.scene().sigMouseMoved.connect(self._moved)

    def applies(self, ctx):
        return any(t in GateView.needs for t in ctx.get("types", {}).values())

    def begin(self, ctx):
        super().begin(ctx)
        self.options["gates_layer"] = refill(self.layer, ctx, self.needs)
        self.note.setText("Mean over units and valid validation steps; updated at epoch ends.")

    def refresh(self):
        p = self.take()
        if p is None:
            return
        self.show_gates(p)

    def show_gates(self, p):
        """Draw a compute() payload: mean (n_gates, T), one curve per gate named as in gates."""
        mean = np.asarray(p["mean"], float)
        self.mean, self.gates = mean, list(p["gates"])
        t = np.arange(1, mean.shape[1] + 1)
        if [c.name() for c in self.curves] != self.gates:
            for c in self.curves:
                self.plot.removeItem(c)
            self.legend.clear()
            self.curves = [self.plot.plot([], [], pen=pg.mkPen(colour(i), width=2), symbol="o", symbolSize=4,
                                          symbolBrush=colour(i), symbolPen=None, name=g)
                           for i, g in enumerate(self.gates)]
        for c, m in zip(self.curves, mean):
            ok = np.isfinite(m)
            c.setData(t[ok], m[ok])
        self.plot.setXRange(1, max(len(t), 2), padding=0.02)
        self.note.setText(f"'{p['layer']}' ({p['type']}), {p['sequences']} validation sequences, valid steps only: "
                          f"{MEANING.get(p['type'], '')} Updated at epoch ends.")

    def _moved(self, pos):
        if self.mean is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        t = int(round(self.plot.getPlotItem().vb.mapSceneToView(pos).x())) - 1
        if 0 <= t < self.mean.shape[1]:
            self.hover.setText(f"step {t + 1}: " + ", ".join(f"{g} {m:.3f}" for g, m in zip(self.gates, self.mean[:, t])))
