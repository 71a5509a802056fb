"""The inspector: edits the selected node's name and hyperparameters with widgets generated from its HPs."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDockWidget, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit,
                               QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from engine.errors import LayerboardError
from engine.layers import REGISTRY, fmt

INT_MAX = 2**31 - 1


def parse_ints(text):
    """'1, 28, 28' → [1, 28, 28]; ValueError with a readable message."""
    parts = [p for p in text.replace("×", ",").replace("x", ",").replace(" ", ",").split(",") if p]
    if not parts:
        raise ValueError("enter one or more whole numbers, e.g. 1, 28, 28")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"'{text}' is not a list of whole numbers (e.g. 1, 28, 28)") from None


class FloatBox(QDoubleSpinBox):
    """A float spin box that shows 0.3 and 1e-05 as such (not 0.30000000) and accepts either spelling."""

    def textFromValue(self, v):
        return f"{v:.8g}"

    def valueFromText(self, text):
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text, pos):
        try:
            float(text)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            return QValidator.State.Intermediate, text, pos


def make_editor(hp, value, commit):
    """A widget for one declared HP; commit(value) is called with the new value when the user edits it."""
    k = hp.kind
    if k == "int":
        w = QSpinBox()
        w.setRange(int(max(hp.min, -INT_MAX)) if hp.min is not None else -INT_MAX,
                   int(min(hp.max, INT_MAX)) if hp.max is not None else INT_MAX)
        w.setValue(int(value))
        w.setKeyboardTracking(False)
        w.valueChanged.connect(commit)
    elif k == "float":
        w = FloatBox()
        w.setDecimals(12)
        w.setRange(hp.min if hp.min is not None else -1e9, hp.max if hp.max is not None else 1e9)
        w.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        w.setValue(float(value))
        w.setKeyboardTracking(False)
        w.valueChanged.connect(commit)
    elif k == "bool":
        w = QCheckBox()
        w.setChecked(bool(value))
        w.toggled.connect(commit)
    elif k == "choice":
        w = QComboBox()
        w.addItems([str(c) for c in hp.choices])
        w.setCurrentIndex(list(hp.choices).index(value) if value in hp.choices else 0)
        w.currentIndexChanged.connect(lambda i: commit(hp.choices[i]))
    elif k == "ints":
        w = QLineEdit(", ".join(map(str, value)))
        w.setPlaceholderText("e.g. 1, 28, 28")

        def done():
            try:
                commit(parse_ints(w.text()))
            except ValueError as e:
                commit(e)
        w.editingFinished.connect(done)
    else:
        w = QLineEdit(str(value))
        w.editingFinished.connect(lambda: commit(w.text()))
    w.setToolTip(hp.doc + (f" (from {hp.min:g} to {hp.max:g})" if hp.min is not None and hp.max is not None
                           and k in ("int", "float") else ""))
    return w


class Inspector(QDockWidget):
    """Form for one node: rename, hyperparameters, its shape/params/MACs, and the error with a fix button."""

    message = Signal(str)

    def __init__(self, doc, parent=None):
        super().__init__("Inspector", parent)
        self.setObjectName("inspector")
        self.doc, self.name, self.editors = doc, None, {}
        self.area = QScrollArea()
        self.area.setWidgetResizable(True)
        self.setWidget(self.area)
        doc.changed.connect(self.refresh)
        doc.reset.connect(lambda: self.show_node(None))
        doc.node_renamed.connect(self._renamed)
        doc.locked_changed.connect(lambda on: self.area.widget() and self.area.widget().setEnabled(not on))
        self.show_node(None)

    def _renamed(self, old, new):
        if self.name == old:
            self.name = new

    def show_node(self, name):
        """Build the form for node `name` (None: a hint)."""
        self.name, self.editors = name, {}
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(10, 10, 10, 10)
        if name is None or name not in self.doc.graph.nodes:
            self.name = None
            hint = QLabel("Select a layer to edit it.\n\nDrag layers from the palette onto the canvas and "
                          "connect an output port (right) to an input port (left).")
            hint.setObjectName("muted")
            hint.setWordWrap(True)
            lay.addWidget(hint)
            lay.addStretch()
            self.area.setWidget(w)
            return
        node = self.doc.graph.nodes[name]
        cls = REGISTRY[node.type]
        title = QLabel(node.type)
        title.setObjectName("heading")
        doc = QLabel(cls.doc)
        doc.setObjectName("muted")
        doc.setWordWrap(True)
        lay.addWidget(title)
        lay.addWidget(doc)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.name_edit = QLineEdit(name)
        self.name_edit.editingFinished.connect(self._rename)
        form.addRow("name", self.name_edit)
        for hp in cls.hparams:
            ed = make_editor(hp, node.config.get(hp.name, hp.default), lambda v, k=hp.name: self._commit(k, v))
            self.editors[hp.name] = ed
            form.addRow(hp.name, ed)
        lay.addLayout(form)
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fix_button = QPushButton()
        self.fix_button.setObjectName("fix")
        self.fix_button.clicked.connect(self.apply_fix)
        self.note = QLabel()
        self.note.setObjectName("error")
        self.note.setWordWrap(True)
        for x in (self.stats, self.error, self.fix_button, self.note):
            lay.addWidget(x)
        lay.addStretch()
        w.setEnabled(not self.doc.locked)
        self.area.setWidget(w)
        self.note.hide()
        self.refresh()

    def refresh(self):
        """Re-read values and analysis of the shown node (after any edit, undo or redo)."""
        if self.name is None:
            return
        if self.name not in self.doc.graph.nodes:
            return self.show_node(None)
        node = self.doc.graph.nodes[self.name]
        if self.name_edit.text() != self.name and not self.name_edit.hasFocus():
            self.name_edit.setText(self.name)
        for hp in REGISTRY[node.type].hparams:
            self._set_widget(self.editors[hp.name], hp, node.config.get(hp.name, hp.default))
        info = self.doc.infos.get(self.name)
        if info is None:
            return
        if info.ok:
            lines = [f"output {fmt(info.shape)}", f"{info.params:,} parameters", f"{info.macs:,} MACs per sample"]
            if info.field:
                lines.append(f"receptive field {info.field[0]}×{info.field[1]}, stride {info.stride[0]}×{info.stride[1]}")
            self.stats.setText(" · ".join(lines))
        else:
            self.stats.setText(f"no output shape: '{info.blocked}' upstream has an error" if info.blocked else "")
        self.error.setVisible(bool(info.error))
        self.error.setText(f"⚠ {info.error}" if info.error else "")
        self.fix_button.setVisible(info.fix is not None)
        if info.fix is not None:
            self.fix_button.setText(f"Fix: {info.fix.text}")

    @staticmethod
    def _set_widget(w, hp, v):
        w.blockSignals(True)
        if hp.kind in ("int", "float"):
            if w.value() != v:
                w.setValue(v)
        elif hp.kind == "bool":
            w.setChecked(bool(v))
        elif hp.kind == "choice":
            w.setCurrentIndex(list(hp.choices).index(v) if v in hp.choices else 0)
        elif hp.kind == "ints":
            text = ", ".join(map(str, v))
            if parse_or_none(w.text()) != list(v):
                w.setText(text)
            w.setProperty("invalid", False)
            w.style().polish(w)
        else:
            if w.text() != v:
                w.setText(v)
        w.blockSignals(False)

    def _commit(self, key, value):
        if self.name is None:
            return
        try:
            if isinstance(value, Exception):
                raise LayerboardError(str(value))
            self.doc.set_hparam(self.name, key, value)
            self.note.hide()
        except LayerboardError as e:
            self.note.setText(str(e))
            self.note.show()
            self.message.emit(str(e))
            w = self.editors.get(key)
            if isinstance(w, QLineEdit):
                w.setProperty("invalid", True)
                w.style().polish(w)
                return                      # keep the bad text visible for correction
            self.refresh()

    def _rename(self):
        new = self.name_edit.text().strip()
        if self.name is None or new == self.name:
            return
        try:
            self.doc.rename(self.name, new)
            self.note.hide()
        except LayerboardError as e:
            self.note.setText(str(e))
            self.note.show()
            self.message.emit(str(e))
            self.name_edit.setText(self.name)

    def apply_fix(self):
        info = self.doc.infos.get(self.name)
        if info is None or info.fix is None:
            return
        try:
            self.doc.apply_fix(self.name, info.fix)
        except LayerboardError as e:
            self.message.emit(str(e))


def parse_or_none(text):
    try:
        return parse_ints(text)
    except ValueError:
        return None
