"""Try it: draw a digit, open an image, type a sentence or pick a row of the data, and see what the trained
model predicts (class probabilities or the value) and, for sequence models, its attention on that input."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSizePolicy,
                               QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from engine import tryit
from engine.errors import LayerboardError


class DrawPad(QWidget):
    """A black square to draw on with a thick white pen (as MNIST's digits are written); emits drawn()."""

    drawn = Signal()

    def __init__(self, side=224, parent=None):
        super().__init__(parent)
        self.setFixedSize(side, side)
        self.image = QImage(side, side, QImage.Format.Format_Grayscale8)
        self.clear()
        self.last = None

    def clear(self):
        self.image.fill(QColor("black"))
        self.update()

    def pixels(self):
        """(H, W) float32 in 0…1."""
        ptr = self.image.constBits()
        a = np.frombuffer(ptr, np.uint8, count=self.image.sizeInBytes()).reshape(self.image.height(), -1)
        return a[:, :self.image.width()].astype(np.float32) / 255

    def stroke(self, a, b):
        p = QPainter(self.image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor("white"), self.width() / 12, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        p.drawLine(a, b)
        p.end()
        self.update()

    def mousePressEvent(self, e):
        self.last = e.position().toPoint()
        self.stroke(self.last, self.last + QPoint(1, 0))

    def mouseMoveEvent(self, e):
        if self.last is not None:
            pt = e.position().toPoint()
            self.stroke(self.last, pt)
            self.last = pt

    def mouseReleaseEvent(self, e):
        self.last = None
        self.drawn.emit()

    def paintEvent(self, e):
        QPainter(self).drawImage(0, 0, self.image)


class TryItPanel(QWidget):
    """Feeds one input of the user's own to the last trained model; set_model() after each training run."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model, self.classes, self.data = None, None, None
        self.translating = False
        box = QVBoxLayout(self)
        self.tabs = QTabWidget()
        draw = QWidget()
        d = QVBoxLayout(draw)
        self.pad = DrawPad()
        self.pad.drawn.connect(self.predict_drawing)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.pad.clear)
        d.addWidget(self.pad, 0, Qt.AlignmentFlag.AlignHCenter)
        d.addWidget(clear)
        self.tabs.addTab(draw, "Draw")
        image = QWidget()
        i = QVBoxLayout(image)
        pick = QPushButton("Open an image…")
        pick.clicked.connect(self.pick_image)
        i.addWidget(pick)
        i.addStretch(1)
        self.tabs.addTab(image, "Image file")
        text = QWidget()
        t = QHBoxLayout(text)
        self.text = QLineEdit(placeholderText="Type a sentence and press Enter")
        self.text.returnPressed.connect(self.predict_text)
        t.addWidget(self.text)
        self.beam = QSpinBox(prefix="beam ", minimum=1, maximum=16)               # translation: under the tabs
        self.beam.setToolTip("Translation: 1 = greedy (the most probable token at each step); k > 1 keeps the k "
                             "most probable beginnings (beam search)")
        self.beam.valueChanged.connect(lambda _k: self.predict_row(self.row.value()) if self.tabs.currentIndex() == 3
                                       else self.predict_text())
        self.tabs.addTab(text, "Text")
        row = QWidget()
        r = QHBoxLayout(row)
        self.row = QSpinBox()
        self.row.setPrefix("validation sample ")
        self.row.valueChanged.connect(self.predict_row)
        r.addWidget(self.row)
        self.tabs.addTab(row, "Data row")
        self.tabs.currentChanged.connect(self._fit_tabs)
        box.addWidget(self.tabs)
        under = QHBoxLayout()
        self.beam.hide()                                      # shown for models trained on sentence pairs
        under.addWidget(self.beam)
        under.addStretch(1)
        box.addLayout(under)
        self.answer = QLabel("Train a model, then try it here.")
        self.answer.setWordWrap(True)
        self.answer.setStyleSheet("font-size: 14pt;")
        box.addWidget(self.answer)
        self.bars = pg.PlotWidget(background="w")
        self.bars.setMinimumHeight(140)
        self.bars.setLabel("left", "probability")
        box.addWidget(self.bars, 1)
        self.heat = pg.ImageView()
        self.heat.ui.roiBtn.hide()
        self.heat.ui.menuBtn.hide()
        self.heat.setMinimumHeight(160)
        self.heat.hide()
        box.addWidget(self.heat, 1)
        self.align = Alignment()
        self.align.hide()
        box.addWidget(self.align, 2)
        self.result = None

    def set_model(self, model, classes=None, data=None):
        """The trained model (evaluation mode), its class names and the validation Dataset for Data row."""
        self.model, self.classes, self.data = model, classes, data
        self.row.setMaximum(max(0, len(data) - 1) if data is not None else 0)
        text = bool(model is not None and model.meta.get("vocab"))
        self.translating = bool(model is not None and model.meta.get("target_vocab"))
        self.beam.setVisible(self.translating)
        self.bars.setVisible(not self.translating)
        self.align.setVisible(False)
        self.text.setPlaceholderText("Type a sentence to translate and press Enter" if self.translating
                                     else "Type a sentence and press Enter")
        self.tabs.setTabEnabled(2, text)
        image = model is not None and (len(model.input_shape) == 3 or _square(model.input_shape))
        self.tabs.setTabEnabled(0, bool(image))
        self.tabs.setTabEnabled(1, bool(image))
        self.tabs.setCurrentIndex(2 if text else (0 if image else 3))
        self.answer.setText("Draw, type or pick an input." if model is not None else "Train a model first.")

    def _fit_tabs(self, current):
        """The tab area as tall as the shown page (the drawing pad's height only while drawing)."""
        for i in range(self.tabs.count()):
            page = self.tabs.widget(i)
            fit = QSizePolicy.Policy.Preferred if i == current else QSizePolicy.Policy.Ignored
            page.setSizePolicy(fit, fit)
            page.updateGeometry()
        self.tabs.setMaximumHeight(self.tabs.tabBar().sizeHint().height() +
                                   self.tabs.widget(current).sizeHint().height() + 12 if current >= 0 else 16777215)

    def predict_drawing(self):
        self._run(lambda: (tryit.image_sample(self.pad.pixels(), self.model.input_shape), None))

    def pick_image(self):
        f, _ = QFileDialog.getOpenFileName(self, "Open an image", "", "Images (*.png *.jpg *.jpeg *.bmp *.gif)")
        if f:
            self.predict_image_file(f)

    def predict_image_file(self, f):
        def sample():
            from PIL import Image, UnidentifiedImageError
            try:
                img = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255
            except (OSError, UnidentifiedImageError) as e:
                raise LayerboardError(f"cannot read {f}: {e}") from None
            grey = img.mean(axis=2)
            if grey.mean() > 0.5:                                     # dark ink on white paper → MNIST's white on black
                img = 1 - img
            return tryit.image_sample(img, self.model.input_shape), None
        self._run(sample)

    def predict_text(self):
        if self.translating:
            if self.text.text().strip():
                self._translate(text=self.text.text())
            return
        self._run(lambda: tryit.text_sample(self.text.text(), self.model.meta))

    def predict_row(self, i):
        if self.data is not None and len(self.data):
            j = min(i, len(self.data) - 1)
            if self.translating and self.data.target_lengths is not None:
                from engine.data.pairs import decode_targets
                n = int(self.data.target_lengths[j]) - 1                    # the target without <end>
                truth = decode_targets([self.data.y[j, :n].tolist()], self.model.meta)[0]
                self._translate(ids=np.asarray(self.data.x[j:j + 1]), lengths=self.data.lengths[j:j + 1],
                                truth=truth)
                return
            lg = None if self.data.lengths is None else np.asarray(self.data.lengths[j:j + 1])
            self._run(lambda: (np.asarray(self.data.x[j:j + 1], np.float32), lg), truth=self.data.y[j])

    def _run(self, make, truth=None):
        if self.model is None:
            self.answer.setText("Train a model first.")
            return
        try:
            x, lengths = make()
            self.result = tryit.predict(self.model, x, lengths, self.classes)
        except LayerboardError as e:
            self.answer.setText(str(e))
            return
        self.show_result(self.result, truth)

    def _translate(self, truth=None, **source):
        if self.model is None:
            self.answer.setText("Train a model first.")
            return
        try:
            self.result = tryit.translation(self.model, k=self.beam.value(), **source)
        except LayerboardError as e:
            self.answer.setText(str(e))
            return
        r = self.result
        mark = "" if truth is None else (" ✓" if r["text"] == truth else f" — true: {truth}")
        self.answer.setText(f"→ <b>{_html(r['text']) or '(nothing)'}</b>{_html(mark)}")
        self.heat.hide()
        self.align.show_maps(r["maps"], r["source_tokens"], r["target_tokens"])
        self.align.setVisible(bool(r["maps"]))

    def show_result(self, r, truth=None):
        self.bars.clear()
        if r["kind"] == "classes":
            p, k = r["probabilities"], r["top"]
            self.answer.setText(f"<b>{r['labels'][k]}</b> ({100 * p[k]:.1f} %)" +
                                (f" — true: {self._label(truth, r)}" if truth is not None else ""))
            self.bars.addItem(pg.BarGraphItem(x=np.arange(len(p)), height=p, width=0.7,
                                              brushes=[pg.mkBrush("#1f77b4" if i != k else "#d62728")
                                                       for i in range(len(p))]))
            self.bars.getAxis("bottom").setTicks([list(enumerate(r["labels"]))])
            self.bars.setYRange(0, 1)
        else:
            v = r["value"]
            self.answer.setText("predicted: " + ", ".join(f"{x:.4g}" for x in np.ravel(v)[:8]))
        att = next((t["attention"] for t in r["taps"].values() if "attention" in t), None)
        hid = next((t["hidden"] for t in r["taps"].values() if "hidden" in t), None)
        m = att.mean(axis=0) if att is not None else (hid.T if hid is not None else None)
        if m is not None:
            n = r["lengths"] or m.shape[-1]
            self.heat.setImage((m[:n, :n] if att is not None else m[:, :n]).T, autoLevels=True)
            self.heat.show()
        else:
            self.heat.hide()

    def _label(self, y, r):
        try:
            return r["labels"][int(y)]
        except (TypeError, ValueError, IndexError):
            return str(y)


class Alignment(QWidget):
    """Cross-attention of one translation: target tokens (rows, top to bottom) × source tokens (columns), for a
    chosen cross-attention node and head or the mean of its heads."""

    def __init__(self, parent=None):
        super().__init__(parent)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        self.pick = QComboBox()
        self.pick.currentIndexChanged.connect(self.draw)
        box.addWidget(self.pick)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(200)
        self.plot.invertY(True)
        self.plot.setMouseEnabled(False, False)
        self.plot.setLabel("bottom", "source")
        self.plot.setLabel("left", "target (generated)")
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.colormap.get("viridis"))
        self.plot.addItem(self.image)
        box.addWidget(self.plot, 1)
        self.maps, self.src, self.tgt = {}, [], []

    def show_maps(self, maps, src, tgt):
        """maps: {node: (heads, len(tgt), len(src))}."""
        self.maps, self.src, self.tgt = maps, src, tgt
        self.pick.blockSignals(True)
        self.pick.clear()
        last = 0
        for name, a in maps.items():
            last = self.pick.count()                           # the last node's mean: shown first
            self.pick.addItem(f"{name}: mean of {len(a)} heads", (name, None))
            for h in range(len(a)):
                self.pick.addItem(f"{name}: head {h + 1}", (name, h))
        self.pick.setCurrentIndex(last)
        self.pick.blockSignals(False)
        self.draw()

    def draw(self):
        which = self.pick.currentData()
        if not which:
            self.image.clear()
            return
        name, h = which
        a = self.maps[name]
        m = a.mean(axis=0) if h is None else a[h]                            # (target steps, source steps)
        self.image.setImage(m.T, levels=(0, max(float(m.max()), 1e-6)))    # x: source, y: target
        show = (lambda t: "␣" if t == " " else t)
        self.plot.getAxis("bottom").setTicks([[(i + 0.5, show(t)) for i, t in enumerate(self.src)]])
        self.plot.getAxis("left").setTicks([[(j + 0.5, show(t)) for j, t in enumerate(self.tgt)]])
        self.plot.setXRange(0, len(self.src), padding=0)
        self.plot.setYRange(0, len(self.tgt), padding=0)


def _html(t):
    return t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _square(shape):
    return len(shape) == 1 and round(shape[0] ** 0.5) ** 2 == shape[0] and shape[0] >= 16
