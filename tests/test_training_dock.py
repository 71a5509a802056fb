"""Training dock: XOR from the dock, progress, Stop/Pause/Resume, errors, closing, PCA view vs an independent PCA."""
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import HANG_MS
from engine import session
from engine.graph import Graph
from engine.project import Project
from gui.document import Document
from gui.training.job import Job, make_probe
from gui.training.views import PCAView
from resources import path

ROOT = Path(__file__).resolve().parent.parent


def make_doc(project):
    doc = Document(project)
    doc.lock_log = []
    doc.locked_changed.connect(doc.lock_log.append)
    return doc


def mlp(inputs=2, hidden=8, head="Sigmoid", units=1):
    """Input → Dense → ReLU → Dense → head."""
    g = Graph()
    g.add_node("Input", "input", {"shape": [inputs]})
    g.add_node("Dense", "fc1", {"units": hidden})
    g.add_node("ReLU", "relu")
    g.add_node("Dense", "out", {"units": units})
    g.add_node(head, "head")
    for a, b in (("input", "fc1"), ("fc1", "relu"), ("relu", "out"), ("out", "head")):
        g.connect(a, b)
    return g


def xor_project(epochs=200):
    p = Project.load(path("examples", "xor.json"))
    p.path = None
    p.training["epochs"] = epochs
    return p


@pytest.fixture
def dock_for(qtbot):
    from gui.training import TrainingDock
    made = []

    def make(project):
        doc = make_doc(project)
        d = TrainingDock(doc)
        qtbot.addWidget(d)
        d.resize(1000, 650)
        d.show()
        made.append(d)
        return doc, d
    yield make
    for d in made:
        d.shutdown()


def until(qtbot, d, cond):
    """Wait for cond(), applying the worker's messages on each poll as the dock's timer does."""
    qtbot.waitUntil(lambda: (d.drain(), cond())[1], timeout=HANG_MS)


def finish(qtbot, d):
    until(qtbot, d, lambda: d.status != "running")
    assert not d.job.alive


def steps(d):
    t = d.job.trainer
    return t.step if t is not None else 0


def test_xor_from_the_dock_finishes_with_one_point_per_step(qtbot, dock_for):
    from gui.training.views import CurvesView
    doc, d = dock_for(xor_project(200))
    d.train_btn.click()
    assert doc.locked and not d.train_btn.isEnabled() and not d.form.isEnabled()
    assert d.timer.isActive() and d.timer.interval() == 50           # the UI drains the worker's buffer
    finish(qtbot, d)
    assert d.status == "completed", d.message.text()
    assert d.result["steps"] == 200 and d.result["train_accuracy"] == 1.0
    curves = d.view(CurvesView)
    x, y = curves.batch_curve().getData()
    assert len(x) == 200 and np.array_equal(x, np.arange(1, 201))
    assert np.allclose(y, d.job.trainer.batch_loss)
    ex, ey = curves.epoch_curve(0, "train_loss").getData()
    assert len(ex) == 200 and np.allclose(ey, d.job.trainer.history["train_loss"])
    assert d.progress.value() == d.progress.maximum()
    assert doc.lock_log == [True, False] and not doc.locked
    assert len(doc.project.runs) == 1
    rec = doc.project.runs[0]
    assert rec["result"]["steps"] == 200 and len(rec["history"]["train_loss"]) == 200
    assert "Finished after 200 epochs" in d.message.text()


def test_stop_is_honoured_mid_run(qtbot, dock_for):
    doc, d = dock_for(xor_project(1_000_000))
    d.start()
    until(qtbot, d, lambda: steps(d) > 30)
    d.stop_btn.click()
    finish(qtbot, d)
    assert d.result["status"] == "stopped" and d.status == "stopped"
    assert 30 < d.result["steps"] < 1_000_000
    assert d.progress.value() < d.progress.maximum()
    assert not doc.locked and d.train_btn.isEnabled()


def test_pause_holds_the_step_count_and_resume_continues(qtbot, dock_for):
    doc, d = dock_for(xor_project(1_000_000))
    d.start()
    until(qtbot, d, lambda: steps(d) > 20)
    go = d.job.trainer._go
    blocked, wait = threading.Event(), go.wait

    def spy(timeout=None):               # the worker reached the pause point with the run paused
        if not go.is_set():
            blocked.set()
        return wait(timeout)
    go.wait = spy
    d.pause_btn.click()
    assert d.job.paused and d.pause_btn.text() == "Resume"
    qtbot.waitUntil(blocked.is_set, timeout=HANG_MS)
    held = steps(d)
    until(qtbot, d, lambda: True)        # the UI goes on draining while the worker waits
    assert steps(d) == held and d.running and d.job.paused
    d.pause_btn.click()
    assert not d.job.paused
    until(qtbot, d, lambda: steps(d) > held + 10)
    d.pause_btn.click()                  # stop while paused: released and stopped within a batch
    d.stop()
    finish(qtbot, d)
    assert d.result["status"] == "stopped"


