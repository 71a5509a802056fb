"""One widget per declared hyperparameter (engine.hparams.HP), shared by the inspector and the training form."""
import math

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QSpinBox, QVBoxLayout, QWidget

from engine.errors import ConfigError

INT_MAX = 2**31 - 1
BAD = "border: 1px solid #d32f2f;"


def parse_ints(text):
    """'1, 28, 28' → [1, 28, 28]; ValueError with a readable message."""
    parts = [p for p in text.replace("×", ",").replace("x", ",").replace(" ", ",").split(",") if p]
    if not parts:
        raise ValueError("enter one or more whole numbers, e.g. 1, 28, 28")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"'{text}' is not a list of whole numbers (e.g. 1, 28, 28)") from None


def parse_or_none(text):
    try:
        return parse_ints(text)
    except ValueError:
        return None


def parse_float(text, hp, label=None):
    """The checked finite float in text, or ConfigError with one line naming the field."""
    at = label or hp.name
    try:
        v = float(text.strip())
    except ValueError:
        raise ConfigError(f"{at}: {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise ConfigError(f"{at} must be a finite number, got {text.strip()}")
    return hp.check(v, "")


def tip(hp):
    """The HP's doc and its range."""
    rng = ""
    if hp.kind in ("int", "float") and (hp.min is not None or hp.max is not None):
        rng = (f" (from {hp.min:g} to {hp.max:g})" if hp.min is not None and hp.max is not None else
               f" (≥ {hp.min:g})" if hp.min is not None else f" (≤ {hp.max:g})")
    return hp.doc + rng


class HPEditor(QWidget):
    """A control for one HP; emits committed(name, value) after a valid edit. A value the HP refuses
    (NaN, inf, out of range, not a number) gets a red border and a one-line reason below; it is never emitted."""

    committed = Signal(str, object)
    refused = Signal(str)

    def __init__(self, hp, value=None, label=None, parent=None):
        super().__init__(parent)
        self.h, self.label = hp, label or hp.name
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        k = hp.kind
        if k == "choice":
            w = QComboBox()
            w.addItems([str(c) for c in hp.choices])
            w.activated.connect(lambda i: self._commit(hp.choices[i]))
        elif k == "int":
            w = QSpinBox()
            w.setRange(int(max(hp.min, -INT_MAX)) if hp.min is not None else -INT_MAX,
                       int(min(hp.max, INT_MAX)) if hp.max is not None else INT_MAX)
            w.setKeyboardTracking(False)
            w.valueChanged.connect(lambda v: self._commit(int(v)))
        elif k == "bool":
            w = QCheckBox()
            w.toggled.connect(self._commit)
        else:
            w = QLineEdit()
            if k == "ints":
                w.setPlaceholderText("e.g. 1, 28, 28")
            w.editingFinished.connect(self._text)
        w.setToolTip(tip(hp))
        self.widget = w
        self.reason = QLabel()
        self.reason.setObjectName("error")
        self.reason.setWordWrap(True)
        self.reason.hide()
        self.row = QHBoxLayout()                          # the control, then add_side()'s widgets
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.addWidget(w, 1)
        box.addLayout(self.row)
        box.addWidget(self.reason)
        if value is not None:
            self.set_value(value)

    def _text(self):
        t = self.widget.text()
        try:
            if self.h.kind == "float":
                v = parse_float(t, self.h, self.label)
            elif self.h.kind == "ints" and t.strip().lower() == "auto" and self.h.name == "shape":
                v = "auto"                                  # an Input's shape from the dataset
            elif self.h.kind == "ints":
                try:
                    v = list(self.h.check(parse_ints(t), ""))
                except ValueError as e:
                    raise ConfigError(f"{self.label}: {e}") from None
            else:
                v = self.h.check(t, "")
        except ConfigError as e:
            msg = str(e)
            if msg.startswith(self.h.name + " "):
                msg = self.label + msg[len(self.h.name):]
            return self.mark(msg)
        self.mark(None)
        self._commit(v)

    def mark(self, msg):
        """Show (msg) or clear (None) the refusal: red border, the reason below, the reason as tooltip."""
        w = self.widget
        w.setStyleSheet(BAD if msg else "")
        w.setToolTip(msg or tip(self.h))
        w.setProperty("invalid", bool(msg))
        self.reason.setText(msg or "")
        self.reason.setVisible(bool(msg))
        if msg:
            self.refused.emit(msg)

    def add_side(self, w, below=None):
        """Put w to the right of the control (e.g. the search-range button), and `below` under it."""
        self.row.addWidget(w)
        if below is not None:
            self.layout().addWidget(below)

    @property
    def invalid(self):
        return bool(self.widget.property("invalid"))

    def _commit(self, v):
        self.committed.emit(self.h.name, v)

    def set_value(self, v):
        """Show v without emitting; a line being edited (focused) or showing a refusal keeps its text."""
        w, k = self.widget, self.h.kind
        w.blockSignals(True)
        try:
            if k == "choice":
                w.setCurrentIndex(list(self.h.choices).index(v) if v in self.h.choices else 0)
            elif k == "int":
                if w.value() != v:
                    w.setValue(int(min(max(v, w.minimum()), w.maximum())))
            elif k == "bool":
                w.setChecked(bool(v))
            elif not w.hasFocus() and not self.invalid:
                if k == "float":
                    text = f"{v:.8g}"
                    if _same_float(w.text(), v):
                        text = w.text()
                elif k == "ints":
                    text = "auto" if v == "auto" else ", ".join(map(str, v))
                    if parse_or_none(w.text()) == list(v):
                        text = w.text()
                else:
                    text = str(v)
                if w.text() != text:
                    w.setText(text)
        finally:
            w.blockSignals(False)


def _same_float(text, v):
    try:
        return float(text) == v
    except ValueError:
        return False
