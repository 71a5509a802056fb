"""Attention heatmaps, live: α_{t→s} of a chosen attention layer (self-attention, or an encoder–decoder's
cross-attention: target tokens × source tokens), head and validation sample, plus all heads."""
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSpinBox, QSplitter)

from .attention_scores import constants, formula, score_of, term
from .base import View, plain_axes
from .sequence import exposing, forward, image_item, layers_of, pick, sample_index, set_ticks, tokens

TYPES = exposing("attention")     # the layers whose "attention" tap the view draws (self- and cross-attention)
PROBE_CAP = 300
THUMB_MAX = 24           # all-heads grid: at most this many thumbnails


def logits_of(layer, i):
    """(heads, T, S) scores z_ts of sample i (q_t·k_s/√d_k, or the layer's own scale and softcap): computed by the
    layer (attention_scores: ScaledDotProductAttention, CrossAttention), from its taps ("scores", or "q" and "k")
    or its cached q and k of the last forward; None when it keeps neither."""
    if hasattr(layer, "attention_scores"):                  # the engine's own computation (engine/layers)
        z = layer.attention_scores([i])
        return None if z is None else z[0]
    taps = layer.taps
    if "scores" in taps:
        return np.asarray(taps["scores"][i], np.float64)
    q, k = taps.get("q", getattr(layer, "q", None)), taps.get("k", getattr(layer, "k", None))
    if not isinstance(q, np.ndarray) or not isinstance(k, np.ndarray) or q.ndim != 4:
        return None
    q, k = np.asarray(q[i], np.float64), np.asarray(k[i], np.float64)           # (heads, T, d_k)
    return q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])                     # (heads, T, T)


def _decoder_tokens(model, probe, i):
    """(valid target steps, decoder input tokens <start> y₀ …, output tokens y₀ … <end>) of probe sample i of an
    encoder–decoder (None for other models, or when the data has no target vocabulary)."""
    from engine.seq2seq import target_input
    tv, tl = getattr(probe, "target_vocab", None), getattr(probe, "target_lengths", None)
    if target_input(model) is None or tl is None:
        return None
    n = int(tl[i])
    ids = [int(v) for v in np.asarray(probe.y[i])[:n]]
    word = (lambda j: tv[j] if tv and 0 <= j < len(tv) else str(j))
    out = [word(j) for j in ids]
    return n, [word(2)] + out[:-1], out


def _dims(p, name):
    """(query steps, key steps) of layer `name` in a payload: its own for decoder layers, else (length, length)."""
    n = int(p["length"])
    return tuple(p.get("dims", {}).get(name, (n, n)))


