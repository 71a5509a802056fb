"""Data shapes the model: a dataset that does not fit the Input, the output units or the loss marks the nodes at once."""
import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from engine.project import Project
from gui.mainwindow import MainWindow
from resources import path


@pytest.fixture(autouse=True)
def no_dialogs(monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)


def window(qtbot, tmp_path):
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    p = Project.load(path("examples", "xor.json"))        # Input (2,) → ... → Dense(1) → Sigmoid, bce
    p.path = None
    w.doc.load(p)
    return w


def write_csv(p, classes=2, n=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] > 0).astype(int) + (classes > 2) * (x[:, 1] > 0)
    lines = ["a,b,c,d,label"] + [",".join(f"{v:.4f}" for v in r) + f",{c}" for r, c in zip(x, y)]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_importing_a_4_feature_csv_marks_the_input_with_a_fix(qtbot, tmp_path):
    w = window(qtbot, tmp_path)
    assert "no errors" in w.status.text()
    w.training.data.import_file(write_csv(tmp_path / "four.csv"))
    inp = w.doc.infos["input"] if "input" in w.doc.infos else next(i for i in w.doc.infos.values() if i.type == "Input")
    assert inp.error and "(4,)" in inp.error and inp.fix is not None
    assert "1 error" in w.status.text()
    w.doc.apply_fix(inp.name, inp.fix)                       # the one-click fix
    assert w.doc.graph.nodes[inp.name].config["shape"] == [4]
    assert not any(i.error for i in w.doc.infos.values()) and "no errors" in w.status.text()
    w.doc.undo_stack.undo()
    assert w.doc.infos[inp.name].error


def test_output_units_and_loss_follow_the_data(qtbot, tmp_path):
    w = window(qtbot, tmp_path)
    w.training.data.import_file(write_csv(tmp_path / "four.csv", classes=3))
    infos = w.doc.infos
    errs = {n: i for n, i in infos.items() if i.error}
    head = w.doc.graph.outputs()[0]
    assert "loss is bce" in errs[head].error and errs[head].fix.action == "set_training"
    w.doc.apply_fix(head, errs[head].fix)
    assert w.doc.project.training["loss"] == "cce"
    dense = next(n for n, i in w.doc.infos.items() if i.error and "output unit" in i.error)
    w.doc.apply_fix(dense, w.doc.infos[dense].fix)
    assert w.doc.graph.nodes[dense].config["units"] == 3
    assert not any("output unit" in (i.error or "") or "loss" in (i.error or "") for i in w.doc.infos.values())


def test_a_sigmoid_head_on_binary_data_is_offered_bce(qtbot, tmp_path):
    w = window(qtbot, tmp_path)
    w.doc.set_training("loss", "cce")                       # a new project's default
    head = w.doc.graph.outputs()[0]
    i = w.doc.infos[head]
    assert i.error and "Sigmoid" in i.error and i.fix.config == (("loss", "bce"),)
    assert not any("output unit" in (x.error or "") for x in w.doc.infos.values())   # (1,) is right for BCE
