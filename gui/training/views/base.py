"""The plot-view interface: one tab per view; views with a `key` get an epoch-end snapshot from the worker."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ...style import theme

# class colours (colour-blind friendly, Okabe-Ito then Tableau)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000",
           "#8C564B", "#7F7F7F"]

LIGHT = {"base": "#ffffff", "text": "#1f2430", "border": "#9aa1ad"}


def plot_colours():
    """Background, text and axis colours of the window's theme (gui.style), light where it has none."""
    return {k: theme.get(k, v) for k, v in LIGHT.items()}


def restyle(root):
    """Give every plot under root the theme's colours (plots are painted by pyqtgraph, not the stylesheet)."""
    c = plot_colours()
    back = pg.mkColor(c["base"])
    back.setAlpha(215)
    for view in root.findChildren(pg.GraphicsView):
        view.setBackground(c["base"])
        for item in view.scene().items():
            if isinstance(item, pg.AxisItem):
                item.setPen(c["border"])
                item.setTextPen(c["text"])
            elif isinstance(item, pg.LegendItem):
                item.setBrush(back)
                item.setLabelTextColor(c["text"])
            elif isinstance(item, pg.LabelItem) and not isinstance(item.parentItem(), pg.ItemSample):
                item.setText(item.text, color=c["text"])


def plain_axes(plot):
    """Axes without an SI prefix: an empty image plot spans ±0.5, which pyqtgraph labels "-400 … (x0.001)"."""
    for ax in ("bottom", "left"):
        plot.getAxis(ax).enableAutoSIPrefix(False)


def colour(i):
    return PALETTE[i % len(PALETTE)]


class ClassScatter:
    """Points coloured by class as one scatter item per class (one brush each: cheap to update)."""

    def __init__(self, plot, size=6, pen=None):
        self.plot, self.size, self.pen, self.items = plot, size, pen, []
        self.xy = np.zeros((0, 2))                       # the points in the order given, for callers and tests

    def set(self, x, y, labels, n_classes):
        """Show points (x, y); labels are class ids (ignored for regression, n_classes = 0)."""
        self.xy = np.c_[x, y]
        groups = max(n_classes, 1)
        while len(self.items) < groups:
            it = pg.ScatterPlotItem(size=self.size, pen=self.pen, brush=pg.mkBrush(colour(len(self.items))))
            self.plot.addItem(it)
            self.items.append(it)
        lab = labels.astype(int) if n_classes and labels.ndim == 1 else np.zeros(len(x), int)
        for c, it in enumerate(self.items):
            m = lab == c
            it.setData(x=x[m], y=y[m])

    def clear(self):
        for it in self.items:
            it.clear()
        self.xy = np.zeros((0, 2))


class View(QWidget):
    """A live plot. Subclasses override what they need; all methods run on the UI thread except compute."""

    title = "View"
    key = None                      # probe key: when set, compute() runs in the worker at epoch ends
    reprobe = Signal(str)           # an option changed: recompute this view's snapshot now

    @staticmethod
    def compute(model, probe, options):
        """Worker thread: a small payload (numpy arrays) from the model at an epoch end, or None."""
        return None

    def __init__(self, parent=None):
        super().__init__(parent)
        self.box = QVBoxLayout(self)
        self.box.setContentsMargins(2, 2, 2, 2)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555;")
        self.ctx = {}
        self.options = {}           # shared with the running job (the dock sets the same dict on every view)
        self._last = None           # the latest compute() payload not drawn yet

    def changeEvent(self, e):
        if e.type() == QEvent.Type.StyleChange:                # the window switched theme
            restyle(self)
        super().changeEvent(e)

    def showEvent(self, e):
        restyle(self)
        super().showEvent(e)

    def applies(self, ctx):
        """Whether the view makes sense for this run (e.g. the boundary needs 2-D inputs)."""
        return True

    def begin(self, ctx):
        """A new run (or the first fold of a k-fold run) starts; ctx describes data and model."""
        self.ctx = ctx

    def fold(self, fold, ctx):
        """Another fold of a k-fold run starts."""

    def batches(self, fold, rows):
        """rows: (n, 4) float array of (epoch, step, loss, accuracy) for the batches since the last call."""

    def epoch(self, fold, epoch, step, data):
        """An epoch ended; data holds train/val loss and accuracy."""

    def snapshot(self, fold, payload):
        """This view's compute() result arrived (kept until the next refresh takes it)."""
        self._last = payload

    def take(self):
        """The payload that arrived since the last refresh, or None; an {"error": …} payload goes to the note."""
        p, self._last = self._last, None
        if p is not None and "error" in p:
            self.note.setText(p["error"])
            return None
        return p

    def finish(self, fold, result):
        """A run (or fold) ended with the trainer's summary."""

    def refresh(self):
        """Redraw after a drain in which something changed (called at most once per timer tick)."""
