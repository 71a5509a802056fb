"""The training step's accuracy and label check as single kernels: the same counts as numpy's argmax (first
maximum, first NaN) and the same one-line error for a label outside the classes."""
import numpy as np
import pytest

from engine.errors import TrainingError
from engine.losses import CCE
from engine.metrics import argmax_hits, correct


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argmax_hits_counts_as_numpy_with_ties_nan_and_infinity(dtype):
    rng = np.random.default_rng(0)
    for trial in range(200):
        out = rng.integers(0, 3, (40, 5)).astype(dtype)          # many ties
        out[rng.random(out.shape) < (0.1 if trial % 2 else 0.0)] = np.nan
        out[rng.random(out.shape) < (0.1 if trial % 3 else 0.0)] = -np.inf if trial % 4 else np.inf
        y = rng.integers(0, 5, 40)
        want = int(np.sum(np.argmax(out, axis=1) == y))
        assert argmax_hits(out, y) == want
        assert correct(out, y, "cce") == (float(want), 40.0)
    assert correct(np.eye(3, dtype=np.float32), np.array([0.0, 1.0, 1.0]), "cce") == (2.0, 3.0)   # float labels


def test_cce_refuses_labels_outside_the_classes_in_one_line():
    z = np.zeros((4, 3), np.float32)
    for bad in ([0, 1, 3, 2], [0, -1, 2, 2]):
        with pytest.raises(TrainingError, match=r"class labels must lie in 0…2 .* found"):
            CCE()(z, np.array(bad), fused=True)
    loss, d = CCE()(z, np.array([0, 1, 2, 2], np.int32), fused=True)
    assert np.isclose(loss, np.log(3)) and d.shape == z.shape
