"""A Softmax / LogSoftmax output layer under categorical cross-entropy: the loss reads the classes along the last
axis, so a head normalising over another axis is refused in one line naming it; over the last axis it trains."""
import numpy as np
import pytest

from engine.data import Dataset
from engine.errors import TrainingError
from engine.graph import Graph
from engine.model import Model
from engine.project import Project
from engine.trainer import Trainer


def head_model(head, axis, shape):
    g = Graph()
    g.chain(("in", "Input", {"shape": list(shape)}), ("d", "Dense", {"units": 3}), ("probs", head, {"axis": axis}))
    return Model(g)


@pytest.mark.parametrize("head", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [0, -2])
def test_a_head_over_another_axis_than_the_classes_is_refused(head, axis):
    ds = Dataset(np.zeros((4, 5, 2), np.float32), np.zeros((4, 5), np.int64), "multiclass", "d", ["a", "b", "c"],
                 lengths=np.full(4, 5))                                     # a class per step
    with pytest.raises(TrainingError, match=f"^categorical cross-entropy reads the classes along the last axis, but "
                                            f"the output layer 'probs' \\({head}\\) normalises over axis {axis}: set "
                                            "its axis to −1 or use mse$"):
        Trainer(head_model(head, axis, (5, 2)), Project().training | {"loss": "cce"}, ds)


@pytest.mark.parametrize("head", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [0, -1])
def test_a_head_over_the_last_axis_trains(head, axis):
    """(3,) outputs: axis 0 is the last axis, the classes; the loss goes down."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (32, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)
    tr = Trainer(head_model(head, axis, (2,)), Project().training | {"loss": "cce", "lr": 0.05},
                 Dataset(x, y, "multiclass", "d", ["a", "b", "c"]))
    first = tr.train_step(x, y)[0]
    for _ in range(20):
        last = tr.train_step(x, y)[0]
    assert last < first
