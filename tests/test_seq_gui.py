"""Sequence GUI: the sequence import of the dataset panel, the Transformer block, the views on real training."""
import numpy as np
import pytest

import pyqtgraph as pg  # noqa: E402

from conftest import HANG_MS  # noqa: E402
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


# ---- the views on real training (in-memory sequence data) ----
from engine.graph import Graph  # noqa: E402


def rnn_project(T=12, epochs=3):
    """Input (T, 1) → RNN(8) → Dense(1): the sum of a variable-length sequence (regression)."""
    g = Graph()
    g.add_node("Input", "input", {"shape": [T, 1]})
    g.add_node("RNN", "rnn", {"units": 8})
    g.add_node("Dense", "out", {"units": 1})
    g.connect("input", "rnn")
    g.connect("rnn", "out")
    p = Project(g)
    p.training.update(loss="mse", epochs=epochs, batch_size=16, lr=0.01)
    rng = np.random.default_rng(0)
    n = 96
    lens = rng.integers(3, T + 1, n)
    x = rng.normal(size=(n, T, 1)).astype(np.float32) * (np.arange(T)[None, :, None] < lens[:, None, None])
    return p, Dataset(x, x.sum(axis=(1, 2))[:, None], "regression", "sums", lengths=lens)


def reverse_project(T=8, V=10, epochs=3):
    """Token ids (T,) → Embedding → positions → self-attention → Dense → Softmax: output = input reversed."""
    g = Graph()
    g.add_node("Input", "input", {"shape": [T]})
    g.add_node("Embedding", "emb", {"vocab": V, "dim": 16})
    g.add_node("PositionalEncoding", "pos")
    g.add_node("MultiHeadSelfAttention", "mhsa", {"heads": 2})
    g.add_node("Dense", "out", {"units": V})
    g.add_node("Softmax", "head")
    for a, b in (("input", "emb"), ("emb", "pos"), ("pos", "mhsa"), ("mhsa", "out"), ("out", "head")):
        g.connect(a, b)
    p = Project(g)
    p.training.update(loss="cce", epochs=epochs, batch_size=16, lr=0.01)
    rng = np.random.default_rng(1)
    n = 96
    lens = rng.integers(3, T, n)                                   # every sample has padding
    x = np.zeros((n, T), np.int64)
    y = np.zeros((n, T), np.int64)
    for i, L in enumerate(lens):
        x[i, :L] = rng.integers(2, V, L)
        y[i, :L] = x[i, :L][::-1]
    vocab = ["<pad>", "<unk>"] + [chr(ord("a") + k) for k in range(V - 2)]
    return p, Dataset(x.astype(np.float32), y, "multiclass", "reverse", classes=vocab, lengths=lens, vocab=vocab,
                      chrono=True)               # split: the last 20 % (random data: no order to respect)


@pytest.fixture
def train_in_dock(qtbot, monkeypatch):
    """Train a project on an in-memory dataset from a shown dock; returns (dock, {view key: payloads})."""
    from engine import session
    from gui.training import TrainingDock, job
    made = []

    def run(project, data, front=None):
        monkeypatch.setattr(job, "prepare", lambda p, weights=None: session.prepare(p, data=data, weights=weights))
        d = TrainingDock(Document(project))
        qtbot.addWidget(d)
        d.resize(1100, 620)
        d.show()
        made.append(d)
        got = {}
        from gui.training.views import VIEWS
        for cls in VIEWS:                       # views are built when first asked for: build them to patch them
            d.view(cls)
        for v in d.views:
            if v.key:
                v.snapshot = (lambda orig, k: lambda f, p: (got.setdefault(k, []).append(p), orig(f, p)))(
                    v.snapshot, v.key)
        if front is not None:
            d.tabs.setCurrentWidget(d.view(front))
        d.start()
        qtbot.waitUntil(lambda: (d.drain(), d.status != "running")[1], timeout=HANG_MS)
        assert d.status == "completed", d.message.text()
        d.qtbot_wait = lambda cond: qtbot.waitUntil(lambda: (d.drain(), cond())[1], timeout=HANG_MS)
        return d, got
    yield run
    for d in made:
        d.shutdown()


