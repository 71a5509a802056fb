"""File → New from template (resources/examples/*.json) and the "Which model?" advice dialog."""
import json

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QListWidget,
                               QListWidgetItem, QVBoxLayout)
from PySide6.QtCore import Qt

from resources import path

KINDS = ("tabular", "images", "sequences", "text")
TASKS = ("regression", "binary", "multi-class")

# the output layer and the loss go together
HEADS = {"regression": ("a linear output (no activation)", "mse", "MSE"),
         "binary": ("Sigmoid", "bce", "binary cross-entropy"),
         "multi-class": ("Softmax", "cce", "categorical cross-entropy")}
# which family suits which data
FAMILIES = {"tabular": "MLP (Dense layers)", "images": "CNN (Conv2D, pooling, then Dense)",
            "sequences": "RNN (recurrent layers) or a 1-D CNN", "text": "Transformer (attention) over token embeddings"}


def templates():
    """[(file name, name, description)] of the shipped examples, sorted by name."""
    out = []
    for f in sorted(path("examples").glob("*.json")):
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append((f.name, d.get("name") or f.stem, d.get("description", "")))
    return out


def advise(kind, task):
    """(template file or None, advice text, loss key) for a data kind and task."""
    head, loss, loss_name = HEADS[task]
    names = {t[0] for t in templates()}
    pick = None
    if kind == "images":
        pick = next((n for n in ("digits-cnn.json", "digits-mlp.json") if n in names), None)
    elif kind == "tabular":
        pick = ("xor.json" if task == "binary" else "digits-mlp.json")
        pick = pick if pick in names else None
    text = (f"<b>Model:</b> {FAMILIES[kind]}.<br><b>Output:</b> {head} with <b>{loss_name}</b> loss "
            f"({'one unit' if task != 'multi-class' else 'one unit per class'}).<br>")
    if pick:
        text += f"<b>Start from:</b> {pick}"
        if kind == "tabular" and task == "regression":
            text += " (remove the Softmax and set the last Dense to one unit per target)"
    else:
        text += ("<b>No template ships for this yet:</b> start from an MLP (digits-mlp.json) "
                 "and replace its hidden layers as the layers become available.")
        pick = "digits-mlp.json" if "digits-mlp.json" in names else None
    return pick, text, loss


class TemplateDialog(QDialog):
    """Lists the examples with their description; chosen() is the selected file name."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("New from template")
        self.resize(520, 360)
        lay = QVBoxLayout(self)
        self.list = QListWidget()
        self.desc = QLabel()
        self.desc.setWordWrap(True)
        self.desc.setMinimumHeight(60)
        for fname, name, desc in templates():
            it = QListWidgetItem(name)
            it.setData(Qt.ItemDataRole.UserRole, fname)
            it.setToolTip(desc)
            it.setData(Qt.ItemDataRole.UserRole + 1, desc)
            self.list.addItem(it)
        self.list.currentItemChanged.connect(
            lambda it, _: self.desc.setText(it.data(Qt.ItemDataRole.UserRole + 1) if it else ""))
        self.list.itemDoubleClicked.connect(self.accept)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        lay.addWidget(self.list)
        lay.addWidget(self.desc)
        lay.addWidget(bb)
        if self.list.count():
            self.list.setCurrentRow(0)

    def chosen(self):
        it = self.list.currentItem()
        return it.data(Qt.ItemDataRole.UserRole) if it else None


class AdviceDialog(QDialog):
    """Asks the data kind and the task; proposes a template and the output activation + loss pairing."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Which model?")
        self.resize(460, 260)
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.kind, self.task = QComboBox(), QComboBox()
        self.kind.addItems(KINDS)
        self.task.addItems(TASKS)
        self.task.setCurrentText("multi-class")
        form.addRow("My data is", self.kind)
        form.addRow("I want to predict", self.task)
        lay.addLayout(form)
        self.advice = QLabel()
        self.advice.setWordWrap(True)
        self.advice.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.advice)
        lay.addStretch()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.open_button = self.buttons.addButton("Open template", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.kind.currentTextChanged.connect(self.update_advice)
        self.task.currentTextChanged.connect(self.update_advice)
        self.update_advice()

    def update_advice(self):
        self.pick, text, self.loss = advise(self.kind.currentText(), self.task.currentText())
        self.advice.setText(text)
        self.open_button.setEnabled(self.pick is not None)
