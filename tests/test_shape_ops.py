"""Layout layers of ONNX models (issue 22): Transpose as Permute, Slice/Split as Slice layers, DepthToSpace,
SpaceToDepth. The ONNX backend cases are imported and compared with the outputs shipped with them."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from test_onnx_ops_more import frozen, imported, layer_types

spec = importlib.util.spec_from_file_location("onnx_coverage", Path(__file__).parents[1] / "tools" / "onnx_coverage.py")
cov = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cov)


def shipped(suite, name):
    """(model, inputs, expected outputs) of a case the installed onnx wheel ships as files."""
    import onnx
    from onnx import numpy_helper
    d = Path(onnx.__file__).parent / "backend" / "test" / "data" / suite / name
    read = lambda f: numpy_helper.to_array(onnx.load_tensor(str(f)))       # noqa: E731
    ds = d / "test_data_set_0"
    return (onnx.load(str(d / "model.onnx")), [read(f) for f in sorted(ds.glob("input_*.pb"))],
            [read(f) for f in sorted(ds.glob("output_*.pb"))])


# ---- Transpose: a Permute when the batch axis stays first ----
@pytest.mark.parametrize("name", ["test_transpose_all_permutations_0", "test_transpose_all_permutations_1"])
def test_transpose_cases_keeping_the_batch_axis_import_as_permute(name):
    m, xs, want = frozen(name)
    model = imported(m)
    assert layer_types(model) == ["Permute"]
    np.testing.assert_allclose(model.predict(xs[0].astype(np.float32)), want, rtol=1e-6, atol=1e-6)
    assert cov.classify(m)[0] == "layer"


@pytest.mark.parametrize("name", ["test_transpose_all_permutations_2", "test_transpose_default"])
def test_transpose_moving_the_batch_axis_is_a_missing_option(name):
    m, _, _ = frozen(name)
    assert cov.classify(m)[:2] == ("option", ["Transpose: moves the batch axis (Permute)"])


@pytest.mark.parametrize("suite,name,types", [("pytorch-operator", "test_operator_permute2", ["Permute"]),
                                              ("pytorch-converted", "test_PixelShuffle", ["Reshape", "Permute",
                                                                                         "Reshape"])])
def test_pytorch_permutes_import_and_predict_the_shipped_outputs(suite, name, types):
    m, xs, want = shipped(suite, name)
    model = imported(m)
    assert sorted(layer_types(model)) == sorted(types)
    np.testing.assert_allclose(model.predict(xs[0].astype(np.float32)), want[0], rtol=1e-5, atol=1e-6)
    assert cov.classify(m)[0] == "layer"
