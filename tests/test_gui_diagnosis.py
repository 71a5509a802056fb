"""The diagnosis strip: its own place above the plots, whole text, readable in both themes, remedies as undoable edits."""
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from engine.diagnosis import REMEDIES
from engine.graph import Graph
from engine.project import Project
from gui.document import Document
from gui.style import apply_theme
from gui.training import TrainingDock

MSG = ("Overfitting since epoch 14: validation loss (3-epoch mean) is +38 % above its minimum (0.412 at epoch 13, "
       "now 0.569) while training loss changed -61 % (0.21 → 0.082); training accuracy 0.99 vs validation 0.81.")


def project():
    g = Graph()
    g.chain(("input", "Input", {"shape": [2]}), ("fc1", "Dense", {"units": 8}), ("relu", "ReLU", {}),
            ("fc2", "Dense", {"units": 64}), ("relu2", "ReLU", {}), ("out", "Dense", {"units": 1}),
            ("head", "Sigmoid", {}))
    return Project(g, dataset={"kind": "builtin", "name": "moons"})


def dock(qtbot, width=700):
    doc = Document(project())
    d = TrainingDock(doc)
    qtbot.addWidget(d)
    d.resize(width, 600)
    d.show()
    d._on_finding(0, 20, MSG, list(REMEDIES))
    QApplication.processEvents()
    return doc, d


def lum(c):
    ch = [v / 255 for v in (c.red(), c.green(), c.blue())]
    ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]


def contrast(a, b):
    la, lb = sorted((lum(QColor(a)), lum(QColor(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_strip_covers_no_plot_and_shows_the_whole_text(qtbot):
    doc, d = dock(qtbot)
    b = d.banner
    assert b.isVisible() and not b.geometry().intersects(d.tabs.geometry())
    assert b.label.text() == MSG and b.label.wordWrap()          # wrapped, never cut
    assert b.label.height() >= b.label.heightForWidth(b.label.width()) - 1
    assert "spec §" not in b.text() and "a smaller model" in b.other.text()


def test_strip_is_readable_in_both_themes(qtbot):
    from gui.training.banner import COLOURS
    app = QApplication.instance()
    for name in ("light", "dark"):
        apply_theme(app, name)
        doc, d = dock(qtbot)
        bg, _, fg = COLOURS[name]
        assert bg in d.banner.styleSheet() and fg in d.banner.styleSheet()
        assert contrast(bg, fg) >= 7
    apply_theme(app, "light")


def test_remedies_apply_as_undoable_edits(qtbot):
    doc, d = dock(qtbot)
    buttons = {b.text().split(" ")[0]: b for b in d.banner.buttons}
    assert set(buttons) == {"Early", "L2", "Dropout", "Augment"}
    buttons["Early"].click()
    assert doc.project.training["patience"] > 0
    buttons["L2"].click()
    assert doc.project.training["weight_decay"] > 0
    buttons["Dropout"].click()                                # before the widest Dense (fc2, 64 units)
    drop = [n for n, v in doc.graph.nodes.items() if v.type == "Dropout"]
    assert len(drop) == 1 and doc.graph.inputs_of("fc2") == drop
    buttons["Augment"].click()
    assert doc.project.dataset.get("augment") == {"noise": 0.05}
    assert not any(b.isEnabled() for b in buttons.values())
    for _ in range(4):
        doc.undo_stack.undo()
    assert doc.project.training["patience"] == 0 and doc.project.training["weight_decay"] == 0
    assert "augment" not in doc.project.dataset and not any(v.type == "Dropout" for v in doc.graph.nodes.values())
