"""Small things a new user met walking through the window (README's example under Xvfb): `python -m gui` starts it
(or says in one line why not), a one-epoch run reads "after 1 epoch", and the empty image views of a new project
do not label their axes "(x0.001)"."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_gui_onnx import isolated  # noqa: F401  (a fixture: the window's settings in tmp_path)

ROOT = Path(__file__).parents[1]


def test_python_m_gui_says_in_one_line_why_the_window_cannot_start_without_a_display():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")} | {"QT_QPA_PLATFORM": "xcb"}
    r = subprocess.run([sys.executable, "-m", "gui"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "the window cannot start" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "No module named gui.__main__" not in r.stderr


@pytest.mark.parametrize("n,word", [(1, "after 1 epoch ("), (3, "after 3 epochs (")])
def test_finished_run_counts_its_epochs_in_words(n, word):
    from gui.training.texts import result_text
    t = result_text({"status": "completed", "epochs": n, "steps": 8 * n, "seconds": 0.3, "train_loss": 0.5}, 1.0)
    assert t.startswith("Finished " + word), t


@pytest.mark.parametrize("name", ["ConfusionView", "HiddenView", "AttentionView", "BoundaryView"])
def test_empty_image_views_have_plain_axes(qtbot, tmp_path, name):
    """A new project's views before any run: no "(x0.001)" on an axis that counts classes, steps or units."""
    from gui.training import views
    v = getattr(views, name)()
    qtbot.addWidget(v)
    v.resize(420, 300)
    v.show()
    qtbot.wait(50)
    for ax in ("bottom", "left"):
        axis = v.plot.getAxis(ax)
        assert "x0.001" not in axis.labelString() and "(m" not in axis.labelString(), axis.labelString()
    v.grab().save(str(tmp_path / f"{name}.png"))


def test_an_imported_time_major_rnn_says_how_its_input_and_output_are_laid_out(isolated, qtbot, tmp_path):
    """Opening a time-major ONNX RNN: the training panel says the Input takes the data batch-first and how the
    output maps to ONNX's Y_h (what `layerboard import` prints); the status line points there."""
    import onnx
    from gui.mainwindow import MainWindow
    from test_gui_onnx import wait_import
    from test_onnx_import_time_major import recurrent_graph
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    w.resize(1360, 820)
    w.show()
    model, _ = recurrent_graph("GRU", "bidirectional", ("Y_h",), False)
    onnx.save(model, tmp_path / "gru.onnx")
    assert w.open_path(tmp_path / "gru.onnx")
    wait_import(qtbot, w)
    msg = w.statusBar().currentMessage()
    assert msg.startswith("imported gru.onnx: 2 layers") and msg.endswith("see the Training panel"), msg
    note = w.training.message.text()
    assert "ONNX input 'X' is time-major" in note and "x.transpose(1, 0, 2)" in note, note
    assert "ONNX output 'Y_h' (directions, batch, H)" in note
    assert [v.type for v in w.doc.graph.nodes.values()] == ["Input", "GRU"]
    w.grab().save(str(tmp_path / "imported_gru.png"))


def test_a_bidirectional_layers_card_says_so_not_direction_forward():
    from gui.items import key_hparams
    assert key_hparams("LSTM", {"units": 5, "bidirectional": True, "direction": "forward"}) == "units 5 · bidirectional"
    assert key_hparams("GRU", {"units": 5, "direction": "reverse"}) == "units 5 · direction reverse"


def test_a_cards_type_name_stops_before_its_parameter_count(qapp):
    """The header of a MultiHeadSelfAttention card read "MultiHeadSelf.4,224": the name ran under the count."""
    from PySide6.QtGui import QFont, QFontMetrics
    from gui.items import W, head_title
    f = QFont()
    f.setPointSizeF(9)
    f.setBold(True)
    fm = QFontMetrics(f)
    for name, count in (("MultiHeadSelfAttention", "4,224"), ("PositionEmbedding", "1,184"), ("CrossAttention", "4,224")):
        t = head_title(fm, name, count)
        assert 26 + fm.horizontalAdvance(t) + 6 <= W - 8 - fm.horizontalAdvance(count), (name, t)
    assert head_title(fm, "Dense", "650") == "Dense" and head_title(fm, "ReLU", "") == "ReLU"


def test_a_new_projects_task_fits_its_binary_dataset(isolated, qtbot, tmp_path):
    """A new project read "xor (binary)" beside the task "Multi-class classification (Softmax + CCE)"."""
    from gui.mainwindow import MainWindow
    w = MainWindow(autosave_dir=tmp_path / "data")
    qtbot.addWidget(w)
    w.resize(1360, 820)
    w.show()
    form = w.training.form
    qtbot.waitUntil(lambda: w.training.data.dataset is not None, timeout=60000)
    assert w.training.data.dataset.task == "binary" and w.doc.project.training["loss"] == "cce"
    assert form.task.currentText() == "Binary classification as 2 classes (Softmax + CCE)", form.task.currentText()
    assert "2 output units" in form.task.toolTip()
    form.grab().save(str(tmp_path / "task.png"))
    w.doc.set_training("loss", "bce")
    assert form.task.currentText().startswith("Binary classification (Sigmoid")
    w.training.data.use_builtin("spirals")
    qtbot.waitUntil(lambda: w.training.data.dataset is not None and w.training.data.dataset.name == "spirals",
                    timeout=60000)
    w.doc.set_training("loss", "cce")
    assert w.training.data.dataset.task == "multiclass"
    assert form.task.currentText() == "Multi-class classification (Softmax + CCE)", form.task.currentText()
