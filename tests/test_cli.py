"""The headless command line: summary, train, predict, and one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from resources import path

XOR, MLP = str(path("examples", "xor.json")), str(path("examples", "digits-mlp.json"))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=600)


def test_summary_json():
    r = cli("summary", MLP, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    fc1 = next(x for x in d["layers"] if x["name"] == "fc1")
    assert fc1["type"] == "Dense" and fc1["inputs"] == ["pixels"] and fc1["output_shape"] == [256]
    assert fc1["params"] == 64 * 256 + 256 and fc1["macs"] == 64 * 256 and fc1["config"]["units"] == 256
    assert d["total_params"] == sum(x["params"] for x in d["layers"])
    assert d["total_macs"] == sum(x["macs"] for x in d["layers"])
    assert fc1["activations"] == 256 and d["total_activations"] == sum(np.prod(x["output_shape"]) for x in d["layers"])
    assert d["total_macs_per_batch"] == d["batch_size"] * d["total_macs"] and d["batch_size"] > 1


def test_summary_table():
    r = cli("summary", XOR)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:-1]}
    assert rows["hidden"][1:] == ["Dense", "(2,)", "6", "4", "2"]          # W 2·2 + b 2 = 6, MACs 2·2 = 4
    assert rows["out"][1:] == ["Dense", "(1,)", "3", "2", "1"]             # 1·2 + 1 = 3
    assert rows["total"][1:] == ["9", "6", "8"]
    assert "activations" in r.stdout.splitlines()[0] and "MACs; activations" in r.stdout.splitlines()[-1]


def test_train_json_and_predict(tmp_path):
    w = tmp_path / "xor.npz"
    r = cli("train", XOR, "--seed", "0", "--json", "--out", str(w))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    final = lines[-1]
    assert len(lines) == 501 and final["epochs"] == 500 and final["train_accuracy"] == 1.0
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "epochs"} - set(final) == {"val_loss", "val_accuracy"}
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    np.save(tmp_path / "x.npy", x)
    r = cli("predict", XOR, "--weights", str(w), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (4, 1) and list((y[:, 0] > 0.5).astype(int)) == [0, 1, 1, 0]


def test_user_mistakes_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    for args in (("summary", str(bad)), ("train", str(tmp_path / "missing.json")),
                 ("train", XOR, "--out", str(tmp_path / "w.bin"))):
        r = cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_predict_with_weights_of_another_model(tmp_path):
    w = tmp_path / "xor.npz"
    assert cli("train", XOR, "--epochs", "1", "--out", str(w)).returncode == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    r = cli("predict", MLP, "--weights", str(w), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and "do not fit this model" in r.stderr


def test_train_out_onnx_writes_a_checked_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "xor.onnx"
    r = cli("train", XOR, "--epochs", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(onnx.load(str(out)))
    r = cli("train", XOR, "--epochs", "3", "--out", str(tmp_path / "xor.txt"))
    assert r.returncode != 0 and ".onnx" in r.stderr and "Traceback" not in r.stderr



@pytest.mark.parametrize("content", [b"", b"\x93NUMPY trunc", b"plain text"])
def test_predict_on_a_bad_input_file_is_one_line(tmp_path, content):
    w = tmp_path / "xor.npz"
    assert cli("train", XOR, "--epochs", "1", "--out", str(w)).returncode == 0
    (tmp_path / "x.npy").write_bytes(content)
    r = cli("predict", XOR, "--weights", str(w), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "x.npy" in r.stderr
