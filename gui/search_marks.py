"""Search ranges marked in the inspector (and the training form): the undoable command that keeps them in the
project's "search" field, the ⌕ button beside each searchable field, the range dialog, the block panel
("Search: repeat 1–4" for selected layers) and Apply of a trial that repeats a block."""
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from engine import search, structure
from engine.errors import ConfigError, LayerboardError
from engine.graph import Edge

from . import commands as C
from .style import theme

SEARCHABLE = ("int", "float", "choice")
NOT_SEARCHED = {"loss", "seed", "validation_split", "test_split"}      # training settings a search must not vary
MARK = "⌕"


class SetSearchRange(C.SetKey):
    """Mark (new: a range), change or unmark (new: None) one search range of project.search."""

    field, absent = "search", None

    def __init__(self, doc, key, old, new, text=None):
        super().__init__(doc, text or (f"Unmark search range {key}" if new is None else f"Search range {key}"),
                         key, old, new)


def set_range(doc, key, rng):
    """Mark key with range rng (None: unmark) as one undo step; ConfigError (nothing pushed) if rng is refused."""
    old = doc.project.search.get(key)
    if rng is not None:
        rng = dict(rng)
        search.check_space(doc.project, {key: rng})
    if old == rng:
        return
    doc._push(SetSearchRange(doc, key, old, rng), structural=False)


def mark_repeat(doc, names, low=1, high=4):
    """Mark the selected layers as a block repeated low…high times (its nodes in graph order); returns the key."""
    try:
        _, _, order = structure.block(doc.graph, names)
    except LayerboardError as e:
        raise ConfigError(str(e)) from None
    key = structure.repeat_key(order)
    set_range(doc, key, {"low": int(low), "high": int(high), "int": True, "repeat": order})
    return key


def ranges_of(doc, name):
    """{key: range} of the ranges that name node `name` (its settings and the blocks it is part of)."""
    return {k: r for k, r in doc.project.search.items()
            if (structure.is_repeat(k) and name in r.get("repeat", ())) or
            (not structure.is_repeat(k) and k.rpartition(".")[0] == name)}


def dropping_ranges(doc, cmd, names):
    """cmd, or cmd and the unmarking of the removed nodes' ranges as one step (no range names a missing node)."""
    gone = {k: r for n in names for k, r in ranges_of(doc, n).items()}
    if not gone:
        return cmd
    return C.Compound(doc, cmd.text(), [cmd] + [SetSearchRange(doc, k, r, None) for k, r in gone.items()])


def renamed(search_field, old, new):
    """Rename node old → new in the keys (and blocks) of the ranges, in place (called by Document._rename)."""
    for k in list(search_field):
        r = search_field[k]
        if structure.is_repeat(k) and old in r.get("repeat", ()):
            names = [new if n == old else n for n in r["repeat"]]
            del search_field[k]
            search_field[structure.repeat_key(names)] = dict(r, repeat=names)
        elif k.rpartition(".")[0] == old:
            search_field[new + k[len(old):]] = search_field.pop(k)


def apply_trial(doc, values, space=None):
    """Apply a trial's values as one undo step: settings first, then each repeated block's copies."""
    from .document import LockedError
    if doc.locked:
        raise LockedError("the model is training: stop the run to apply a trial")
    space = space if space is not None else doc.project.search
    plain = {k: v for k, v in values.items() if not structure.is_repeat(k)}
    reps = {}
    for k, v in values.items():
        if structure.is_repeat(k) and int(v) != 1:
            names = space.get(k, {}).get("repeat") or k[len(structure.REPEAT):].split("+")
            structure.block(doc.graph, names)                    # checked before anything changes
            reps[k] = (names, int(v))
    doc.undo_stack.beginMacro("Apply search trial")
    try:
        if plain:
            doc.apply_values(plain)
        for names, k in reps.values():
            doc._push(_grow(doc, structure.repeat(doc.graph, names, k), f"Repeat {'+'.join(names)} × {k}"))
    finally:
        doc.undo_stack.endMacro()


