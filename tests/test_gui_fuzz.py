"""Paste validation and a 1,000-step fuzz of Document + scene: malformed clipboards, NaN/inf, undo/redo.

A command that raises inside QUndoCommand.redo/undo crashes PySide6 with a segfault, so every case that
could crash runs in a fresh interpreter: a crash fails the test instead of killing pytest.
"""
import json
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.errors import LayerboardError
from engine.layers import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

BAD_PASTES = [   # the reproductions: a port out of range, an edge into an Input, two edges on one port,
    ({"nodes": [{"name": "p", "type": "Dense"}, {"name": "q", "type": "Dense"}],       # a number as a name
      "edges": [{"src": "p", "dst": "q", "port": 4}]}, "no input 5"),
    ({"nodes": [{"name": "p", "type": "Dense"}, {"name": "i", "type": "Input"}],
      "edges": [{"src": "p", "dst": "i", "port": 0}]}, "nothing can connect"),
    ({"nodes": [{"name": "p", "type": "Dense"}, {"name": "r", "type": "Dense"}, {"name": "q", "type": "Dense"}],
      "edges": [{"src": "p", "dst": "q", "port": 0}, {"src": "r", "dst": "q", "port": 0}]}, "already connected"),
    ({"nodes": [{"name": 7, "type": "Dense"}], "edges": []}, "name must be non-empty text"),
    ({"nodes": [{"name": "p", "type": "Nope"}], "edges": []}, "unknown layer type"),
    ({"nodes": [{"name": "p", "type": "Dense", "config": {"units": float("nan")}}], "edges": []}, "finite"),
    ({"nodes": [{"name": "p", "type": "Dense"}, {"name": "p", "type": "ReLU"}], "edges": []}, "twice"),
    ({"nodes": [{"name": "p", "type": "Dense"}], "edges": [{"src": "p", "dst": "zz"}]}, "not pasted"),
    ({"nodes": ["p"], "edges": []}, "not an object"),
    ({"nodes": {"p": 1}}, "must be lists"),
    ({"nodes": [{"name": "p", "type": "Dense"}, {"name": "q", "type": "Dense"}],
      "edges": [{"src": "p", "dst": "q", "port": "0"}]}, "whole number"),
]


def run(code, timeout=300):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"exit code {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_refused_pastes_push_nothing_say_why_and_undo_is_safe():
    """Edit ▸ Paste of each bad clipboard: one line in the status bar, nothing on the stack, Undo survives."""
    out = run(f"""
        import json, tempfile
        from PySide6.QtCore import QStandardPaths
        from PySide6.QtWidgets import QApplication
        from gui.mainwindow import CLIP_FORMAT, MainWindow, default_example
        QStandardPaths.setTestModeEnabled(True)
        app = QApplication([])
        w = MainWindow(autosave_dir=tempfile.mkdtemp(), training=False)
        w.open_path(default_example(), template=True)
        before = json.dumps(w.doc.project.to_dict())
        for data, why in json.loads({json.dumps(BAD_PASTES)!r}):
            QApplication.clipboard().setText(json.dumps(dict(format=CLIP_FORMAT, **data)))
            w.paste()
            msg = w.statusBar().currentMessage()
            assert why in msg and "\\n" not in msg, (why, msg)
            assert w.doc.undo_stack.count() == 0, data
            w.doc.undo_stack.undo()
            w.doc.undo_stack.redo()
            assert json.dumps(w.doc.project.to_dict()) == before
        print("ok")
    """)
    assert out.split()[-1] == "ok"


