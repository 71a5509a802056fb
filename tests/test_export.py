"""Weight files (.npz, .safetensors) round-trip; ONNX export runs in onnxruntime like Model.predict; CLI export."""
import json
import subprocess
import sys

import numpy as np
import onnx                  # a dependency of the package: never skipped, so the weight-file tests always run
import onnxruntime as ort    # the test extra that runs exported models
import pytest

from engine import Graph
from engine.errors import DataError, LayerboardError
from engine.model import Model
from engine.project import VERSION, Project
from engine.session import prepare
from engine.weights import export, load, load_into, save
from resources import path

XOR, MLP, CNN = (str(path("examples", f"{n}.json")) for n in ("xor", "digits-mlp", "digits-cnn"))


def trained(project_path, epochs=2):
    p = Project.load(project_path)
    p.training["epochs"] = epochs
    model, tr = prepare(p, seed=0)
    tr.run()
    return model


def randomize(model, seed=1):
    """Non-trivial values for every tensor, including standardisation and running statistics."""
    rng = np.random.default_rng(seed)
    w = {}
    for k, v in model.weights().items():
        positive = k.endswith(("/std", "/running_var", "/gamma"))
        w[k] = rng.uniform(0.5, 1.5, v.shape) if positive else rng.normal(0, 0.5, v.shape)
    model.set_weights(w)
    return model


def run_onnx(model, x, tmp_path=None):
    """Outputs of the exported model in onnxruntime, after the ONNX checker (with shape inference) passed."""
    from engine.onnx_export import to_onnx
    m = to_onnx(model)
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == model.inputs[0] and out.name == model.output              # tensors named after the nodes
    assert inp.shape[0] == "batch" and tuple(inp.shape[1:]) == model.input_shape
    return sess.run(None, {inp.name: x.astype(np.float32)})[0], m


def every_layer_graph():
    """One graph with every exportable layer type: two image branches, 3-way Add, Concatenate, sequences."""
    g = Graph()
    x = g.chain(("img", "Input", {"shape": [2, 8, 8], "standardize": True}),
              ("c1", "Conv2D", {"filters": 4, "kernel_size": [3], "padding": "same"}),
              ("bn1", "BatchNorm", {}), ("r1", "ReLU", {}), ("mp", "MaxPool2D", {}))               # (4, 4, 4)
    a = g.chain(("c2", "Conv2D", {"filters": 3, "kernel_size": [3, 2], "stride": [1, 2], "padding": "explicit",
                                   "pad": [2, 1], "use_bias": False}),
              ("gap", "GlobalAveragePool", {}), after=x)                                          # (3,)
    b = g.chain(("ap", "AveragePool2D", {"kernel_size": [2], "stride": [1]}), ("fl", "Flatten", {}),
              ("db", "Dense", {"units": 5}), ("th", "Tanh", {}), after=x)                         # (5,)
    g.add_node("Concatenate", "cat")
    g.connect(a, "cat")
    g.connect(b, "cat")                                                                           # (8,)
    s = g.chain(("drop", "Dropout", {"rate": 0.4}), ("seq", "Reshape", {"shape": [2, -1]}),      # (2, 4)
              ("dt", "Dense", {"units": 3}), ("sg", "Sigmoid", {}), after="cat")                  # (2, 3) MatMul+Add
    t = g.chain(("dt2", "Dense", {"units": 3, "use_bias": False}), after="seq")                  # (2, 3) MatMul
    g.add_node("Concatenate", "cat0", {"axis": 0})
    g.connect(s, "cat0")
    g.connect(t, "cat0")                                                                          # (4, 3)
    h = g.chain(("fl2", "Flatten", {}), ("bn2", "BatchNorm", {}), ("d1", "Dense", {"units": 6}), after="cat0")
    k = g.chain(("d2", "Dense", {"units": 6}), after="fl2")
    m = g.chain(("d3", "Dense", {"units": 6, "use_bias": False}), ("r3", "ReLU", {}), after="cat")
    g.add_node("Add", "sum3")
    for src in (h, k, m):
        g.connect(src, "sum3")
    g.add_node("Add", "add2")
    g.connect("sum3", "add2")
    g.connect(k, "add2")
    g.chain(("logits", "Dense", {"units": 4}), ("soft", "Softmax", {}), after="add2")
    return g