def test_closing_the_window_stops_and_joins_the_worker(qtbot, dock_for):
    doc, d = dock_for(xor_project(1_000_000))
    d.start()
    until(qtbot, d, lambda: steps(d) > 10)
    d.close()                            # a stand-alone dock is its own window
    until(qtbot, d, lambda: not d.job.alive and not doc.locked)
    assert d.result["status"] == "stopped"


def test_bad_data_ends_the_run_with_a_message(qtbot, dock_for, tmp_path):
    csv = tmp_path / "three.csv"
    csv.write_text("a,b,c,label\n" + "\n".join(f"{i},{i % 3},{i % 5},{i % 2}" for i in range(20)) + "\n")
    p = xor_project(5)
    p.dataset = {"kind": "csv", "path": str(csv)}
    doc, d = dock_for(p)
    d.start()
    finish(qtbot, d)
    assert d.status == "error"
    assert "three.csv" in d.message.text() and "(3,)" in d.message.text()
    assert not doc.locked and doc.project.runs == []


def test_divergence_is_reported_not_raised(qtbot, dock_for):
    p = xor_project(50)
    p.graph = mlp(head="Dense", units=1)
    p.graph.nodes["head"].config["units"] = 1
    p.training.update(loss="mse", optimizer="sgd", lr=10.0)
    doc, d = dock_for(p)
    d.start()
    finish(qtbot, d)
    assert d.status == "diverged" and "diverged" in d.message.text()
    assert "color: #b00" in d.message.styleSheet()


def moons_project(epochs=4):
    p = Project(mlp(2, 8), dataset={"kind": "builtin", "name": "moons", "n": 200})
    p.training.update(loss="bce", lr=0.05, epochs=epochs, batch_size=32, validation_split=0.25)
    return p


def test_pca_view_matches_an_independent_pca(qtbot, dock_for):
    doc, d = dock_for(moons_project(4))
    d.start()
    finish(qtbot, d)
    until(qtbot, d, lambda: d.view(PCAView).evr is not None)
    v = d.view(PCAView)
    assert v.layer.currentText() == "relu"               # last hidden layer with ≥ 2 features
    model, probe = d.job.model, d.job.probe
    assert len(probe.x) == 50                              # a quarter of 200 held out, all shown
    model.forward(probe.x, every=True)                   # inner outputs of fused groups too
    a = model.acts["relu"].astype(np.float64)            # (50, 8)
    c = a - a.mean(axis=0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    evr = s ** 2 / np.sum(s ** 2)
    assert np.allclose(v.evr[:len(evr)], evr, atol=1e-6)
    assert f"PC1 {100 * evr[0]:.1f} %" in v.evr_label.text()
    px, py = v.scatter.xy.T
    assert len(px) == 50
    for k in (0, 1):                                       # one colour per class
        assert len(v.scatter.items[k].getData()[0]) == np.sum(probe.y == k) > 0
    ref = c @ vt[:2].T                                     # (50, 2) scores, sign per component is arbitrary
    for got, want in ((px, ref[:, 0]), (py, ref[:, 1])):
        assert np.allclose(np.abs(got), np.abs(want), atol=1e-5)
    from engine.pca import PCA                             # and exactly the engine's PCA, signs included
    eng = PCA(2).fit(a)
    assert np.allclose(v.evr, eng.explained_variance_ratio, atol=1e-9)
    assert np.allclose(np.c_[px, py], eng.transform(a), atol=1e-5)
    v.layer.setCurrentText("fc1")                          # a new layer after the run: recomputed off the UI thread
    until(qtbot, d, lambda: "'fc1'" in v.evr_label.text())


def test_boundary_and_confusion_views_update(qtbot, dock_for):
    from gui.training.job import GRID
    from gui.training.views import BoundaryView, ConfusionView
    doc, d = dock_for(moons_project(3))
    d.start()
    finish(qtbot, d)
    until(qtbot, d, lambda: d.view(ConfusionView).matrix is not None)
    b = d.view(BoundaryView)
    assert b.image.image is not None and b.image.image.shape[:2] == (GRID, GRID)
    assert d.tabs.isTabEnabled(d.tabs.indexOf(b))
    m = d.view(ConfusionView).matrix
    assert m.shape == (2, 2) and m.sum() == 50
    assert np.trace(m) / 50 == pytest.approx(d.result["val_accuracy"])


@pytest.mark.parametrize("answer", ["keep", "discard", "cancel"])
def test_closing_the_window_while_training_asks_and_stops_the_worker(qtbot, tmp_path, monkeypatch, answer):
    from PySide6.QtWidgets import QMessageBox
    from gui.mainwindow import MainWindow
    win = MainWindow(make_doc(xor_project(1_000_000)), autosave_dir=tmp_path)
    qtbot.addWidget(win)
    d = win.training
    win.show()
    d.start()
    until(qtbot, d, lambda: steps(d) > 10)
    asked = []
    monkeypatch.setattr(win, "ask_training_close", lambda: asked.append(1) or answer)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[1]) or QMessageBox.StandardButton.Discard)
    job = d.job
    closed = win.close()
    if answer == "cancel":
        assert not closed and win.isVisible() and job.alive and not job.stopping and win.doc.locked
        assert asked == [1]
        d.stop()
        until(qtbot, d, lambda: not job.alive)
        return
    assert closed and not win.isVisible()
    if answer == "keep":
        assert not job.alive                                     # the close waited for the worker's end
        runs = win.doc.project.runs
        assert len(runs) == 1 and runs[0]["result"]["status"] == "stopped"
        assert asked == [1, "Unsaved changes"]                   # the kept run is unsaved work: Save is offered
        assert win.doc.trained is job.model
    else:
        assert win.doc.project.runs == [] and asked == [1]       # discarded: nothing recorded, nothing to save
        qtbot.waitUntil(lambda: not job.alive, timeout=10000)
    assert job.results and job.results[0]["status"] == "stopped" and not win.doc.locked


