"""Try it: draw a digit, open an image, type a sentence or pick a row of the data, and see what the trained
model predicts (class probabilities or the value) and, for sequence models, its attention on that input."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QTabWidget,
                               QVBoxLayout, QWidget)

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
        self.tabs.addTab(text, "Text")
        row = QWidget()
        r = QHBoxLayout(row)
        self.row = QSpinBox()
        self.row.setPrefix("validation sample ")
        self.row.valueChanged.connect(self.predict_row)
        r.addWidget(self.row)
        self.tabs.addTab(row, "Data row")
        box.addWidget(self.tabs)
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
        self.result = None

    def set_model(self, model, classes=None, data=None):
        """The trained model (evaluation mode), its class names and the validation Dataset for Data row."""
        self.model, self.classes, self.data = model, classes, data
        self.row.setMaximum(max(0, len(data) - 1) if data is not None else 0)
        text = bool(model is not None and model.meta.get("vocab"))
        self.tabs.setTabEnabled(2, text)
        image = model is not None and (len(model.input_shape) == 3 or _square(model.input_shape))
        self.tabs.setTabEnabled(0, bool(image))
        self.tabs.setTabEnabled(1, bool(image))
        self.tabs.setCurrentIndex(2 if text else (0 if image else 3))
        self.answer.setText("Draw, type or pick an input." if model is not None else "Train a model first.")

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
        self._run(lambda: tryit.text_sample(self.text.text(), self.model.meta))

    def predict_row(self, i):
        if self.data is not None and len(self.data):
            j = min(i, len(self.data) - 1)
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


def _square(shape):
    return len(shape) == 1 and round(shape[0] ** 0.5) ** 2 == shape[0] and shape[0] >= 16