# ---- weight files ----
@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_weight_files_round_trip_to_identical_predictions(tmp_path, ext):
    model = randomize(Model(every_layer_graph()))
    f = tmp_path / f"w.{ext}"
    save(f, model)
    other = Model(every_layer_graph(), seed=7)
    x = np.random.default_rng(0).normal(size=(9, 2, 8, 8)).astype(np.float32)
    assert not np.array_equal(other.predict(x), model.predict(x))
    load_into(other, f)
    assert np.array_equal(other.predict(x), model.predict(x))
    arrays, meta = load(f)
    assert set(arrays) == set(model.weights()) and meta["version"] == VERSION
    assert meta["graph"] == model.graph.to_dict() and meta["format"] == "layerboard-weights"


def test_safetensors_metadata_is_text_with_graph_json(tmp_path):
    from safetensors import safe_open
    model = trained(XOR)
    f = tmp_path / "xor.safetensors"
    save(f, model)
    with safe_open(str(f), framework="np") as s:
        meta = s.metadata()
        assert np.array_equal(s.get_tensor("hidden/W"), model.layers["hidden"].p["W"])
    assert all(isinstance(v, str) for v in meta.values())
    assert json.loads(meta["graph"]) == model.graph.to_dict() and json.loads(meta["version"]) == VERSION


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_shape_mismatch_names_the_tensor(tmp_path, ext):
    p = Project.load(XOR)
    save(tmp_path / f"w.{ext}", Model(p.graph))
    p.graph.nodes["hidden"].config["units"] = 3
    with pytest.raises(DataError, match=r"'hidden/W' has shape \(2, 2\) but the model needs \(3, 2\)"):
        load_into(Model(p.graph), tmp_path / f"w.{ext}")


def test_bad_weight_files_give_clear_errors(tmp_path):
    model = Model(Project.load(XOR).graph)
    with pytest.raises(DataError, match=r"use \.npz or \.safetensors"):
        save(tmp_path / "w.h5", model)
    for ext in ("npz", "safetensors"):
        (tmp_path / f"junk.{ext}").write_bytes(b"not a weights file at all")
        with pytest.raises(DataError, match=f"cannot read weights from .*junk.{ext}"):
            load_into(model, tmp_path / f"junk.{ext}")
    with pytest.raises(DataError, match="cannot read weights"):
        load_into(model, tmp_path / "missing.safetensors")
    from safetensors.numpy import save_file
    save_file(model.weights(), str(tmp_path / "new.safetensors"), metadata={"version": str(VERSION + 1)})
    with pytest.raises(DataError, match="newer Layerboard"):
        load_into(model, tmp_path / "new.safetensors")


# ---- ONNX ----
@pytest.mark.parametrize("project", [XOR, MLP])
def test_onnx_matches_predict_on_trained_examples(project):
    model = trained(project)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(33,) + model.input_shape).astype(np.float32) * (4 if project == MLP else 1)
    got, m = run_onnx(model, x)
    assert got.shape == (33,) + model.output_shape
    np.testing.assert_allclose(got, model.predict(x), atol=1e-4, rtol=0)
    assert m.opset_import[0].version == 17 and m.ir_version == 8
    props = {p.key: p.value for p in m.metadata_props}
    assert json.loads(props["layerboard_graph"]) == model.graph.to_dict()