def test_stop_answers_at_once_while_the_worker_cannot_check(qtbot, dock_for, monkeypatch):
    """A worker busy where it cannot look at the stop flag (a numba compilation; here a slow load): the dock
    says "stopping…", the graph is editable again, and the run ends at the worker's next check."""
    entered, release = slow_loader(monkeypatch)
    doc, d = dock_for(xor_project(5))
    d.start()
    assert entered.wait(10) and doc.locked
    d.stop_btn.click()
    assert "stopping…" in d.progress.format() and not d.stop_btn.isEnabled() and not d.pause_btn.isEnabled()
    assert not doc.locked and d.running and not d.train_btn.isEnabled()      # Train waits for the worker
    doc.add_node("Dense", name="edited_while_stopping")
    release.set()
    until(qtbot, d, lambda: not d.running and d.status == "stopped")
    assert d.train_btn.isEnabled() and "stopping" not in d.progress.format()


def test_overfitting_finding_shows_the_banner_with_remedies(qtbot, dock_for):
    from engine.diagnosis import REMEDIES
    p = Project(mlp(2, 64), dataset={"kind": "builtin", "name": "moons", "n": 40, "noise": 0.35})
    p.training.update(loss="bce", lr=0.05, epochs=30, batch_size=8, validation_split=0.5)
    doc, d = dock_for(p)
    d.start()
    finish(qtbot, d)
    assert d.job.trainer.findings, "this small noisy set should overfit"
    assert d.banner.isVisible()
    text = d.banner.text()
    assert "Overfitting since epoch" in text and all(r in text for r in REMEDIES)
    assert not d.banner.geometry().intersects(d.tabs.geometry())                  # its own strip: no plot covered
    d.start()                                              # a new run starts without the old diagnosis
    assert not d.banner.isVisible()
    finish(qtbot, d)


def slow_loader(monkeypatch):
    """Make the dataset load wait until the test says so (a 4-million-row CSV, without the rows)."""
    entered, release = threading.Event(), threading.Event()
    real = session.load

    def load(ref, base=None):
        entered.set()
        release.wait(30)
        return real(ref, base)
    monkeypatch.setattr(session, "load", load)
    return entered, release


