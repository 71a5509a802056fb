"""Training settings form generated from engine.project.TRAINING, and the loss/output pairing check."""
from PySide6.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget)

from engine.optimizers import OPTIMIZERS
from engine.project import TRAINING

from ..editors import HPEditor, tip
from ..search_marks import NOT_SEARCHED, SEARCHABLE, RangeButton

HP = {h.name: h for h in TRAINING}
LABELS = {"loss": "Loss", "optimizer": "Optimizer", "lr": "Learning rate η", "batch_size": "Batch size",
          "epochs": "Epochs", "validation_split": "Validation split", "seed": "Seed",
          "weight_decay": "L2 weight decay λ", "patience": "Early-stop patience", "beta": "β",
          "beta1": "β₁", "beta2": "β₂", "eps": "ε"}
TASKS = {"binary": ("Binary classification", "bce", "Sigmoid"),
         "multiclass": ("Multi-class classification", "cce", "Softmax"),
         "regression": ("Regression", "mse", None)}
LOSS_TASK = {v[1]: k for k, v in TASKS.items()}
OPT_KEYS = {"lr", "beta", "beta1", "beta2", "eps"}          # shown only for the optimizers that use them


def pairing_warnings(loss, head, out_shape, task=None, n_classes=0):
    """Mismatches between the loss, the output layer type `head`, its shape and the dataset's task."""
    w = []
    act = head if head in ("Sigmoid", "Softmax") else "Softmax" if head == "LogSoftmax" else "linear"   # cce: logits
    if loss == "bce":
        if act == "Softmax":
            w.append("Softmax output with binary cross-entropy: use a Sigmoid output for BCE "
                     "(or categorical cross-entropy for softmax).")
        elif act == "linear":
            w.append(f"Binary cross-entropy needs probabilities, but the output layer ({head}) is linear: "
                     "add a Sigmoid output.")
        if out_shape is not None and tuple(out_shape) != (1,):
            w.append(f"Binary cross-entropy expects one output unit; the output has shape {tuple(out_shape)}.")
    elif loss == "cce":
        if act == "Sigmoid":
            w.append("Sigmoid output with categorical cross-entropy: use a Softmax output so the class "
                     "probabilities sum to 1.")
        elif act == "linear":
            w.append(f"Categorical cross-entropy needs a probability distribution, but the output layer "
                     f"({head}) is linear: add a Softmax output.")
        if n_classes and out_shape is not None and tuple(out_shape) != (n_classes,):
            w.append(f"The dataset has {n_classes} classes, so the output needs shape ({n_classes},), "
                     f"not {tuple(out_shape)}.")
    elif loss == "mse" and act != "linear":
        w.append(f"Mean squared error with a {act} output: regression uses a linear output "
                 f"(remove the {act}).")
    if task and loss in LOSS_TASK and task != LOSS_TASK[loss]:
        if not (task == "binary" and loss == "cce"):
            w.append(f"The dataset is a {TASKS[task][0].lower()} task but the loss is {loss} "
                     f"(use {TASKS[task][1]}).")
    return w


class Editor(HPEditor):
    """One control for one TRAINING hyperparameter, labelled as in the form (the shared HP widget)."""

    def __init__(self, h, parent=None):
        super().__init__(h, label=LABELS.get(h.name, h.name), parent=parent)