class AttentionView(View):
    """ImageItem of α_{t→s} (row: query t, column: key s) and a live grid of every layer × head."""

    title = "Attention"
    key = "attention"
    live = True                  # also probed between batches (throttled by the job), not only at epoch ends
    needs = TYPES

    @staticmethod
    def compute(model, probe, options):
        names = layers_of(model, TYPES)
        if not names:
            return None
        i = sample_index(probe, options, "attention_sample")
        n = int(forward(model, probe, i)[0])
        maps, logits, causal, dims, rows, cols, scores = {}, {}, {}, {}, {}, {}, {}
        src = tokens(probe, i, n)
        dec = _decoder_tokens(model, probe, i)          # (steps, decoder input tokens, output tokens) or None
        from engine.seq2seq import streams
        stream = streams(model.graph) if dec is not None else {}
        for name in names:
            layer = model.layers[name]
            maps[name] = np.array(layer.attention_maps([0])[0], np.float32)           # (heads, T, T) or (heads, T, S)
            lg = logits_of(layer, 0)
            if lg is not None:
                logits[name] = lg.astype(np.float32)
            causal[name] = bool(layer.config.get("causal", False))
            scores[name] = score_of(layer)
            if layer.type == "CrossAttention" and dec is not None:                    # target × source tokens
                dims[name], rows[name], cols[name] = (dec[0], n), dec[2], src
            elif stream.get(name) == "target":                                        # decoder self-attention
                dims[name], rows[name], cols[name] = (dec[0], dec[0]), dec[1], dec[1]
        return {"layers": names, "maps": maps, "logits": logits, "causal": causal, "sample": i, "length": n,
                "tokens": src, "dims": dims, "rows": rows, "cols": cols, "scores": scores,
                "types": {nm: model.layers[nm].type for nm in names}}

    def __init__(self, parent=None):
        super().__init__(parent)
        row = QHBoxLayout()
        row.addWidget(QLabel("Layer:"))
        self.layer = QComboBox()
        self.layer.setMinimumContentsLength(8)
        self.layer.currentTextChanged.connect(lambda _t: self._redraw())
        row.addWidget(self.layer, 1)
        row.addWidget(QLabel("Head:"))
        self.head = QSpinBox()
        self.head.setRange(0, 0)
        self.head.valueChanged.connect(lambda _v: self._redraw())
        row.addWidget(self.head)
        row.addWidget(QLabel("Validation sample:"))
        self.sample = QSpinBox()
        self.sample.setRange(0, 0)
        self.sample.valueChanged.connect(self._sample)
        row.addWidget(self.sample)
        self.export_btn = QPushButton("Export image…")
        self.export_btn.setToolTip("Save the heatmap shown as PNG or SVG")
        self.export_btn.clicked.connect(self._export_dialog)
        row.addWidget(self.export_btn)
        self.box.addLayout(row)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.plot = pg.PlotWidget()
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.invertY(True)                               # query 1 at the top, as a matrix is read
        self.plot.setLabel("bottom", "key s")
        self.plot.setLabel("left", "query t")
        self.image = image_item("viridis")
        self.plot.addItem(self.image)
        plain_axes(self.plot)
        self.bar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("viridis"), width=12, interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        split.addWidget(self.plot)
        self.grid = pg.GraphicsLayoutWidget()
        split.addWidget(self.grid)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.box.addWidget(split, 1)
        self.hover = QLabel("Hover a cell: " + formula(None))
        self.hover.setWordWrap(True)
        self.hover.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.box.addWidget(self.hover)
        self.box.addWidget(self.note)
        self.payload = None
        self.alpha = None            # (n, n) weights shown (valid queries × valid keys)
        self.logit = None            # (n, n) scores z_ts (q_t·k_s/√d_k, or the layer's scale/softcap) or None
        self.score = None            # score_of() of the layer shown: its scale, softcap and d_k
        self.labels = None
        self.causal = False
        self.thumbs = {}             # (layer, head) -> (ViewBox, ImageItem)
        self._grid_key = self._grid_n = self._frame = None
        self.plot.scene().sigMouseMoved.connect(self._moved)
        self.grid.scene().sigMouseClicked.connect(self._clicked)

    def applies(self, ctx):
        return any(t in TYPES for t in ctx.get("types", {}).values())

    def begin(self, ctx):
        super().begin(ctx)
        keep = self.layer.currentText()
        names = [n for n in ctx.get("layers", []) if ctx.get("types", {}).get(n) in TYPES]
        self.layer.blockSignals(True)
        self.layer.clear()
        self.layer.addItems(names)
        self.layer.setCurrentText(pick(names, keep))
        self.layer.blockSignals(False)
        self.sample.blockSignals(True)
        self.sample.setRange(0, max(min(PROBE_CAP, ctx.get("n_val") or ctx.get("n_train", 1)) - 1, 0))
        self.sample.blockSignals(False)
        self.options["attention_sample"] = self.sample.value()
        self.note.setText("Updated while training (a few times a second); click a thumbnail to show that head.")

    def _sample(self, i):
        self.options["attention_sample"] = i
        self.reprobe.emit(self.key)

    def refresh(self):
        p = self.take()
        if p is None:
            return
        self.show_maps(p)

    # ---- drawing ----
    def show_maps(self, p):
        """Draw a compute() payload: maps {layer: (heads, T, T)}, the sample's length and tokens."""
        self.payload = p
        names = list(p["layers"])
        if [self.layer.itemText(i) for i in range(self.layer.count())] != names:
            keep = self.layer.currentText()
            self.layer.blockSignals(True)
            self.layer.clear()
            self.layer.addItems(names)
            self.layer.setCurrentText(pick(names, keep))
            self.layer.blockSignals(False)
        self._redraw()
        self._draw_grid()

    def _redraw(self):
        p = self.payload
        if p is None:
            return
        name = pick(list(p["maps"]), self.layer.currentText())
        maps = p["maps"][name]                                                     # (heads, T, T)
        self.head.blockSignals(True)
        self.head.setRange(0, len(maps) - 1)
        self.head.blockSignals(False)
        h = self.head.value()
        nq, nk = _dims(p, name)
        self.alpha = np.asarray(maps[h, :nq, :nk], np.float64)                     # (nq, nk) valid part
        lg = p.get("logits", {}).get(name)
        self.logit = None if lg is None else np.asarray(lg[h, :nq, :nk], np.float64)
        self.causal = bool(p.get("causal", {}).get(name, False))
        self.score = p.get("scores", {}).get(name)
        self.labels = p.get("rows", {}).get(name, p.get("tokens"))                 # query (row) tokens
        self.keys = p.get("cols", {}).get(name, p.get("tokens"))                   # key (column) tokens
        self.image.setImage(self.alpha.astype(np.float32), levels=(0, 1), autoLevels=False)
        frame = (name, h, p["sample"], nq, nk, tuple(self.labels or ()), tuple(self.keys or ()), repr(self.score))
        if frame != self._frame:                    # axes, ticks and title only when they change (cheap redraws)
            self._frame = frame
            cross = p.get("types", {}).get(name) == "CrossAttention"
            self.image.setRect(0, 0, nk, nq)
            self.plot.setXRange(0, max(nk, 1), padding=0)
            self.plot.setYRange(0, max(nq, 1), padding=0)
            set_ticks(self.plot.getAxis("bottom"), self.keys, nk)
            set_ticks(self.plot.getAxis("left"), self.labels, nq)
            self.plot.setLabel("bottom", "source token s (key)" if cross else "key s")
            self.plot.setLabel("left", "target token t (query)" if cross else "query t")
            what = f"{nq} target × {nk} source tokens" if cross else f"{nq} tokens"
            self.plot.setTitle(f"{name}, head {h}, sample {p['sample']} ({what})", size="9pt")
            kn = constants(self.score)
            self.hover.setText("Hover a cell: " + formula(self.score) + (f" ({kn})" if kn else ""))
            self._borders()

    def _draw_grid(self):
        p = self.payload
        cells = [(name, h) for name in p["layers"] for h in range(len(p["maps"][name]))][:THUMB_MAX]
        key = tuple(cells)
        if key != self._grid_key:                                 # new layout only when layers/heads change
            self.grid.clear()
            self.thumbs = {}
            heads = max((len(p["maps"][nm]) for nm in p["layers"]), default=1)
            for h in range(heads):
                self.grid.addLabel(f"head {h}", row=0, col=h + 1, size="8pt")
            for r, name in enumerate(p["layers"]):
                self.grid.addLabel(name, row=r + 1, col=0, angle=-90, size="8pt")
            for name, h in cells:
                r = p["layers"].index(name)
                vb = self.grid.addViewBox(row=r + 1, col=h + 1, lockAspect=True, enableMouse=False)
                vb.invertY(True)
                vb.setMenuEnabled(False)
                img = image_item("viridis")
                vb.addItem(img)
                self.thumbs[(name, h)] = (vb, img)
            self.grid.ci.setSpacing(3)
            self._grid_key, self._grid_n = key, None
            self._borders()
            self.grid.setToolTip(f"{len(p['layers'])} layer(s) × up to {heads} heads; click one to show it")
        dims = {name: _dims(p, name) for name in p["layers"]}
        fit = dims != self._grid_n
        self._grid_n = dims
        for (name, h), (vb, img) in self.thumbs.items():
            nq, nk = dims[name]
            img.setImage(np.asarray(p["maps"][name][h, :nq, :nk], np.float32), levels=(0, 1), autoLevels=False)
            if fit:
                vb.setRange(xRange=(0, nk), yRange=(0, nq), padding=0.02)

    def _borders(self):
        """Outline the thumbnail shown large."""
        chosen = (self.layer.currentText(), self.head.value())
        for key, (vb, _img) in self.thumbs.items():
            vb.setBorder(pg.mkPen("#D55E00", width=2) if key == chosen else None)

    # ---- interaction ----
    def cell_text(self, t, s):
        """The formula of α_{t→s} with this cell's numbers (the logits when the layer exposes q and k)."""
        a, n = self.alpha, self.alpha.shape[1]
        tok = (lambda i: f" '{self.labels[i]}'") if self.labels else (lambda i: "")
        ktok = (lambda i: f" '{self.keys[i]}'") if getattr(self, "keys", None) else (lambda i: "")
        head = f"query t = {t + 1}{tok(t)}, key s = {s + 1}{ktok(s)}: "
        keys = t + 1 if self.causal else n                                 # keys row t may attend to
        if s >= keys:
            return head + "α_{t→s} = 0: a causal mask hides key s > t from query t"
        f, sc = formula(self.score), self.score or {}
        kn = f" ({constants(sc)})" if constants(sc) else ""
        if self.logit is not None:
            z = self.logit[t, :keys]                                       # z_tu over the keys it sees
            m = float(z.max()) if z.max() > 60 else 0.0                    # keep exp() finite
            num, den = float(np.exp(z[s] - m)), float(np.exp(z - m).sum())
            sh = f"·e^{m:.4g}" if m else ""
            return (head + f"{f} = exp({z[s]:.4g}) / Σ_(u=1…{keys}) exp({term(sc, 'u')}) = {num:.4g}{sh} / "
                    f"{den:.4g}{sh} = {a[t, s]:.4g}{kn}")
        best = int(np.argmax(a[t]))
        return (head + f"{f} = {a[t, s]:.4g}; row t sums to {a[t].sum():.4g} over its {keys} keys, largest α = "
                f"{a[t, best]:.4g} at s = {best + 1}{ktok(best)}{kn}")

    def _moved(self, pos):
        if self.alpha is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        q = self.plot.getPlotItem().vb.mapSceneToView(pos)
        s, t = int(np.floor(q.x())), int(np.floor(q.y()))
        if 0 <= t < self.alpha.shape[0] and 0 <= s < self.alpha.shape[1]:
            self.hover.setText(self.cell_text(t, s))

    def _clicked(self, ev):
        for (name, h), (vb, _img) in self.thumbs.items():
            if vb.sceneBoundingRect().contains(ev.scenePos()):
                self.choose(name, h)
                return

    def choose(self, name, head):
        """Show layer `name`, head `head` in the large heatmap."""
        self.layer.setCurrentText(name)
        self.head.setValue(head)
        self._redraw()

    # ---- export ----
    def _export_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export attention heatmap", "attention.png",
                                              "PNG image (*.png);;SVG image (*.svg)")
        if path:
            try:
                self.export_image(path)
            except (OSError, ValueError) as e:
                self.note.setText(f"could not export: {e}")

    def export_image(self, path):
        """Write the large heatmap with its axes and colour bar as .svg (vector, QSvgGenerator) or .png (2× pixels)."""
        path = Path(path)
        suf = path.suffix.lower()
        if suf not in (".png", ".svg"):
            raise ValueError(f"{path.name}: export as .png or .svg")
        w, h = max(self.plot.width(), 320), max(self.plot.height(), 240)
        if suf == ".svg":
            gen = QSvgGenerator()
            gen.setFileName(str(path))
            gen.setSize(QSize(w, h))
            gen.setViewBox(QRect(0, 0, w, h))
            gen.setTitle("attention heatmap")
            painter = QPainter(gen)
            self.plot.render(painter, QRectF(0, 0, w, h))
            painter.end()
        else:
            img = QImage(2 * w, 2 * h, QImage.Format.Format_ARGB32)
            img.fill(Qt.GlobalColor.white)
            painter = QPainter(img)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            self.plot.render(painter, QRectF(0, 0, 2 * w, 2 * h))
            painter.end()
            if not img.save(str(path)):
                raise OSError(f"cannot write {path}")
        if not path.exists() or path.stat().st_size == 0:
            raise OSError(f"{path} was not written")
        return path
