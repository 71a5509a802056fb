"""The inspector: edits the selected node's name and hyperparameters with widgets generated from its HPs."""
import re

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (QDockWidget, QFormLayout, QHBoxLayout, QLabel, QLayout, QLineEdit, QPushButton, QScrollArea,
                               QSizePolicy, QVBoxLayout, QWidget)

from engine import structure
from engine.errors import LayerboardError
from engine.layers import REGISTRY, fmt
from engine.receptive import dims, shown

from .editors import HPEditor
from .search_marks import MARK, SEARCHABLE, BlockPanel, RangeButton, ranges_of
from .style import theme

def breakable(text):
    """Text whose long paths and identifiers (runs of > 24 characters without a space) may wrap: a
    zero-width space after each / \\ _ . - in them, and every 24 characters if they have none."""
    def cut(m):
        w = re.sub(r"([/\\_.-])", "\\1\u200b", m.group(0))
        return re.sub(r"([^\u200b]{24})(?=[^\u200b])", "\\1\u200b", w)
    return re.sub(r"\S{25,}", cut, text)


class WrapButton(QPushButton):
    """A push button whose text wraps onto more lines instead of widening the form."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 5, 10, 5)
        lay.addWidget(self.label)
        lay.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)    # our size hints rule, not the label's
        sp = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        sp.setHeightForWidth(True)
        self.setSizePolicy(sp)

    def setText(self, text):
        self._text = text
        self.label.setText(breakable(text))
        self.updateGeometry()

    def text(self):
        return getattr(self, "_text", "")

    def hasHeightForWidth(self):
        return True

    def heightForWidth(self, w):
        f = QFont(self.label.font())
        f.setBold(True)                                   # the style sheet sets the button's text bold
        flags = int(Qt.TextFlag.TextWordWrap) | int(Qt.AlignmentFlag.AlignCenter)
        r = QFontMetrics(f).boundingRect(QRect(0, 0, max(w - 24, 20), 100000), flags, self.label.text())
        return r.height() + 14

    def sizeHint(self):
        return QSize(160, self.heightForWidth(self.width() if self.width() > 40 else 160))

    def minimumSizeHint(self):
        return QSize(60, self.label.fontMetrics().height() + 14)


class Inspector(QDockWidget):
    """Form for one node: rename, hyperparameters, its shape/params/MACs, and the error with a fix button."""

    message = Signal(str)

    def __init__(self, doc, parent=None):
        super().__init__("Inspector", parent)
        self.setObjectName("inspector")
        self.doc, self.name, self.editors = doc, None, {}
        self.area = QScrollArea()
        self.area.setWidgetResizable(True)
        self.area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)   # everything wraps instead
        self.setWidget(self.area)
        doc.changed.connect(self.refresh)
        doc.reset.connect(lambda: self.show_node(None))
        doc.node_renamed.connect(self._renamed)
        doc.locked_changed.connect(lambda on: self.area.widget() and self.area.widget().setEnabled(not on))
        self.show_node(None)

    def _renamed(self, old, new):
        if self.name == old:
            self.name = new

    def show_nodes(self, names):
        """One node: its form; several: the block panel (mark them as a repeated block); none: a hint."""
        if len(names) < 2:
            return self.show_node(names[0] if names else None)
        self.name, self.editors = None, {}
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(10, 10, 10, 10)
        title = QLabel("Structure search")
        title.setObjectName("heading")
        lay.addWidget(title)
        self.block_panel = BlockPanel(self.doc, names)
        lay.addWidget(self.block_panel)
        lay.addStretch()
        w.setEnabled(not self.doc.locked)
        self.area.setWidget(w)

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
        self.marks, self.labels = {}, {}
        for hp in cls.hparams:
            ed = HPEditor(hp, node.config.get(hp.name, hp.default))
            ed.committed.connect(self._commit)
            ed.refused.connect(self.message)
            self.editors[hp.name] = ed
            self.labels[hp.name] = QLabel(hp.name)
            if hp.kind in SEARCHABLE:
                self.marks[hp.name] = RangeButton(self.doc, f"{name}.{hp.name}", hp, node.config.get(hp.name, hp.default))
                ed.add_side(self.marks[hp.name], self.marks[hp.name].note)
            form.addRow(self.labels[hp.name], ed)
        lay.addLayout(form)
        self.blocks = QLabel()
        self.blocks.setWordWrap(True)
        lay.addWidget(self.blocks)
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fix_button = WrapButton()
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
            self.editors[hp.name].set_value(node.config.get(hp.name, hp.default))
            if hp.name in self.marks:
                self.marks[hp.name].sync(node.config.get(hp.name, hp.default))
                on = self.marks[hp.name].marked
                self.labels[hp.name].setText(f"{MARK} {hp.name}" if on else hp.name)
                self.labels[hp.name].setStyleSheet(f"color: {theme['accent']}; font-weight: bold;" if on else "")
        blocks = [r for k, r in ranges_of(self.doc, self.name).items() if "repeat" in r]
        self.blocks.setText("\n".join(f"{MARK} searched: block {'+'.join(r['repeat'])} repeated "
                                       f"{structure.describe(r)}" for r in blocks))
        self.blocks.setVisible(bool(blocks))
        info = self.doc.infos.get(self.name)
        if info is None:
            return
        if info.ok:
            lines = [f"output {fmt(info.shape)}", f"{info.params:,} parameters", f"{info.macs:,} MACs per sample"]
            if shown(info):
                lines.append(f"receptive field {dims(info.field)}, stride {dims(info.stride)}")
            self.stats.setText(" · ".join(lines))
        else:
            self.stats.setText(info.pending if info.pending else
                               f"no output shape: '{info.blocked}' upstream has an error" if info.blocked else "")
        self.error.setVisible(bool(info.error))
        self.error.setText(breakable(f"⚠ {info.error}") if info.error else "")
        self.error.setToolTip(info.error or "")
        self.fix_button.setVisible(info.fix is not None)
        if info.fix is not None:
            self.fix_button.setText(f"Fix: {info.fix.text}")

    def _commit(self, key, value):
        if self.name is None:
            return
        ed = self.editors.get(key)
        try:
            self.doc.set_hparam(self.name, key, value)
            self.note.hide()
        except LayerboardError as e:
            self.message.emit(str(e))
            if ed is not None:
                ed.mark(str(e))             # red border, the reason under the field; the bad text stays
                if not isinstance(ed.widget, QLineEdit):
                    ed.mark(None)
                    self.note.setText(str(e))
                    self.note.show()
                    self.refresh()

    def _rename(self):
        new = self.name_edit.text().strip()
        if self.name is None or new == self.name:
            return
        try:
            self.doc.rename(self.name, new)
            self.note.hide()
        except LayerboardError as e:
            self.note.setText(breakable(str(e)))
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