def test_rnn_training_feeds_both_rnn_views_of_the_right_shape(train_in_dock):
    from gui.training.views import AttentionView, GradFlowView, HiddenView
    p, ds = rnn_project()
    d, got = train_in_dock(p, ds, front=HiddenView)
    probe = d.job.probe
    hv, gv = d.view(HiddenView), d.view(GradFlowView)
    assert d.tabs.isTabVisible(d.views.index(hv)) and not d.tabs.isTabVisible(d.views.index(d.view(AttentionView)))
    assert len(got["hidden"]) >= 1 and len(got["gradflow"]) >= 1 and "attention" not in got
    for pl in got["hidden"]:
        n = int(probe.lengths[pl["sample"]])
        assert pl["h"].shape == (n, 8) and np.all(np.abs(pl["h"]) <= 1)      # valid steps × units, tanh range
    assert hv.h.shape == (int(probe.lengths[0]), 8) and hv.image.image.shape == (8, int(probe.lengths[0]))
    for pl in got["gradflow"]:
        norms, count = pl["norms"], pl["count"]
        assert norms.shape == (12,) and count.shape == (12,)
        lens = probe.lengths[:pl["sequences"]]
        assert np.array_equal(count, (np.arange(12)[None] < lens[:, None]).sum(0))
        assert np.all(np.isfinite(norms[count > 0])) and np.all(norms[count > 0] > 0)
    assert gv.norms is not None and len(gv.curve.getData()[0]) == int((got["gradflow"][-1]["count"] > 0).sum())


def test_gradient_probe_does_not_change_training():
    """The same run with and without the views' probes ends with identical weights."""
    from engine import session
    from gui.training import job as J
    from gui.training.views import VIEWS
    p, ds = rnn_project(epochs=4)
    thetas = []
    for probes in ({}, {c.key: c.compute for c in VIEWS if c.key}):
        orig = J.prepare
        J.prepare = lambda pr, weights=None: session.prepare(pr, data=ds, weights=weights)
        try:
            j = J.Job(p, probes=probes, ui_wait=0, probe_interval=0.0, live=("gradflow",) if probes else ())
            j.start()
            assert j.join(60)
        finally:
            J.prepare = orig
        kinds = [m[0] for m in j.drain()]
        assert "error" not in kinds
        if probes:
            assert kinds.count("snapshot") >= 4 * 2                     # both RNN views at every epoch at least
        thetas.append(j.model.theta.copy())
    assert np.array_equal(thetas[0], thetas[1])


def test_reverse_training_feeds_attention_maps(train_in_dock):
    from gui.training.views import AttentionView, HiddenView
    p, ds = reverse_project()
    d, got = train_in_dock(p, ds, front=AttentionView)
    av = d.view(AttentionView)
    assert not d.tabs.isTabVisible(d.views.index(d.view(HiddenView)))
    cm = got["confusion"][-1]["matrix"]                                # a class per valid step, padding left out
    assert cm.shape == (10, 10) and cm.sum() == d.job.probe.eval_lengths.sum()
    assert len(got["attention"]) >= 3                                  # every epoch end at least
    probe = d.job.probe
    for pl in got["attention"]:
        a = pl["maps"]["mhsa"]
        n = int(probe.lengths[pl["sample"]])
        assert a.shape == (2, 8, 8) and n < 8 and pl["length"] == n
        assert np.allclose(a[:, :n].sum(axis=-1), 1, atol=1e-5)        # valid rows sum to 1
        assert np.all(a[:, :, n:] == 0)                                # padded key columns are 0
        assert pl["tokens"] == [probe.vocab[int(t)] for t in probe.x[pl["sample"], :n]]
    assert av.alpha.shape == (n, n) and len(av.thumbs) == 2
    z = av.logit                                                       # q_t·k_s/√d_k from the layer
    e = np.exp(z - z.max(axis=1, keepdims=True))
    assert np.allclose(e / e.sum(axis=1, keepdims=True), av.alpha, atol=1e-5)     # the formula gives the weights
    assert f"exp({z[0, 1]:.4g})" in av.cell_text(0, 1) and f"= {av.alpha[0, 1]:.4g}" in av.cell_text(0, 1)
    other = 1 if av.payload["sample"] != 1 else 2
    av.sample.setValue(other)                                         # after the run: recomputed for that sample
    d.qtbot_wait(lambda: av.payload["sample"] == other)
    assert av.payload["maps"]["mhsa"].shape == (2, 8, 8)