def test_a_command_that_fails_inside_redo_or_undo_reports_and_changes_nothing():
    """Even an unchecked command (built by hand, past the Document's checks) cannot crash the app."""
    out = run("""
        import json
        from PySide6.QtWidgets import QApplication
        from engine.graph import Edge
        from engine.project import Project
        from gui import commands as C
        from gui.document import Document
        from gui.scene import GraphScene
        from resources import path
        app = QApplication([])
        doc = Document(Project.load(path("examples", "xor.json")))
        scene = GraphScene(doc)
        errors = []
        doc.error.connect(errors.append)
        before = json.dumps(doc.project.to_dict())
        first = next(iter(doc.graph.nodes))
        bad = C.Compound(doc, "Paste 2 layer(s)", [C.AddNode(doc, "Dense", "p", {}, {}),
                                                   C.AddNode(doc, "Dense", "q", {}, {}),
                                                   C.Connect(doc, Edge("p", "q", 4))])
        doc.undo_stack.push(bad)
        assert json.dumps(doc.project.to_dict()) == before, "a failed redo left half a paste"
        assert set(scene.nodes) == set(doc.graph.nodes)
        doc.undo_stack.undo()
        doc.undo_stack.redo()
        doc.undo_stack.push(C.RemoveNode(doc, "no-such-node"))
        doc.undo_stack.undo()
        assert json.dumps(doc.project.to_dict()) == before
        assert len(errors) >= 2 and all("\\n" not in e for e in errors), errors
        print(errors[0])
        print("ok")
    """)
    assert "no input 5" in out and out.split()[-1] == "ok"


# ---- the fuzz (runs in a subprocess; see test_random_edit_paste_undo_redo_fuzz) ----
WEIRD = [float("nan"), float("inf"), -float("inf"), "x", None, True, [], {}, -1, 0, 1e999, 2**40, [1, "a"]]


def weird_value(rng, hp):
    if rng.random() < 0.6:
        from test_gui_document import random_value
        v = random_value(rng, hp)
        if hp.kind == "float" and rng.random() < 0.3:
            v = rng.choice([float("nan"), float("inf"), -float("inf")])
        return v
    return rng.choice(WEIRD)


def mangle(rng, data):
    """A clipboard payload made malformed in one random way (or left valid)."""
    d = json.loads(json.dumps(data))
    nodes, edges = d["nodes"], d["edges"]
    k = rng.randrange(12)
    if k == 0 and nodes:
        rng.choice(nodes)["name"] = rng.choice([7, None, "", ["a"]])
    elif k == 1 and nodes:
        rng.choice(nodes)["type"] = rng.choice(["Nope", 3, None])
    elif k == 2 and edges:
        rng.choice(edges)["port"] = rng.choice([4, -1, "0", None, 1.5, True])
    elif k == 3 and nodes:
        nodes.append({"name": "inp", "type": "Input"})
        edges.append({"src": nodes[0]["name"], "dst": "inp", "port": 0})
    elif k == 4 and edges:
        edges.append(dict(edges[0]))                                  # two edges on one port
    elif k == 5 and nodes:
        n = rng.choice(nodes)
        hps = REGISTRY[n["type"]].hparams if n.get("type") in REGISTRY else ()
        if hps:
            n.setdefault("config", {})[rng.choice(hps).name] = rng.choice(WEIRD)
    elif k == 6 and nodes:
        rng.choice(nodes)["meta"] = rng.choice([{"x": float("nan"), "y": 1}, {"x": "a"}, [], {"x": 1e308}])
    elif k == 7:
        d = rng.choice([[], {"nodes": 3}, {"nodes": [1, 2]}, {"edges": [{}]}, {}, {"nodes": [{}]}])
    elif k == 8 and nodes:
        nodes.append(dict(nodes[0]))                                  # a duplicate name
    elif k == 9 and nodes:
        edges.append({"src": nodes[0].get("name"), "dst": "elsewhere"})
    return d


