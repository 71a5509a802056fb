"""The Built-in box shows the active dataset; picking a built-in 2-D set gives settings that fit it."""
import numpy as np

from engine.graph import Graph
from engine.project import Project
from engine.session import prepare
from gui.document import Document
from gui.training.dataset_panel import DatasetPanel


def mlp():
    g = Graph()
    g.chain(("input", "Input", {"shape": [2]}), ("fc1", "Dense", {"units": 16}), ("r1", "ReLU", {}),
            ("fc2", "Dense", {"units": 16}), ("r2", "ReLU", {}), ("out", "Dense", {"units": 1}), ("head", "Sigmoid", {}))
    return g


def test_builtin_box_follows_the_active_dataset(qtbot, tmp_path):
    doc = Document(Project(mlp(), dataset={"kind": "builtin", "name": "moons"}))
    panel = DatasetPanel(doc)
    qtbot.addWidget(panel)
    assert panel.choice.currentText() == "moons"
    x = np.random.default_rng(0).normal(size=(30, 2))
    f = tmp_path / "pts.csv"
    f.write_text("a,b,y\n" + "\n".join(f"{a:.3f},{b:.3f},{int(a > 0)}" for a, b in x) + "\n")
    panel.import_file(f)
    assert panel.choice.currentText() != "moons" and panel.choice.currentIndex() == -1
    assert "pts.csv" in panel.choice.placeholderText()
    doc.undo_stack.undo()
    assert panel.choice.currentText() == "moons"


def test_moons_with_the_settings_the_app_picks_fits(qtbot):
    p = Project(mlp(), dataset={"kind": "builtin", "name": "xor"})
    p.training["loss"] = "bce"
    doc = Document(p)
    panel = DatasetPanel(doc)
    qtbot.addWidget(panel)
    panel.use_builtin("moons")
    t = doc.project.training
    assert doc.project.dataset["name"] == "moons" and t["lr"] > 0.001 and t["epochs"] > 20
    _, trainer = prepare(doc.project)
    r = trainer.run()
    assert r["val_accuracy"] >= 0.95
    doc.undo_stack.undo()                                 # one step undoes the dataset and the settings
    assert doc.project.dataset["name"] == "xor" and doc.project.training["lr"] == 0.001
