"""Imported models whose unsupported nodes are kept as OnnxNode layers (run in onnxruntime, not trainable), and an
imported project's dataset placeholder."""
import json

import numpy as np
import pytest

from engine.cli import main as cli
from engine.data import load
from engine.errors import DataError

import onnx  # noqa: E402  (a dependency)


def _gemm_model():
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    W = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [W])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_an_imported_project_has_a_placeholder_dataset_not_xor(tmp_path, capsys):
    f = tmp_path / "g.onnx"
    onnx.save(_gemm_model(), f)
    assert cli(["import", str(f), "-o", str(tmp_path / "p.json")]) == 0
    ref = json.loads((tmp_path / "p.json").read_text())["dataset"]
    assert ref == {"kind": "none", "input": [4]}
    with pytest.raises(DataError, match=r"choose data for a \(4,\) input"):
        load(ref)
    capsys.readouterr()
    assert cli(["train", str(tmp_path / "p.json"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "choose data for a (4,) input" in err and "\n" not in err