def fuzz_step(rng, doc):
    """One random edit (valid or not) through the Document; only LayerboardError may come out."""
    from test_gui_document import random_edit
    g = doc.graph
    names = list(g.nodes)
    op = rng.choice(["edit", "edit", "edit", "paste", "weird_hparam", "weird_move", "weird_connect",
                     "weird_add", "weird_rename", "training"])
    before = json.dumps(doc.project.to_dict(), sort_keys=True)
    try:
        if op == "edit" or not names:
            random_edit(rng, doc)
            return op
        if op == "paste":
            doc.paste(mangle(rng, doc.copy_data(rng.sample(names, min(len(names), rng.randint(1, 4))))))
        elif op == "weird_hparam":
            n = rng.choice(names)
            hps = REGISTRY[g.nodes[n].type].hparams
            if hps:
                hp = rng.choice(hps)
                doc.set_hparam(n, hp.name, weird_value(rng, hp))
        elif op == "weird_move":
            doc.move_nodes({rng.choice(names): rng.choice([(float("nan"), 0), (0, float("inf")), ("a", 1),
                                                           (1, 2, 3), (rng.uniform(-1e3, 1e3), 5.5)])})
        elif op == "weird_connect":
            doc.connect(rng.choice(names), rng.choice(names + ["ghost"]), rng.choice([None, 0, 1, 4, -1, "1", True]))
        elif op == "weird_add":
            t = rng.choice(sorted(REGISTRY) + ["Nope"])
            hps = REGISTRY[t].hparams if t in REGISTRY else ()
            cfg = {hp.name: weird_value(rng, hp) for hp in hps if rng.random() < 0.5}
            doc.add_node(t, cfg, pos=rng.choice([(1, 2), (float("nan"), 0)]), name=rng.choice([None, 5, "", "x"]))
        elif op == "weird_rename":
            doc.rename(rng.choice(names), rng.choice([7, None, "", "  ", names[0], "renamed"]))
        elif op == "training":
            key = rng.choice(["lr", "epochs", "beta1", "weight_decay"])
            doc.set_training(key, rng.choice([float("nan"), float("inf"), 0.01, 3, -1, "x"]))
    except LayerboardError:
        after = json.dumps(doc.project.to_dict(), sort_keys=True)
        assert after == before, f"a refused {op} changed the project"
    return op


def fuzz(steps=1000, seed=8):
    """Drive a Document and its scene through `steps` random edits, pastes, undos and redos."""
    from PySide6.QtWidgets import QApplication
    from test_gui_document import check_mirror, example

    from gui.document import Document
    from gui.scene import GraphScene
    app = QApplication.instance() or QApplication([])
    rng = random.Random(seed)
    doc = Document(example())
    scene = GraphScene(doc)
    errors = []
    doc.error.connect(errors.append)
    stack = doc.undo_stack

    def text():
        return json.dumps(doc.project.to_dict(), sort_keys=True, allow_nan=False)  # NaN/inf never stored

    start = text()
    accepted = 0
    for step in range(steps):
        r = rng.random()
        if r < 0.15 and stack.canUndo():
            for _ in range(rng.randint(1, 3)):
                stack.undo()
        elif r < 0.25 and stack.canRedo():
            stack.redo()
        else:
            i = stack.index()
            fuzz_step(rng, doc)
            accepted += stack.index() > i
        text()
        if step % 4 == 0 or step == steps - 1:
            check_mirror(doc, scene)
        app.processEvents()
    assert not errors, f"a command failed after the Document accepted it: {errors[:3]}"
    end, at = text(), stack.index()               # the fuzz may end with steps undone: redo back to here only
    n = stack.count()
    while stack.canUndo():
        stack.undo()
    assert text() == start, "undo-all did not restore the starting project"
    check_mirror(doc, scene)
    while stack.index() < at:
        stack.redo()
    assert text() == end, "redo-all did not restore the final project"
    check_mirror(doc, scene)
    assert not errors, errors[:3]
    print(f"steps {steps} accepted {accepted} commands {n} nodes {len(doc.graph.nodes)}")
    print("ok")


def test_random_edit_paste_undo_redo_fuzz():
    out = run(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from test_gui_fuzz import fuzz
        fuzz(1000, seed=8)
    """)
    assert out.split()[-1] == "ok"
    assert int(out.split()[3]) > 200                   # most steps were real edits, not refusals


def test_weird_values_are_never_stored(qtbot):
    from gui.document import Document
    doc = Document()
    n = doc.add_node("Dense", {"units": 3})
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(LayerboardError, match="finite"):
            doc.set_hparam(n, "bias_init", bad)
        with pytest.raises(LayerboardError, match="finite"):
            doc.set_training("lr", bad)
        with pytest.raises(LayerboardError, match="finite"):
            doc.move_nodes({n: (bad, 0)})
    assert doc.undo_stack.count() == 1
    assert all(math.isfinite(v) for v in doc.pos(n))
