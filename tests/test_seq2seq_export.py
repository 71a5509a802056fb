"""Exports of an encoder–decoder: the two-input ONNX graph (teacher-forced scoring) in onnxruntime, its greedy-decoding
script, and the PyTorch model.py with translate(): engine, ONNX and PyTorch greedy decoding give the same tokens."""
import importlib.util
import json

import numpy as np
import pytest

from engine.data import load
from engine.decode import greedy
from engine.project import Project
from engine.seq2seq import model_step, teacher_inputs, transformer
from engine.session import prepare
from engine.weights import save


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(project, model, validation pairs) of a small transformer trained to reverse letter strings (a pairs CSV)."""
    d = tmp_path_factory.mktemp("s2s")
    rng = np.random.default_rng(0)
    rows = ["source,target"]
    for _ in range(700):
        s = "".join(rng.choice(list("abcdefg"), rng.integers(2, 7)))
        rows.append(f"{s},{s[::-1]}")
    (d / "pairs.csv").write_text("\n".join(rows) + "\n")
    ref = {"kind": "pairs", "path": "pairs.csv", "source": "source", "target": "target", "tokens": "char"}
    ds = load(ref, d)
    S, T = ds.x.shape[1], ds.y.shape[1]
    g = transformer(S, T, len(ds.vocab), len(ds.target_vocab), d=24, heads=2)
    proj = {"format": "layerboard-project", "version": 1, "name": "Reverse pairs", "dataset": ref,
            "graph": g.to_dict(), "training": {"loss": "cce", "optimizer": "adam", "lr": 0.01, "batch_size": 32,
                                               "epochs": 6, "validation_split": 0.2, "seed": 0}}
    (d / "p.json").write_text(json.dumps(proj))
    p = Project.load(d / "p.json")
    model, trainer = prepare(p)
    r = trainer.run()
    assert r["val_token_accuracy"] > 0.5                      # confident enough that float32/64 agree on argmax
    save(d / "w.npz", model)
    return p, model, trainer.val, d


def test_onnx_scores_like_the_engine_and_its_greedy_script_decodes_the_same_tokens(trained):
    ort = pytest.importorskip("onnxruntime")
    p, model, va, d = trained
    from engine.onnx_export import save_onnx
    save_onnx(d / "s2s.onnx", model)
    sess = ort.InferenceSession(str(d / "s2s.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["source", "target", "lengths", "target_lengths"]
    tf = teacher_inputs(va.y)
    want = model.predict({"source": va.x, "target": tf}, lengths={"source": va.lengths, "target": va.target_lengths})
    got = sess.run(None, {"source": va.x, "target": tf, "lengths": va.lengths.astype(np.int32),
                          "target_lengths": va.target_lengths.astype(np.int32)})[0]
    valid = np.arange(va.y.shape[1]) < va.target_lengths[:, None]
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-4, atol=1e-5)
    T = va.y.shape[1]
    engine = greedy(model_step(model), va.x, va.lengths, T)
    script = _module(d / "s2s_greedy.py", "s2s_greedy")
    assert script.greedy(sess, va.x, va.lengths) == engine
    assert sum(map(len, engine)) > 0
    import subprocess
    import sys
    from engine.translate import translate
    text = translate(model, ["gfedc"])[0][0]                          # what `layerboard predict --text` writes
    run = subprocess.run([sys.executable, "s2s_greedy.py", "gfedc"], cwd=d, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == text, run.stderr


def test_pytorch_export_translate_reproduces_engine_greedy(trained):
    torch = pytest.importorskip("torch")
    p, model, va, d = trained
    from engine.torch_export import export_project
    out, _ = export_project(p, d / "torch", d / "w.npz")
    mod = _module(out / "model.py", "s2s_model")
    net = getattr(mod, "ReversePairs")()
    from safetensors.torch import load_file
    net.load_state_dict(load_file(str(out / "weights.safetensors")))
    engine = greedy(model_step(model), va.x, va.lengths, va.y.shape[1])
    assert mod.translate(net, va.x, va.lengths) == engine
    assert mod.translate(net, va.x[:3], va.lengths[:3], max_len=2) == [e[:2] for e in engine[:3]]
