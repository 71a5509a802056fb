"""File → New from template (resources/examples/*.json) and the "Which model?" advice dialog."""

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QListView,
                               QListWidget, QListWidgetItem, QVBoxLayout)

from resources import path

from .gallery import examples

KINDS = ("tabular", "images", "sequences", "text")
TASKS = ("regression", "binary", "multi-class")

# the output layer and the loss go together
HEADS = {"regression": ("a linear output (no activation)", "mse", "MSE"),
         "binary": ("Sigmoid", "bce", "binary cross-entropy"),
         "multi-class": ("Softmax", "cce", "categorical cross-entropy")}
# which family suits which data
FAMILIES = {"tabular": "MLP (Dense layers)", "images": "CNN (Conv2D, pooling, then Dense)",
            "sequences": "RNN (recurrent layers) or a 1-D CNN",
            "text": "token Embedding, then an RNN or a Transformer block, pooled over the words"}
TWO = "its head is Dense(2) → Softmax with categorical cross-entropy: the same model for two classes"
# (kind, task) -> the shipped templates to start from, best first, and what to change in them ("" = as is)
PICKS = {
    ("images", "multi-class"): [("digits-cnn.json", ""), ("digits-mlp.json", "")],
    ("images", "binary"): [("digits-cnn.json", "set the last Dense to one unit and the Softmax to a Sigmoid")],
    ("images", "regression"): [("digits-cnn.json", "remove the Softmax and set the last Dense to one unit per target")],
    ("tabular", "binary"): [("moons-mlp.json", ""), ("xor.json", "")],
    ("tabular", "regression"): [("wave-regression.json", "")],
    ("tabular", "multi-class"): [("digits-mlp.json", "")],
    ("sequences", "regression"): [("temperature-rnn.json", ""), ("temperature-seq2seq-rnn.json", "")],
    ("sequences", "multi-class"): [("reverse-transformer.json", "")],
    ("sequences", "binary"): [("reviews-rnn.json", "replace the Embedding by an Input of shape (T, features)")],
    ("text", "binary"): [("reviews-rnn.json", TWO), ("reviews-transformer.json", TWO)],
    ("text", "multi-class"): [("reviews-transformer.json", "set the last Dense to one unit per class"),
                              ("reviews-rnn.json", "set the last Dense to one unit per class")],
    ("text", "regression"): [("reviews-rnn.json", "remove the Softmax and set the last Dense to one unit per target")],
}


def templates():
    """[(file name, name, description)] of the shipped examples, sorted by file name."""
    return [(f.name, d.get("name") or f.stem, d.get("description", "")) for f, d in examples()]


def advise(kind, task):
    """(template file or None, advice text, loss key) for a data kind and task."""
    head, loss, loss_name = HEADS[task]
    names = {t[0] for t in templates()}
    picks = [(f, change) for f, change in PICKS.get((kind, task), []) if f in names]
    text = (f"<b>Model:</b> {FAMILIES[kind]}.<br><b>Output:</b> {head} with <b>{loss_name}</b> loss "
            f"({'one unit' if task != 'multi-class' else 'one unit per class'}).<br>")
    if not picks:
        text += "<b>No shipped template fits this yet:</b> start from an empty canvas."
        return None, text, loss
    pick, change = picks[0]
    text += f"<b>Start from:</b> {pick}" + (f" ({change})" if change else "")
    if len(picks) > 1:
        text += "<br><b>Or:</b> " + ", ".join(f + (f" ({c})" if c else "") for f, c in picks[1:])
    return pick, text, loss


def thumbnail(graph, w=168, h=96):
    """A small picture of the graph: one box per layer in its category colour, laid out left to right."""
    from engine.layers import REGISTRY

    from .layout import layered
    from .style import category_color, theme
    pm = QPixmap(w, h)
    pm.fill(QColor(theme.get("canvas", "#fafbfc")))
    if not graph.nodes:
        return pm
    pos = layered(graph, False, wrap=max(4, int(len(graph.nodes) ** 0.5 * 1.6)))
    xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
    x0, y0 = min(xs), min(ys)
    sx = (w - 16) / max(max(xs) - x0 + 160, 1)
    sy = (h - 16) / max(max(ys) - y0 + 80, 1)
    k = min(sx, sy)
    bw, bh = 150 * k, 64 * k
    ox, oy = (w - (max(xs) - x0 + 160) * k) / 2, (h - (max(ys) - y0 + 80) * k) / 2
    rect = {n: QRectF(ox + (x - x0) * k, oy + (y - y0) * k, bw, bh) for n, (x, y) in pos.items()}
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(QPen(QColor(theme.get("edge", "#8a94a6")), 1.2))
    for e in graph.edges:
        a, b = rect[e.src], rect[e.dst]
        p.drawLine(QPointF(a.right(), a.center().y()), QPointF(b.left(), b.center().y()))
    p.setPen(Qt.PenStyle.NoPen)
    for n, r in rect.items():
        t = graph.nodes[n].type
        p.setBrush(category_color(REGISTRY[t].category if t in REGISTRY else ""))
        p.drawRoundedRect(r, 3, 3)
    p.end()
    return pm


class TemplateDialog(QDialog):
    """The template gallery: a thumbnail of each graph, its data, what it teaches and the score it reaches."""

    def __init__(self, parent=None):
        from engine.project import Project

        from .gallery import TASK_NAMES, gallery, reaches_text
        super().__init__(parent)
        self.setWindowTitle("New from template")
        self.resize(820, 520)
        lay = QHBoxLayout(self)
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(168, 96))
        self.list.setGridSize(QSize(196, 140))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setWordWrap(True)
        self.desc = QLabel()
        self.desc.setWordWrap(True)
        self.desc.setTextFormat(Qt.TextFormat.RichText)
        self.desc.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.desc.setMinimumWidth(260)
        self.entries = {}
        for e in gallery():
            try:
                g = Project.load(path("examples", e["file"])).graph
            except Exception:                         # a broken file is left out of the gallery, never fatal
                continue
            it = QListWidgetItem(QIcon(thumbnail(g)), e["name"])
            it.setData(Qt.ItemDataRole.UserRole, e["file"])
            card = (f"<h3>{e['name']}</h3><p><b>{e['network']}</b> · {TASK_NAMES.get(e['task'], e['task'])}</p>"
                    f"<p><b>Data:</b> {e['data']}</p><p><b>Teaches:</b> {e['teaches']}</p>"
                    f"<p><b>Reaches:</b> {reaches_text(e)} when trained as shipped</p><p>{e['description']}</p>")
            it.setToolTip(card)
            it.setData(Qt.ItemDataRole.UserRole + 1, card)
            self.entries[e["file"]] = e
            self.list.addItem(it)
        self.list.currentItemChanged.connect(
            lambda it, _: self.desc.setText(it.data(Qt.ItemDataRole.UserRole + 1) if it else ""))
        self.list.itemDoubleClicked.connect(self.accept)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        bb.button(QDialogButtonBox.StandardButton.Ok).setText("Open template")
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        side = QVBoxLayout()
        side.addWidget(self.desc, 1)
        side.addWidget(bb)
        lay.addWidget(self.list, 3)
        lay.addLayout(side, 2)
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
