"""The samples of one confusion-matrix cell: thumbnails for images, the text for text, the row's values for
tables (which samples: engine.confusion.cell)."""
import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QDialog, QLabel, QListWidget, QListWidgetItem, QTableWidget, QTableWidgetItem, QVBoxLayout

from engine import confusion as cm

SHOWN = 500              # at most this many samples are listed (the count says how many there are)
THUMB = 56               # thumbnail side in pixels


def thumbnail(a, side=THUMB):
    """A QPixmap of an (H, W) or (H, W, 3) image in 0…1, scaled to side pixels without smoothing."""
    u8 = np.ascontiguousarray((np.clip(a, 0, 1) * 255).astype(np.uint8))
    h, w = u8.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if u8.ndim == 2 else QImage.Format.Format_RGB888
    img = QImage(u8.data, w, h, u8.strides[0], fmt).copy()          # copy: the array goes away
    return QPixmap.fromImage(img).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                         Qt.TransformationMode.FastTransformation)


class CellSamples(QDialog):
    """Lists the samples with true class i predicted as class j from a confusion view's payload."""

    def __init__(self, payload, i, j, classes, parent=None):
        super().__init__(parent)
        p = payload
        self.rows = cm.cell(p["y"], p["pred"], i, j)                 # rows of y / pred (steps for per-step data)
        where = p.get("where")
        self.samples = self.rows if where is None else where[self.rows, 0]
        steps = None if where is None else where[self.rows, 1]
        x, vocab, lens, feats = p["x"], p.get("vocab"), p.get("lengths"), p.get("features")
        self.kind = cm.kind(x, vocab, feats, lens)
        what = "correct" if i == j else "mistaken"
        self.setWindowTitle(f"True {classes[i]}, predicted {classes[j]}")
        box = QVBoxLayout(self)
        n = len(self.rows)
        self.head = head = QLabel(f"{n:,} {'step' if where is not None else 'sample'}{'s' if n != 1 else ''} of true class "
                      f"{classes[i]} predicted as {classes[j]} ({what})" + (f"; the first {SHOWN} shown" if n > SHOWN else ""))
        head.setWordWrap(True)
        box.addWidget(head)
        shown = range(min(n, SHOWN))
        if self.kind == "table":
            names = [k for k, _ in cm.row(x[0], feats)]
            self.list = QTableWidget(len(shown), len(names) + 1)
            self.list.setHorizontalHeaderLabels(["sample"] + names)
            self.list.verticalHeader().hide()
            for r in shown:
                s = int(self.samples[r])
                self.list.setItem(r, 0, QTableWidgetItem(str(s)))
                for c, (_, v) in enumerate(cm.row(x[s], feats)):
                    self.list.setItem(r, c + 1, QTableWidgetItem(f"{v:.4g}"))
            self.list.resizeColumnsToContents()
        else:
            self.list = QListWidget()
            if self.kind == "image":
                self.list.setViewMode(QListWidget.ViewMode.IconMode)
                self.list.setIconSize(QSize(THUMB, THUMB))
                self.list.setGridSize(QSize(THUMB + 16, THUMB + 22))
                self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
            for r in shown:
                s = int(self.samples[r])
                at = f"#{s}" + ("" if steps is None else f", step {int(steps[r]) + 1}")
                if self.kind == "image":
                    it = QListWidgetItem(QIcon(thumbnail(cm.image(x[s]))), at)
                else:
                    body = cm.describe(x, [s], vocab, feats, lens)[0]
                    it = QListWidgetItem(f"{at}: {body}")
                it.setData(Qt.ItemDataRole.UserRole, s)
                self.list.addItem(it)
        box.addWidget(self.list, 1)
        self.resize(560, 420)