def test_onnx_every_layer_type_matches_predict():
    model = randomize(Model(every_layer_graph()))
    assert {n.type for n in model.graph.nodes.values()} >= {
        "Input", "Conv2D", "BatchNorm", "ReLU", "MaxPool2D", "GlobalAveragePool", "AveragePool2D", "Flatten", "Dense",
        "Tanh", "Concatenate", "Dropout", "Reshape", "Sigmoid", "Add", "Softmax"}   # every layer type's own samples:
    # tests/test_enrolment.py
    x = np.random.default_rng(2).normal(1.0, 2.0, size=(17, 2, 8, 8)).astype(np.float32)
    want = model.predict(x)
    got, m = run_onnx(model, x)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.ptp(want) > 0.1                                                    # the comparison is not trivial
    ops = {n.op_type for n in m.graph.node}
    assert {"Sub", "Div", "Gemm", "MatMul", "Sum", "Concat", "Conv", "BatchNormalization",
            "GlobalAveragePool", "AveragePool", "MaxPool", "Identity"} <= ops
    got1, _ = run_onnx(model, x[:1])                                             # batch axis is symbolic
    np.testing.assert_allclose(got1, want[:1], atol=1e-4, rtol=0)


def test_onnx_digits_cnn_example():
    model = randomize(Model(Project.load(CNN).graph))
    x = np.random.default_rng(3).normal(size=(5,) + model.input_shape).astype(np.float32)
    np.testing.assert_allclose(run_onnx(model, x)[0], model.predict(x), atol=1e-4, rtol=0)


def test_onnx_of_a_lone_standardizing_input():
    g = Graph()
    g.add_node("Input", "x", {"shape": [3], "standardize": True})
    model = randomize(Model(g))
    from engine.onnx_export import to_onnx
    m = to_onnx(model)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(4).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], model.predict(x), atol=1e-6)


def test_layer_without_onnx_mapping_is_a_clear_error(monkeypatch, tmp_path):
    from engine import onnx_export
    from engine.layers import REGISTRY
    monkeypatch.setattr(REGISTRY["Tanh"], "to_onnx", None)                   # as a layer that declares none
    model = Model(every_layer_graph())
    assert onnx_export.problems(model) == [
        "cannot export Tanh 'th' to ONNX: Layerboard has no ONNX mapping for this layer type yet"]
    with pytest.raises(LayerboardError, match="cannot export Tanh 'th' to ONNX"):
        export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ---- command line ----
def cli(*args):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_train_safetensors_predict_and_export_onnx(tmp_path):
    w = tmp_path / "xor.safetensors"
    r = cli("train", XOR, "--epochs", "20", "--seed", "0", "--out", str(w))
    assert r.returncode == 0, r.stderr
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    np.save(tmp_path / "x.npy", x)
    r = cli("predict", XOR, "--weights", str(w), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    model = Model(Project.load(XOR).graph)
    load_into(model, w)
    assert np.array_equal(np.load(tmp_path / "y.npy"), model.predict(x))
    for fmt, out in (("onnx", "m.onnx"), ("npz", "w.npz"), (None, "w2.safetensors")):
        r = cli("export", XOR, "--weights", str(w), *(("--format", fmt) if fmt else ()), "-o", str(tmp_path / out))
        assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], model.predict(x), atol=1e-4)
    for f in ("w.npz", "w2.safetensors"):
        m2 = Model(Project.load(XOR).graph, seed=5)
        load_into(m2, tmp_path / f)
        assert np.array_equal(m2.predict(x), model.predict(x))


def test_cli_export_errors_are_one_line(tmp_path):
    w = tmp_path / "xor.npz"
    save(w, Model(Project.load(XOR).graph))
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    wide = Project.load(XOR)
    wide.graph.nodes["hidden"].config["units"] = 3
    wide.save(tmp_path / "wide.json")
    predict = ("predict", str(tmp_path / "wide.json"), "--weights", str(w), "--input", str(tmp_path / "x.npy"),
               "--output", str(tmp_path / "y.npy"))
    for args, says in ((("export", XOR, "--weights", str(w), "-o", str(tmp_path / "m.pt")), "from its extension"),
                       (predict, "'hidden/W' has shape (2, 2) but the model needs (3, 2)"),
                       (("export", MLP, "--weights", str(w), "-o", str(tmp_path / "m.onnx")), "do not fit this model"),
                       (("train", XOR, "--out", str(tmp_path / "w.pkl")), "use .npz or .safetensors")):
        r = cli(*args)
        assert r.returncode == 2 and says in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
