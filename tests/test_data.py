"""Built-in datasets and the CSV / .npy / .npz loaders with their error messages."""
import numpy as np
import pytest

from engine import DataError
from engine.data import BUILTINS, load, load_csv, load_npz


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtins_load_offline(name):
    d = load({"kind": "builtin", "name": name})
    assert len(d) == len(d.y) > 0 and d.x.dtype == np.float32 and np.all(np.isfinite(d.x))
    assert d.task in ("binary", "multiclass")


def test_digits_are_real_images():
    d = load({"kind": "builtin", "name": "digits"})
    assert d.x.shape == (1797, 64) and d.n_classes == 10 and d.x.max() == 1.0
    assert np.bincount(d.y).min() >= 170


def test_csv_with_string_classes(tmp_path):
    f = tmp_path / "iris.csv"
    f.write_text("a,b,species\n1,2,setosa\n3,4,virginica\n5,6,setosa\n")
    d = load_csv(f, target="species")
    assert d.classes == ["setosa", "virginica"] and list(d.y) == [0, 1, 0] and d.task == "binary"
    assert d.x.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_csv_regression_target_in_the_middle(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("x1,price,x2\n1,2.5,3\n4,5.25,6\n")
    d = load_csv(f, target="price", task="regression")
    assert d.y.ravel().tolist() == [2.5, 5.25] and d.x.tolist() == [[1, 3], [4, 6]]


@pytest.mark.parametrize("text,match", [
    ("a,b\n1,2\nx,3\n", r"line 3, column 'a': 'x' is not a number"),
    ("a,b\n1,2\n3\n", "line 3: 1 values but the header has 2"),
    ("a,b\n", "at least one data row"),
])
def test_csv_errors_name_file_and_line(tmp_path, text, match):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        load_csv(f, target="b")
    assert "bad.csv" in str(e.value)


def test_csv_unknown_column(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,b\n1,0\n")
    with pytest.raises(DataError, match="no column named 'label'; columns are a, b"):
        load_csv(f, target="label")


def test_npz_and_npy(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((5, 3)), y=np.arange(5) % 2)
    d = load_npz(tmp_path / "d.npz")
    assert d.x.shape == (5, 3) and d.task == "binary"
    np.save(tmp_path / "X.npy", np.zeros((4, 2)))
    np.save(tmp_path / "Y.npy", np.array([0, 1, 2, 1]))
    d = load({"kind": "npy", "path": "X.npy", "y": "Y.npy"}, base=tmp_path)
    assert d.task == "multiclass" and d.n_classes == 3


def test_npz_never_unpickles(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([object()], dtype=object), y=np.zeros(1))
    with pytest.raises(DataError, match="object arrays are never loaded"):
        load_npz(tmp_path / "o.npz")


def test_split_is_stratified_and_seeded():
    d = load({"kind": "builtin", "name": "digits"})
    tr, va = d.split(0.2, seed=3)
    assert len(tr) + len(va) == len(d)
    assert np.all(np.abs(np.bincount(va.y) - 0.2 * np.bincount(d.y)) <= 1)
    tr2, _ = d.split(0.2, seed=3)
    assert np.array_equal(tr.x, tr2.x)


@pytest.mark.parametrize("ref,match", [
    ({"name": "moons", "n": 0}, "n must be ≥ 4, got 0"),
    ({"name": "moons", "n": "many"}, "n must be a whole number"),
    ({"name": "spirals", "classes": 0}, "classes must be ≥ 2"),
    ({"name": "spirals", "n": 5, "classes": 3}, "needs n ≥ 2 per class"),
    ({"name": "circles", "noise": float("nan")}, "noise must be a finite number"),
    ({"name": "xor", "n": 10}, "'xor' has no option 'n'"),
])
def test_builtin_options_are_checked(ref, match):
    with pytest.raises(DataError, match=match):
        load({"kind": "builtin", **ref})


def test_builtin_options_still_apply():
    d = load({"kind": "builtin", "name": "spirals", "n": 40, "classes": 4, "noise": 0.0})
    assert len(d) == 40 and d.n_classes == 4
    assert load({"kind": "builtin", "name": "digits", "flat": False}).x.shape == (1797, 1, 8, 8)
