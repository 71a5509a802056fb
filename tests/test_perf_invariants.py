"""What the speed work must not break: no recompiling, memoised shape inference equal to a fresh one."""
import numpy as np
from numba.core.registry import CPUDispatcher

from engine import fused, kernels, losses, optimizers, shapes
from engine.graph import Graph
from engine.project import Project
from engine.session import prepare
from resources import path


def _signatures():
    """Compiled signatures of every numba kernel the training step uses."""
    out = {}
    for mod in (fused, kernels, losses, optimizers):
        for name, f in vars(mod).items():
            if isinstance(f, CPUDispatcher):
                out[f"{mod.__name__}.{name}"] = len(f.signatures)
    return out


def test_training_twice_does_not_recompile():
    p = Project.load(path("examples", "xor.json"))
    p.training["epochs"] = 3
    m, tr = prepare(p, seed=1)
    assert tr.fast is not None                           # the dense example runs on the fused kernel
    tr.run()
    before = _signatures()
    assert before["engine.fused.train_step"] >= 1
    for seed in (1, 2):
        m, tr = prepare(p, seed=seed)
        tr.run()
    assert _signatures() == before


def test_shipped_dense_examples_use_the_fused_kernel():
    m, tr = prepare(Project.load(path("examples", "digits-mlp.json")))
    assert tr.fast is not None and tr.fast.standardize        # standardised Input, Dense/ReLU/Softmax + CCE


def _graph():
    g = Graph()
    g.add_node("Input", "x", {"shape": [8]})
    g.add_node("Dense", "d1", {"units": 4})
    g.add_node("Dense", "d2", {"units": 4})
    g.add_node("Add", "a")
    g.add_node("Concatenate", "c")
    for s, d in (("x", "d1"), ("x", "d2"), ("d1", "a"), ("d2", "a"), ("a", "c"), ("d1", "c")):
        g.connect(s, d)
    return g


def _fresh(g):
    shapes._LAYERS.clear()
    shapes._SHAPES.clear()
    return shapes.infer(g)


def _same(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].to_dict() == b[k].to_dict() and a[k].blocked == b[k].blocked and a[k].fix == b[k].fix


def test_memoised_inference_equals_a_fresh_one_through_edits():
    g = _graph()
    shapes.infer(g)
    g.nodes["d2"].config["units"] = 5                     # in-place edit, as the inspector does: Add breaks
    memo = shapes.infer(g)
    assert "d2" not in (memo["a"].error or "") and "does not broadcast" in memo["a"].error
    _same(memo, _fresh(g))
    g.rename("a", "sum")                                  # the error names the node by its new name
    memo = shapes.infer(g)
    assert "'sum'" in memo["sum"].error
    _same(memo, _fresh(g))
    g.nodes["d2"].config["units"] = 4
    e = next(e for e in g.edges if e.dst == "c" and e.src == "d1")
    g.disconnect(e)                                        # Concatenate now lacks an input
    memo = shapes.infer(g)
    assert memo["c"].error and memo["sum"].shape == (4,)
    _same(memo, _fresh(g))


def test_inputs_index_matches_inputs_of():
    g = _graph()
    idx = g.inputs_index()
    assert idx == {n: g.inputs_of(n) for n in g.nodes} and idx["c"] == ["a", "d1"]
    assert np.all([g.missing_inputs(n) == g.missing_inputs(n, len(idx[n])) for n in g.nodes])


def test_warm_up_loads_the_kernels_a_first_training_step_needs():
    """In a fresh process, after session.warm_up the fused step and the conv kernels are loaded."""
    import subprocess
    import sys
    code = ("from engine import fused\nfrom engine.layers import conv_kernels as c\nfrom engine.session import warm_up\n"
            "print(len(fused.train_step.signatures), len(c.conv_fwd.signatures))\nwarm_up()\n"
            "print(len(fused.train_step.signatures), len(c.conv_fwd.signatures))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["0", "0"] and int(out[2]) >= 1 and int(out[3]) >= 1
