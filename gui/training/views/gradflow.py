"""Gradient norm through time: ‖∂L/∂h_t‖ per step t of a chosen recurrent layer (every layer type that declares the tap
"grad_hidden": RNN, LSTM, GRU) on a validation batch (log scale)."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel

from .base import View, colour
from .sequence import chosen, exposing, layer_row, lengths, model_inputs, refill

BATCH = 32              # validation sequences of the backward pass


def probe_grads(model, probe, idx):
    """Forward (evaluation mode), loss and backward on probe samples idx; model.grad is left as it was.

    The gradient the optimizer reads (model.grad) is restored afterwards, so a probe between training
    steps changes nothing the next step uses. Returns the batch's (n,) lengths."""
    fn = getattr(probe, "loss_grad", None)
    if fn is None:
        raise ValueError("the gradient view needs the run's loss (probe.loss_grad)")
    x, m, lm = model_inputs(model, probe, idx)
    keep = model.grad.copy()
    try:
        out = model.forward(x, training=False, logits=probe.logits, mask=m)
        _, d = fn(out, probe.y[idx], lm)
        model.backward(d, logits=probe.logits)
    finally:
        model.grad[...] = keep
    return lengths(probe, idx)


class GradFlowView(View):
    """Mean over valid sequences of ‖∂L/∂h_t‖ for t = 1…T: δ_t = ∂L/∂h_t flows back through W at each step."""

    title = "Gradient through time"
    key = "gradflow"
    needs = exposing("grad_hidden")

    @staticmethod
    def compute(model, probe, options):
        layer = chosen(model, GradFlowView.needs, options.get("gradflow_layer"))
        if not layer:
            return None
        idx = np.arange(min(BATCH, len(probe.x)))
        lens = probe_grads(model, probe, idx)
        g = model.layers[layer].taps["grad_hidden"]                                  # (n, T, H)
        norms = np.sqrt(np.einsum("bth,bth->bt", g, g, dtype=np.float64))             # (n, T)
        valid = np.arange(g.shape[1])[None, :] < lens[:, None]                       # (n, T)
        count = valid.sum(axis=0)                                                    # (T,)
        mean = np.where(count > 0, (norms * valid).sum(axis=0) / np.maximum(count, 1), np.nan)
        return {"layer": layer, "norms": mean, "count": count, "per_seq": np.where(valid, norms, np.nan),
                "sequences": len(idx)}

    def __init__(self, parent=None):
        super().__init__(parent)
        row, self.layer = layer_row(self, "gradflow_layer")
        self.ratio = QLabel("")
        row.addWidget(self.ratio, 2)
        self.box.addLayout(row)
        self.plot = pg.PlotWidget()
        self.plot.setLogMode(x=False, y=True)
        self.plot.setLabel("bottom", "time step t")
        self.plot.setLabel("left", "‖∂L/∂h_t‖")
        self.plot.getAxis("left").enableAutoSIPrefix(False)         # the norms themselves, not ×0.001
        self.plot.showGrid(x=False, y=True, alpha=0.25)
        self.spread = [self.plot.plot([], [], pen=pg.mkPen(colour(0), width=1)) for _ in range(8)]
        for c in self.spread:
            c.setOpacity(0.18)
        self.curve = self.plot.plot([], [], pen=pg.mkPen(colour(0), width=2.5), symbol="o", symbolSize=5,
                                    symbolBrush=colour(0), symbolPen=None)
        self.box.addWidget(self.plot, 1)
        self.box.addWidget(self.note)
        self.norms = None

    def applies(self, ctx):
        return any(t in GradFlowView.needs for t in ctx.get("types", {}).values())

    def begin(self, ctx):
        super().begin(ctx)
        self.options["gradflow_layer"] = refill(self.layer, ctx, self.needs)
        self.note.setText(self._formula())

    @staticmethod
    def _formula():
        return ("δ_t = ∂L/∂h_t = Vᵀ·∂L/∂z_t + (∂h_(t+1)/∂h_t)ᵀ·δ_(t+1): each step back multiplies by the recurrent "
                "Jacobian (RNN: Wᵀ·diag f′), so the norm shrinks (vanishing) or grows (exploding) geometrically; "
                "LSTM and GRU add a gated path (f ⊙ c_(t−1), z ⊙ h_(t−1)) that lets it last. "
                "Mean over valid validation sequences, updated at epoch ends.")

    def refresh(self):
        p = self.take()
        if p is None:
            return
        self.show_norms(p)

    def show_norms(self, p):
        """Draw a compute() payload: the mean norm per step (T,) and a few sequences' own curves."""
        mean = np.asarray(p["norms"], float)
        self.norms = mean
        t = np.arange(1, len(mean) + 1)
        ok = np.isfinite(mean) & (mean > 0)
        self.curve.setData(t[ok], mean[ok])
        per = np.asarray(p.get("per_seq", np.zeros((0, len(mean)))), float)
        for k, c in enumerate(self.spread):
            if k < len(per):
                good = np.isfinite(per[k]) & (per[k] > 0)
                c.setData(t[good], per[k][good])
            else:
                c.setData([], [])
        if ok.sum() >= 2:
            first, last = np.flatnonzero(ok)[[0, -1]]
            r = mean[first] / mean[last]
            self.ratio.setText(f"‖∂L/∂h_{first + 1}‖ / ‖∂L/∂h_{last + 1}‖ = {r:.3g} "
                               f"({p['sequences']} sequences, '{p['layer']}')")
        else:
            self.ratio.setText("")