def _grow(doc, g, text):
    """The commands that turn doc.graph into g, a graph with nodes and edges added, edges removed, nodes moved."""
    old = doc.graph
    cmds = [C.Disconnect(doc, e) for e in old.edges if not g.has_edge(e)]
    moves = {n: (doc._raw_pos(n), (float(g.nodes[n].meta["x"]), float(g.nodes[n].meta["y"])))
             for n in old.nodes if doc.pos(n) != (float(g.nodes[n].meta.get("x", 0)), float(g.nodes[n].meta.get("y", 0)))}
    if moves:
        cmds.append(C.MoveNodes(doc, moves))
    cmds += [C.AddNode(doc, v.type, n, v.config, v.meta) for n, v in g.nodes.items() if n not in old.nodes]
    cmds += [C.Connect(doc, Edge(e.src, e.dst, e.port)) for e in g.edges if not old.has_edge(e)]
    return C.Compound(doc, text, cmds)


# ---- widgets ----
class RangeDialog(QDialog):
    """Edit a search range: one of some values, or low…high (log scale), or repeat counts of a block."""

    def __init__(self, key, hp=None, value=None, current=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Search range — {key}")
        self.hp, self.unmark = hp, False
        r = current or (structure.suggest_range(hp, value) if hp is not None else {"low": 1, "high": 4})
        box = QVBoxLayout(self)
        form = QFormLayout()
        self.kind = QComboBox()
        self.kind.addItems(["one of these values", "from low to high"])
        self.choices = QLineEdit(", ".join(map(str, r.get("choices", []))))
        self.choices.setPlaceholderText("e.g. 16, 32, 64")
        self.low, self.high = QLineEdit(_num(r.get("low", ""))), QLineEdit(_num(r.get("high", "")))
        self.log = QCheckBox("log scale (for η, weight decay: equal steps in 10⁻⁴…10⁻¹)")
        self.log.setChecked(bool(r.get("log")))
        form.addRow("Search over", self.kind)
        form.addRow("Values", self.choices)
        form.addRow("Low", self.low)
        form.addRow("High", self.high)
        form.addRow("", self.log)
        box.addLayout(form)
        self.kind.currentIndexChanged.connect(self._kind)
        self.kind.setCurrentIndex(0 if "choices" in r else 1)
        if hp is None or hp.kind == "choice":
            self.kind.setEnabled(False)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        box.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        if current is not None:
            b = buttons.addButton("Unmark", QDialogButtonBox.ButtonRole.DestructiveRole)
            b.clicked.connect(self._unmark)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box.addWidget(buttons)
        self._kind()

    def _kind(self):
        values = self.kind.currentIndex() == 0
        self.choices.setEnabled(values)
        for w in (self.low, self.high):
            w.setEnabled(not values)
        self.log.setEnabled(not values and self.hp is not None and self.hp.kind == "float")

    def _unmark(self):
        self.unmark = True
        self.accept()

    def range(self):
        """The range the fields describe, or ConfigError naming the field."""
        hp = self.hp
        if hp is not None and hp.kind == "choice":               # the choice whose text was typed
            conv = lambda t: next((c for c in hp.choices if str(c) == t), t)    # noqa: E731
        else:
            conv = _number
        if self.kind.currentIndex() == 0:
            vals = [conv(t.strip()) for t in self.choices.text().split(",") if t.strip()]
            if not vals:
                raise ConfigError("Values: give one or more values separated by commas")
            return {"choices": vals}
        lo, hi = _number(self.low.text()), _number(self.high.text())
        if hp is None or hp.kind == "int":
            return {"low": int(lo), "high": int(hi), "int": True}
        return {"low": float(lo), "high": float(hi), **({"log": True} if self.log.isChecked() else {})}


def _number(t):
    try:
        v = float(t)
    except ValueError:
        raise ConfigError(f"{t.strip()!r} is not a number") from None
    return int(v) if v.is_integer() and "." not in t and "e" not in t.lower() else v


def _num(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


class RangeButton(QToolButton):
    """⌕ beside a searchable field: click to mark it as a search range (a dialog), to edit or to unmark it;
    shows the range when marked."""

    def __init__(self, doc, key, hp, value, parent=None):
        super().__init__(parent)
        self.doc, self.key, self.hp, self.value = doc, key, hp, value
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setText(MARK)
        self.setCheckable(True)
        self.clicked.connect(self.edit)
        self.note = QLabel()                             # the range, under the field (it wraps in a narrow dock)
        self.note.setWordWrap(True)
        self.sync()

    @property
    def marked(self):
        return self.key in self.doc.project.search

    def sync(self, value=None):
        if value is not None:
            self.value = value
        r = self.doc.project.search.get(self.key)
        self.setChecked(r is not None)
        self.setToolTip("Mark as a search range (Tools → Search settings tries values in it)" if r is None else
                        f"Search range {structure.describe(r)}: click to change or unmark")
        self.setStyleSheet("" if r is None else f"QToolButton {{ background: {theme['accent']}; "
                           f"color: {theme['accent_text']}; font-weight: bold; border-radius: 3px; }}")
        self.note.setText("" if r is None else f"search {structure.describe(r)}")
        self.note.setStyleSheet(f"color: {theme['accent']};")
        self.note.setVisible(r is not None)

    def edit(self):
        d = RangeDialog(self.key, self.hp, self.value, self.doc.project.search.get(self.key), self)
        while d.exec() == QDialog.DialogCode.Accepted:
            try:
                set_range(self.doc, self.key, None if d.unmark else d.range())
                break
            except LayerboardError as e:
                d.error.setText(str(e))
                d.unmark = False
        self.sync()


class BlockPanel(QWidget):
    """Shown in the inspector for a selection of several layers: mark them as a block repeated low…high times."""

    def __init__(self, doc, names, parent=None):
        super().__init__(parent)
        self.doc, self.names = doc, list(names)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        shown = ", ".join(self.names[:8]) + (", …" if len(self.names) > 8 else "")
        head = QLabel(f"{len(self.names)} layers selected: {shown}")
        head.setWordWrap(True)
        box.addWidget(head)
        form = QFormLayout()
        self.low, self.high = QSpinBox(minimum=1, maximum=64, value=1), QSpinBox(minimum=1, maximum=64, value=4)
        form.addRow("repeat from", self.low)
        form.addRow("to", self.high)
        box.addLayout(form)
        self.button = QPushButton()
        self.button.clicked.connect(self.mark)
        self.unmark_button = QPushButton("Unmark the block")
        self.unmark_button.clicked.connect(self.unmark)
        self.note = QLabel()
        self.note.setWordWrap(True)
        for w in (self.button, self.unmark_button, self.note):
            box.addWidget(w)
        self.low.valueChanged.connect(self.sync)
        self.high.valueChanged.connect(self.sync)
        doc.changed.connect(self.sync)                  # undo/redo of the mark (disconnected when deleted)
        self.sync()

    def key(self):
        try:
            return structure.repeat_key(structure.block(self.doc.graph, self.names)[2])
        except LayerboardError:
            return None

    def sync(self):
        k = self.key()
        r = self.doc.project.search.get(k) if k else None
        self.button.setText(f"Search: repeat {self.low.value()}–{self.high.value()}")
        self.button.setToolTip("Each search trial repeats these layers k times in a row (k in the range)")
        self.unmark_button.setVisible(r is not None)
        if k is None:
            try:
                structure.block(self.doc.graph, self.names)
            except LayerboardError as e:
                self.note.setText(f"⚠ {e}")
        else:
            self.note.setText(f"{MARK} marked: repeated {structure.describe(r)}" if r else
                              "A block with one input and one output can be repeated by the search.")

    def mark(self):
        try:
            mark_repeat(self.doc, self.names, self.low.value(), self.high.value())
        except LayerboardError as e:
            self.note.setText(f"⚠ {e}")
            return
        self.sync()

    def unmark(self):
        k = self.key()
        if k:
            set_range(self.doc, k, None)
        self.sync()
