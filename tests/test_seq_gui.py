"""Sequence GUI: the sequence import of the dataset panel, the Transformer block, the views on real training."""
import numpy as np
import pytest

pytest.importorskip("pytestqt")
pg = pytest.importorskip("pyqtgraph")

from engine.data import Dataset  # noqa: E402
from engine.project import Project  # noqa: E402
from gui.document import Document  # noqa: E402


@pytest.fixture
def panel(qtbot, tmp_path):
    from gui.training.dataset_panel import DatasetPanel
    p = Project()
    p.path = tmp_path / "p.json"
    doc = Document(p)
    w = DatasetPanel(doc)
    qtbot.addWidget(w)
    return doc, w


def test_series_import_marks_the_window_and_sets_an_undoable_reference(panel, tmp_path):
    doc, w = panel
    f = tmp_path / "temps.csv"
    rows = ["time,temp,humidity"] + [f"2020-01-01 {i:02d}:00,{10 + np.sin(i / 3):.3f},{50 + i}" for i in range(40)]
    f.write_text("\n".join(rows) + "\n")
    s = w.sequences
    s.setChecked(True)
    s.kind.setCurrentIndex(list(s.kind.itemData(i) for i in range(s.kind.count())).index("series"))
    s.open(f)
    assert [s.s_target.itemText(i) for i in range(s.s_target.count())] == ["temp", "humidity"]   # numeric only
    s.s_window.setValue(6)
    s.s_horizon.setValue(2)
    s.s_at.setValue(5)
    x, y = s.curve.getData()
    assert len(x) == 40 and np.allclose(y[:3], [10 + np.sin(i / 3) for i in range(3)], atol=1e-3)
    assert s.window.getRegion() == (5, 10)                                   # rows 5…10 form the window
    tx, ty = s.target_mark.getData()
    assert list(tx) == [12] and np.isclose(ty[0], y[12])                     # 2 rows after the window's last
    s.s_features.item(1).setCheckState(pg.QtCore.Qt.CheckState.Unchecked)
    ref = s.reference()
    assert ref == {"kind": "series", "path": "temps.csv", "target": "temp", "features": ["temp"], "window": 6,
                   "horizon": 2}
    old = dict(doc.project.dataset)
    s.use()
    assert doc.project.dataset == ref
    doc.undo_stack.undo()
    assert doc.project.dataset == old


def test_npz_and_text_imports_fill_the_form(panel, tmp_path):
    doc, w = panel
    s = w.sequences
    f = tmp_path / "seqs.npz"
    np.savez(f, x=np.zeros((4, 5, 2), np.float32), y=np.arange(4), lengths=np.array([5, 3, 2, 1]))
    kinds = [s.kind.itemData(i) for i in range(s.kind.count())]
    s.kind.setCurrentIndex(kinds.index("npz"))
    s.open(f)
    assert s.reference() == {"kind": "npz", "path": "seqs.npz", "x": "x", "y": "y", "lengths": "lengths"}
    t = tmp_path / "reviews.csv"
    t.write_text('review,label\n"a fine film",1\n"dull and long",0\n')
    s.kind.setCurrentIndex(kinds.index("text"))
    s.open(t)
    ref = s.reference()
    assert ref["kind"] == "text" and ref["text"] == "review" and ref["target"] == "label"
    assert ref["level"] == "word" and ref["max_len"] == 200
    s.open(tmp_path / "missing.csv")
    assert "missing.csv" in s.file_label.text() and not s.use_btn.isEnabled()     # one line, no traceback


def test_token_preview_shows_the_valid_tokens_of_a_sample(panel):
    doc, w = panel
    ds = Dataset(np.array([[2, 3, 4, 0], [3, 0, 0, 0]], np.float32), np.array([0, 1]), "binary", "toy")
    ds.lengths = np.array([3, 1])
    ds.vocab = ["<pad>", "<unk>", "the", "cat", "sat"]
    w.sequences.show_dataset(ds)
    text = w.sequences.tokens.text()
    assert "the · cat · sat" in text and "3 tokens" in text and "<pad>" not in text