class SettingsForm(QWidget):
    """Task, loss, optimizer and its hyperparameters, schedule and regularisation; edits → document.set_training."""

    def __init__(self, document, parent=None):
        super().__init__(parent)
        self.doc = document
        self.editors, self.marks = {}, {}
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        task = QGroupBox("Task")
        f = QFormLayout(task)
        self.task = QComboBox()
        for k, (label, loss, head) in TASKS.items():
            self.task.addItem(f"{label} ({head or 'linear'} + {loss.upper()})", k)
        self.task.activated.connect(lambda i: self._set("loss", TASKS[self.task.itemData(i)][1]))
        f.addRow("Task", self.task)
        self._row(f, "loss")
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #8a5a00; background: #fff4d6; padding: 3px;")
        self.warning.hide()
        f.addRow(self.warning)
        box.addWidget(task)
        opt = QGroupBox("Optimizer")
        self.opt_form = QFormLayout(opt)
        for k in ("optimizer", "lr", "beta", "beta1", "beta2", "eps"):
            self._row(self.opt_form, k)
        box.addWidget(opt)
        run = QGroupBox("Schedule and regularisation")
        f = QFormLayout(run)
        for k in ("batch_size", "epochs", "weight_decay", "patience", "seed"):
            self._row(f, k)
        extra = [h.name for h in TRAINING if h.name not in self.editors and h.name != "validation_split"]
        for k in extra:                                        # settings added to the engine later show up here
            self._row(f, k)
        box.addWidget(run)
        document.changed.connect(self.refresh)
        self.refresh()

    def _row(self, form, key):
        e = self.editors[key] = Editor(HP[key])
        e.committed.connect(self._set)
        if HP[key].kind in SEARCHABLE and key not in NOT_SEARCHED:
            self.marks[key] = RangeButton(self.doc, f"training.{key}", HP[key], self.doc.project.training[key])
            e.add_side(self.marks[key], self.marks[key].note)
        lab = QLabel(LABELS.get(key, key))
        lab.setToolTip(tip(HP[key]))
        form.addRow(lab, e)

    def _set(self, key, value):
        if self.doc.project.training.get(key) != value:
            self.doc.set_training(key, value)

    def refresh(self):
        """Show the project's values, the optimizer's own rows and the loss/output warnings."""
        t = self.doc.project.training
        for k, e in self.editors.items():
            e.set_value(t[k])
            if k in self.marks:
                self.marks[k].sync(t[k])
        used = {h.name for h in OPTIMIZERS[t["optimizer"]].hparams}
        for k in OPT_KEYS:
            self.opt_form.setRowVisible(self.editors[k], k in used)
        self.task.setCurrentIndex(list(TASKS).index(LOSS_TASK.get(t["loss"], "multiclass")))
        self.update_warnings()

    def update_warnings(self, task=None, n_classes=0):
        """task/n_classes come from the dataset panel when the data is known."""
        if task is not None:
            self._data = (task, n_classes)
        task, n_classes = getattr(self, "_data", (None, 0))
        g = self.doc.project.graph
        outs = g.outputs()
        w = []
        if len(outs) == 1:
            head = g.nodes[outs[0]].type
            info = self.doc.infos.get(outs[0]) if getattr(self.doc, "infos", None) else None
            shape = info.shape if info is not None else None
            w = pairing_warnings(self.doc.project.training["loss"], head, shape, task, n_classes)
        self.warning.setText("⚠ " + "\n⚠ ".join(w) if w else "")
        self.warning.setVisible(bool(w))
        self._label_task(task, n_classes)
        return w

    def _label_task(self, task, n_classes):
        """The Task shown fits the data: binary data trained with CCE (a new project's loss) reads "Binary
        classification as 2 classes (Softmax + CCE)", not "Multi-class"; the tooltip says why both fit."""
        i = list(TASKS).index("multiclass")
        label, loss, head = TASKS["multiclass"]
        two = task == "binary" and self.doc.project.training["loss"] == "cce"
        text = (f"Binary classification as {n_classes or 2} classes ({head} + {loss.upper()})" if two
                else f"{label} ({head} + {loss.upper()})")
        self.task.setItemText(i, text)
        why = "\nThe data is binary: Softmax + CCE over its 2 classes (2 output units) fits it; Binary (Sigmoid + BCE)" \
              " needs 1 output unit"
        self.task.setToolTip("Choosing the task sets the matching loss: binary → BCE, multi-class → CCE, "
                             "regression → MSE" + (why if two else ""))