def test_closing_the_dock_during_a_slow_load_does_not_wait_and_the_run_still_ends(qtbot, dock_for, monkeypatch):
    entered, release = slow_loader(monkeypatch)
    doc, d = dock_for(xor_project(5))
    d.start()
    assert entered.wait(10)
    joins = []
    d.job.join = lambda timeout=None: joins.append(timeout)       # the UI thread must never wait on the worker
    d.close()
    assert joins == [] and d.job.alive and doc.locked             # closed at once; the load is still running
    release.set()
    qtbot.waitUntil(lambda: not d.job.alive, timeout=HANG_MS)
    qtbot.waitUntil(lambda: not doc.locked, timeout=HANG_MS)         # "done" was read by the closed dock's timer
    assert d.status == "stopped" and d.train_btn.isEnabled()
    assert doc.lock_log == [True, False]


def test_deleting_the_dock_during_a_slow_load_still_unlocks_the_document():
    """No dock left to read "done": the document still leaves the training state (own process: C++ teardown)."""
    code = textwrap.dedent("""
        import sys, threading
        sys.path[:0] = [%r, %r]
        from PySide6.QtCore import QCoreApplication, QEvent
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from engine import session
        from test_training_dock import make_doc, xor_project
        from gui.training import TrainingDock
        entered, release = threading.Event(), threading.Event()
        real = session.load
        def load(ref, base=None):
            entered.set()
            release.wait(30)
            return real(ref, base)
        session.load = load
        doc = make_doc(xor_project(5))
        d = TrainingDock(doc)
        d.show()
        d.start()
        assert entered.wait(10)
        job = d.job
        d.close()
        d.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        assert doc.locked and job.alive
        release.set()
        done = threading.Event()
        for _ in range(600):                     # at most 60 s, over as soon as the document is unlocked
            app.processEvents()
            if not doc.locked:
                break
            done.wait(0.1)
        assert not job.alive and doc.lock_log == [True, False], (job.alive, doc.lock_log)
        doc.add_node("Dense")                    # editable again
        print("ok")
    """ % (str(ROOT), str(ROOT / "tests")))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert r.returncode == 0 and r.stdout.split()[-1:] == ["ok"], r.stderr[-3000:]


def small_cnn():
    """A small CNN project and 80 random 1×8×8 images in two classes (conv layers use scratch buffers)."""
    from engine.data import Dataset
    g = Graph()
    g.chain(("image", "Input", {"shape": [1, 8, 8]}), ("conv", "Conv2D", {"filters": 4}), ("relu", "ReLU", {}),
            ("pool", "MaxPool2D", {}), ("flat", "Flatten", {}), ("fc", "Dense", {"units": 8}),
            ("relu2", "ReLU", {}), ("logits", "Dense", {"units": 2}), ("softmax", "Softmax", {}))
    rng = np.random.default_rng(0)
    ds = Dataset(rng.normal(size=(80, 1, 8, 8)).astype(np.float32), rng.integers(0, 2, 80), "multiclass",
                 "random", ["a", "b"])
    p = Project(g)
    p.training.update(loss="cce", validation_split=0.5)
    return p, ds


def test_concurrent_probes_give_the_same_activations_as_sequential_ones():
    p, ds = small_cnn()
    model, trainer = session.prepare(p, data=ds)
    layers = [n for n in model.order if n not in model.inputs]
    seq = {}
    for name in layers:
        seq[name] = PCAView.compute(model, make_probe(trainer.train, trainer.val, 0), {"pca_layer": name})
    active, most, entered = [0], [0], threading.Event()

    def probe(m, pr, options):
        active[0] += 1
        most[0] = max(most[0], active[0])
        entered.set()
        try:
            return PCAView.compute(m, pr, options)
        finally:
            active[0] -= 1
    job = Job(p, probes={"pca": probe}, ui_wait=0)
    job.model, job.probe = model, make_probe(trainer.train, trainer.val, 0)
    for _ in range(3):
        for name in layers:
            job.options["pca_layer"] = name
            job.probe_now("pca")
    got = []
    deadline = threading.Event()
    for _ in range(600):                                   # at most 60 s; ends as soon as all have arrived
        got += [m for m in job.drain() if m[0] == "snapshot"]
        if len(got) == 3 * len(layers):
            break
        deadline.wait(0.1)
    assert len(got) == 3 * len(layers)
    assert most[0] == 1                                    # never two probes on the model at once
    for _, _, key, payload in got:
        want = seq[payload["layer"]]
        assert np.array_equal(payload["scores"], want["scores"]), payload["layer"]
    assert sorted(pl["layer"] for *_, pl in got) == sorted(layers * 3)   # each request kept its own layer