# ---- the Transformer encoder block in the palette ----
def seq_doc(T=6, d=16):
    g = Graph()
    g.add_node("Input", "input", {"shape": [T, d]})
    return Document(Project(g))


def test_palette_lists_the_new_layer_types_and_the_block(qtbot):
    from gui.palette import TYPE_ROLE, PaletteTree
    t = PaletteTree()
    qtbot.addWidget(t)
    groups = {t.topLevelItem(i).text(0): [t.topLevelItem(i).child(j).data(0, TYPE_ROLE)
                                          for j in range(t.topLevelItem(i).childCount())]
              for i in range(t.topLevelItemCount())}
    assert "RNN" in groups["Recurrent"] and "MultiHeadSelfAttention" in groups["Attention"]
    assert groups["Blocks"] == ["Transformer encoder block", "Transformer decoder block",
                                "Recurrent decoder with attention"]
    t.filter("residual")                                               # searching finds the block by its text
    assert not t.topLevelItem(list(groups).index("Blocks")).isHidden()


def test_transformer_block_is_one_connected_undo_step():
    from gui.blocks import insert_block
    doc = seq_doc()
    before = doc.undo_stack.count()
    names = insert_block(doc, "Transformer encoder block", (100, 0), after="input")
    assert doc.undo_stack.count() == before + 1
    types = [doc.graph.nodes[n].type for n in names]
    assert types == ["MultiHeadSelfAttention", "Add", "LayerNorm", "Dense", "ReLU", "Dense", "Add", "LayerNorm"]
    mhsa, add, norm, ff, relu, ff_out, add_ff, norm_ff = names
    assert doc.graph.inputs_of(mhsa) == ["input"] and doc.graph.inputs_of(add) == ["input", mhsa]
    assert doc.graph.inputs_of(add_ff) == [norm, ff_out] and doc.graph.outputs() == [norm_ff]
    assert all(doc.infos[n].ok for n in names) and doc.infos[norm_ff].shape == (6, 16)
    assert doc.graph.nodes[ff].config["units"] == 64 and doc.graph.nodes[ff_out].config["units"] == 16
    doc.undo_stack.undo()
    assert list(doc.graph.nodes) == ["input"] and doc.graph.edges == []
    doc.undo_stack.redo()
    assert len(doc.graph.nodes) == 9 and len(doc.graph.edges) == 10


def test_a_refused_block_changes_nothing():
    from engine.errors import LayerboardError
    from gui.blocks import insert_block
    doc = seq_doc()
    doc.set_locked(True)
    with pytest.raises(LayerboardError):
        insert_block(doc, "Transformer encoder block", after="input")
    doc.set_locked(False)
    with pytest.raises(LayerboardError):
        insert_block(doc, "Transformer encoder block", after="nowhere")
    with pytest.raises(LayerboardError):
        insert_block(doc, "No such block")
    assert list(doc.graph.nodes) == ["input"] and doc.undo_stack.count() == 0


def test_dropping_the_block_on_the_canvas_connects_it_to_the_selected_node(qtbot):
    from gui.scene import GraphScene
    from gui.view import GraphView
    doc = seq_doc()
    sc = GraphScene(doc)
    v = GraphView(sc)
    qtbot.addWidget(v)
    sc.select(["input"])
    last = v.add_layer("Transformer encoder block")
    assert doc.graph.nodes[last].type == "LayerNorm" and len(doc.graph.nodes) == 9
    assert set(sc.selected_names()) == set(doc.graph.nodes) - {"input"}
    assert all(i.ok for i in doc.infos.values())


