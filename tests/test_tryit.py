"""Try it: a drawn digit and a typed sentence go through the model as the data does, and the panel shows the
model's own prediction for that sample (pytest-qt, offscreen)."""
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from engine import Graph, tryit
from engine.errors import DataError
from engine.model import Model
from engine.project import Project
from engine.session import prepare
from gui.tryit_panel import TryItPanel
from resources import path


def digits_model():
    p = Project.load(str(path("examples", "digits-mlp.json")))
    p.training["epochs"] = 2
    model, tr = prepare(p, seed=0)
    tr.run()
    return model, tr.val


def test_image_sample_centres_ink_like_mnist():
    img = np.zeros((100, 100), np.float32)
    img[5:45, 60:70] = 1.0                                   # a "1" in the top-right corner
    x = tryit.image_sample(img, (1, 28, 28))[0, 0]
    ys, xs = np.nonzero(x > 0.1)
    assert x.shape == (28, 28) and abs(ys.mean() - 13.5) < 2 and abs(xs.mean() - 13.5) < 2
    assert ys.max() - ys.min() + 1 <= 21                     # scaled into the middle 20 pixels
    assert tryit.image_sample(img, (64,)).shape == (1, 64)    # flat 8×8 inputs too
    with pytest.raises(DataError, match="not an image"):
        tryit.image_sample(img, (10,))


def test_drawn_digit_is_predicted(qtbot):
    model, val = digits_model()
    w = TryItPanel()
    qtbot.addWidget(w)
    w.set_model(model, [str(i) for i in range(10)], val)
    assert w.tabs.isTabEnabled(0) and not w.tabs.isTabEnabled(2)
    pad = w.pad
    qtbot.mousePress(pad, Qt.MouseButton.LeftButton, pos=QPoint(110, 30))
    for y in range(30, 200, 10):                             # a vertical stroke: a "1"
        qtbot.mouseMove(pad, QPoint(112, y))
    qtbot.mouseRelease(pad, Qt.MouseButton.LeftButton, pos=QPoint(112, 195))
    r = w.result
    assert r is not None and r["kind"] == "classes" and len(r["probabilities"]) == 10
    want = model.predict(tryit.image_sample(pad.pixels(), model.input_shape))[0]
    np.testing.assert_allclose(r["probabilities"], want, rtol=1e-5)
    assert r["labels"][r["top"]] in w.answer.text() and pad.pixels().max() == 1.0


def test_data_row_shows_prediction_and_truth(qtbot):
    model, val = digits_model()
    w = TryItPanel()
    qtbot.addWidget(w)
    w.set_model(model, [str(i) for i in range(10)], val)
    w.row.setValue(3)
    assert f"true: {val.y[3]}" in w.answer.text()
    np.testing.assert_allclose(w.result["probabilities"], model.predict(val.x[3:4])[0], rtol=1e-5)


def test_typed_sentence_is_predicted_with_its_attention(qtbot):
    g = Graph()
    g.chain(("ids", "Input", {"shape": [6], "standardize": False}), ("emb", "Embedding", {"vocab": 8, "dim": 4}),
            ("att", "MultiHeadSelfAttention", {"heads": 2}), ("pool", "TimePool", {}), ("out", "Dense", {"units": 2}),
            ("soft", "Softmax", {}))
    m = Model(g, seed=0)
    rng = np.random.default_rng(0)
    m.set_weights({k: rng.normal(0, 0.5, v.shape) for k, v in m.weights().items()})
    m.meta.update(vocab=["<pad>", "<unk>", "good", "bad", "food", "the", "was", "very"],
                  text={"level": "word", "max_len": 6, "lowercase": True})
    w = TryItPanel()
    qtbot.addWidget(w)
    w.set_model(m, ["not great", "great"])
    assert w.tabs.currentIndex() == 2
    w.text.setText("The food was very good")
    qtbot.keyClick(w.text, Qt.Key.Key_Return)
    r = w.result
    ids, lg = tryit.text_sample("The food was very good", m.meta)
    np.testing.assert_allclose(r["probabilities"], m.predict(ids.astype(np.float32), lengths=lg)[0], rtol=1e-5)
    assert r["lengths"] == 5 and r["taps"]["att"]["attention"].shape == (2, 6, 6) and w.heat.isVisibleTo(w)
    assert r["labels"][r["top"]] in w.answer.text()
    w.text.setText("   ")
    qtbot.keyClick(w.text, Qt.Key.Key_Return)
    assert w.answer.text() == "type some text first"
