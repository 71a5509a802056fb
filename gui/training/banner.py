"""The diagnosis strip: a finding (e.g. overfitting) above the plots, with remedies that apply themselves as edits."""
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout

from engine.errors import LayerboardError
from engine.layers import REGISTRY
from engine.layers.base import Fix

from ..style import THEMES, theme

# background, border, text: dark text on a pale amber strip (light), pale text on a dark amber strip (dark)
COLOURS = {"light": ("#fff4e0", "#e0b26a", "#3d2b00"), "dark": ("#3b3120", "#8f7137", "#f4e6c8")}
EARLY_STOP_PATIENCE, L2, DROPOUT = 10, 1e-3, 0.3
BUTTONED = ("early stopping", "l2", "dropout", "augmentation")     # remedies that are buttons here


def widest_dense(graph):
    """The Dense node with the most units (None if there is none)."""
    dense = [(n.config.get("units", REGISTRY["Dense"].hparams[0].default), name)
             for name, n in graph.nodes.items() if n.type == "Dense"]
    return max(dense)[1] if dense else None


def augmentation(doc, dataset=None):
    """An augment setting that suits the data: shifts and small rotations for images, else a little noise."""
    images = dataset is not None and getattr(dataset.x, "ndim", 2) == 4
    return {"shift": 2, "rotate": 10} if images else {"noise": 0.05}


def remedies(doc, dataset=None):
    """[(button text, tooltip, fn())] for the remedies that are one edit each in this project."""
    t, out = doc.project.training, []
    if not t.get("patience"):
        out.append(("Early stopping", f"Stop when the validation loss has not improved for {EARLY_STOP_PATIENCE} "
                    "epochs and keep the best weights", lambda: doc.set_training("patience", EARLY_STOP_PATIENCE)))
    if not t.get("weight_decay"):
        out.append((f"L2 λ = {L2:g}", f"Add λ·‖W‖² to the loss with λ = {L2:g} (weight decay)",
                    lambda: doc.set_training("weight_decay", L2)))
    d = widest_dense(doc.graph)
    if d is not None and doc.graph.inputs_of(d) and \
            not any(doc.graph.nodes[s].type == "Dropout" for s in doc.graph.inputs_of(d)):
        fix = Fix("insert_before", f"insert a Dropout (rate {DROPOUT}) before {d}", "Dropout", (("rate", DROPOUT),))
        out.append((f"Dropout before {d}", f"Insert a Dropout layer (rate {DROPOUT}) before {d}, the widest "
                    "Dense layer", lambda: doc.apply_fix(d, fix)))
    if not doc.project.dataset.get("augment"):
        aug = augmentation(doc, dataset)
        what = ", ".join(f"{k} {v}" for k, v in aug.items())
        out.append(("Augment data", f"Transform each training batch at random ({what}); validation data stays as is",
                    lambda: doc.set_dataset(dict(doc.project.dataset, augment=aug))))
    return out


class Banner(QFrame):
    """A strip of its own above the plots (it never covers one): the diagnosis, wrapped, and remedy buttons."""

    message = Signal(str)                 # what an applied remedy did (or why it could not)

    def __init__(self, document=None, parent=None):
        super().__init__(parent)
        self.setObjectName("diagnosis")
        self.doc, self.dataset, self._full, self.buttons = document, None, "", []
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        col = QVBoxLayout()
        col.setSpacing(3)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col.addWidget(self.label)
        self.fixes = QHBoxLayout()
        self.fixes.setSpacing(4)
        self.fix_label = QLabel("Try:")
        self.fixes.addWidget(self.fix_label)
        self.fixes.addStretch(1)
        col.addLayout(self.fixes)
        self.other = QLabel("")
        self.other.setWordWrap(True)
        col.addWidget(self.other)
        row.addLayout(col, 1)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Hide the diagnosis")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self._restyle()
        self.hide()

    def text(self):
        """The whole diagnosis and remedies."""
        return self._full

    def show_finding(self, message, remedies_text=(), fold=None):
        where = f"Fold {fold + 1}: " if fold is not None else ""
        self.label.setText(where + message)
        self._fill()
        rest = [r for r in remedies_text if not any(w in r.lower() for w in BUTTONED)]
        self.other.setText(("Also worth trying: " + ", ".join(rest) + ".") if rest else "")
        self.other.setVisible(bool(rest))
        self._full = "\n".join([where + message, "Remedies: " + " · ".join(remedies_text)])
        self.setToolTip(self._full)
        self.show()

    def _fill(self):
        for b in self.buttons:
            self.fixes.removeWidget(b)
            b.deleteLater()
        self.buttons = []
        if self.doc is None:
            return
        for i, (text, tip, fn) in enumerate(remedies(self.doc, self.dataset)):
            b = QPushButton(text)
            b.setToolTip(tip + " (undo with Ctrl+Z)")
            b.clicked.connect(lambda _c=False, fn=fn, b=b: self._apply(fn, b))
            self.fixes.insertWidget(1 + i, b)
            self.buttons.append(b)
        self.fix_label.setVisible(bool(self.buttons))

    def _apply(self, fn, button):
        try:
            fn()
        except LayerboardError as e:
            self.message.emit(f"{button.text()}: {e}")
            return
        button.setEnabled(False)
        self.message.emit(f"{button.toolTip().split(' (undo')[0]}: applied to the next run (Ctrl+Z undoes it)")

    def _restyle(self):
        dark = theme.get("base") == THEMES["dark"]["base"]
        bg, border, fg = COLOURS["dark" if dark else "light"]
        css = (f"QFrame#diagnosis {{ background: {bg}; border: 1px solid {border}; border-radius: 3px; }}"
                           f"QFrame#diagnosis QLabel {{ color: {fg}; background: transparent; }}")
        if css != self.styleSheet():                  # setting it sends a StyleChange: only when it differs
            self.setStyleSheet(css)

    def changeEvent(self, e):
        if e.type() == QEvent.Type.StyleChange:
            self._restyle()
        super().changeEvent(e)

    def showEvent(self, e):
        self._restyle()
        super().showEvent(e)