# ---- the shipped examples ----
def test_reverse_example_streams_attention_maps_of_every_layer(qtbot):
    """A few steps of resources/examples/reverse-transformer.json: (T, T) maps, valid rows sum to 1, padding 0."""
    from engine.session import prepare
    from gui.training import TrainingDock
    from gui.training.job import make_probe
    from gui.training.views import AttentionView
    from resources import path
    p = Project.load(path("examples", "reverse-transformer.json"))
    p.path = None
    p.dataset["n"], p.training["epochs"] = 400, 2                       # 5 steps per epoch
    _, tr = prepare(p)
    probe = make_probe(tr.train, tr.val, tr.cfg["seed"])
    pick = int(np.flatnonzero(probe.lengths < 10)[0])                   # a sample with padding
    d = TrainingDock(Document(p))
    qtbot.addWidget(d)
    d.resize(1100, 620)
    d.show()
    av = d.view(AttentionView)
    d.tabs.setCurrentWidget(av)
    got = []
    av.snapshot = (lambda orig: lambda f, pl: (got.append(pl), orig(f, pl)))(av.snapshot)
    try:
        d.start()
        qtbot.waitUntil(lambda: (d.drain(), d.status != "running")[1], timeout=HANG_MS)
        av.sample.setValue(pick)
        qtbot.waitUntil(lambda: (d.drain(), got[-1]["sample"] == pick)[1], timeout=HANG_MS)
    finally:
        d.shutdown()
    assert d.status == "completed", d.message.text()
    pl = got[-1]
    n = int(probe.lengths[pick])
    assert pl["layers"] == ["attention1", "attention2"] and pl["length"] == n
    for name in pl["layers"]:
        a = pl["maps"][name]
        assert a.shape == (2, 10, 10)
        assert np.allclose(a[:, :n].sum(axis=-1), 1, atol=1e-5) and np.all(a[:, :, n:] == 0)
    assert len(av.thumbs) == 4 and av.alpha.shape == (n, n)
    assert pl["tokens"] == [probe.vocab[int(t)] for t in probe.x[pick, :n]]


def test_temperature_example_feeds_both_rnn_views(qtbot, tmp_path):
    """A few steps of resources/examples/temperature-rnn.json (its first 600 hours): h_t (24, 64) and
    ‖∂L/∂h_t‖ for 24 steps."""
    import gzip
    from gui.training import TrainingDock
    from gui.training.views import GradFlowView, HiddenView
    from resources import path
    p = Project.load(path("examples", "temperature-rnn.json"))
    with gzip.open(p.base / p.dataset["path"], "rt", encoding="utf-8") as f:
        (tmp_path / "hours.csv").write_text("".join(f.readlines()[:601]), encoding="utf-8")
    p.dataset = dict(p.dataset, path=str(tmp_path / "hours.csv"))
    p.training["epochs"] = 1
    d = TrainingDock(Document(p))
    qtbot.addWidget(d)
    d.resize(1100, 620)
    d.show()
    seq = d.data.sequences                                             # the series, its window marked
    assert seq.kind.currentData() == "series" and seq.s_window.value() == 24
    x, y = seq.curve.getData()
    lo, hi = seq.window.getRegion()
    assert len(x) > 100 and hi - lo == 23 and seq.s_target.currentText() == "temp"
    got = {}
    for v in (d.view(HiddenView), d.view(GradFlowView)):
        v.snapshot = (lambda orig, k: lambda f, pl: (got.setdefault(k, []).append(pl), orig(f, pl)))(v.snapshot, v.key)
    d.tabs.setCurrentWidget(d.view(GradFlowView))
    try:
        d.start()
        qtbot.waitUntil(lambda: (d.drain(), d.status != "running")[1], timeout=HANG_MS)
    finally:
        d.shutdown()
    assert d.status == "completed", d.message.text()
    h = got["hidden"][-1]["h"]
    assert h.shape == (24, 64) and np.all(np.abs(h) <= 1) and h.std() > 0
    g = got["gradflow"][-1]
    assert g["norms"].shape == (24,) and np.all(g["count"] == g["sequences"])
    assert np.all(np.isfinite(g["norms"])) and np.all(g["norms"] > 0)
    assert d.view(HiddenView).image.image.shape == (64, 24)
