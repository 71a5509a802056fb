"""Malformed data, weights, settings and names: one clear DataError/ConfigError/GraphError naming the file
and what is wrong, never another exception (issue 8, defect 9)."""
import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine import DataError
from engine.errors import ConfigError
from engine.data import load, load_idx, load_npz
from engine.data.images import load_folder
from engine.graph import Graph, GraphError
from engine.hparams import HP
from engine.layers import create
from engine.model import Model
from engine.project import Project, training_config
from engine.shapes import infer
from engine.weights import load_into
from resources import path

XOR = path("examples", "xor.json")


def idx(f, dims, body=b"", type_byte=0x08):
    f.write_bytes(bytes([0, 0, type_byte, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body)
    return f


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def one_line(e, name):
    msg = str(e.value)
    assert "\n" not in msg and name in msg, msg
    return msg


# ---- .npy / .npz datasets ----
@pytest.mark.parametrize("case,match", [
    ("empty.npz", "empty"),
    ("empty.npy", "empty"),
    ("truncated.npz", "damaged or not an"),
    ("text.npz", "not an .npy or .npz file"),
    ("crc.npz", "damaged or not an"),
    ("array.npz", "single .npy array, not an .npz archive"),
    ("zero.npz", "no samples"),
    ("nan.npz", "sample 2: contains NaN or infinity"),
    ("inf.npy", "sample 1: contains NaN or infinity"),
    ("bigy.npy", "1,000,000,000 means 1,000,000,001 classes"),
    ("raw.npz", "raw bytes"),
    ("strings.npz", "must be numeric"),
    ("complex.npz", "must be numeric"),
    ("scalar.npz", "single number"),
])
def test_bad_array_files(tmp_path, case, match):
    f = tmp_path / case
    x, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
    good = npz_bytes(x=x, y=y)
    if case.startswith("empty"):
        f.write_bytes(b"")
    elif case == "truncated.npz":
        f.write_bytes(good[: len(good) // 2])
    elif case == "text.npz":
        f.write_text("x,y\n1,2\n")
    elif case == "crc.npz":
        raw = bytearray(good)
        at = raw.index(b"\x93NUMPY") + 130                 # inside the data of the first member
        raw[at] ^= 0xFF
        f.write_bytes(bytes(raw))
    elif case == "array.npz":
        np.save(tmp_path / "a.npy", x)
        (tmp_path / "a.npy").rename(f)
    elif case == "zero.npz":
        f.write_bytes(npz_bytes(x=np.ones((0, 3)), y=np.zeros(0)))
    elif case == "nan.npz":
        x[2, 1] = np.nan
        f.write_bytes(npz_bytes(x=x, y=y))
    elif case == "inf.npy":
        x[1, 0] = np.inf
        np.save(f, x)
        np.save(tmp_path / "Y.npy", y)
    elif case == "bigy.npy":
        np.save(f, x)
        np.save(tmp_path / "Y.npy", np.array([0, 1, 0, 1e9]))
    elif case == "raw.npz":
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("x.npy", b"just some bytes")
            z.writestr("y.npy", b"more bytes")
    elif case == "strings.npz":
        f.write_bytes(npz_bytes(x=np.array([["1", "2"]] * 4), y=y))
    elif case == "complex.npz":
        f.write_bytes(npz_bytes(x=x + 1j, y=y))
    elif case == "scalar.npz":
        f.write_bytes(npz_bytes(x=np.float32(3), y=y))
    with pytest.raises(DataError, match=match) as e:
        load_npz(f, y="Y.npy") if case.endswith(".npy") else load_npz(f)
    one_line(e, "Y.npy" if case == "bigy.npy" else case)


def test_object_array_in_y_is_reported_against_y(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((2, 3)))
    np.save(tmp_path / "Y.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="object arrays are never loaded") as e:
        load({"kind": "npy", "path": "X.npy", "y": "Y.npy"}, base=tmp_path)
    msg = one_line(e, "Y.npy")
    assert "X.npy" not in msg


def test_nan_target_is_refused(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((3, 2)))
    np.save(tmp_path / "Y.npy", np.array([0.5, np.nan, 1.5]))
    with pytest.raises(DataError, match=r"Y\.npy, sample 1: the target is NaN"):
        load_npz(tmp_path / "X.npy", y="Y.npy")


# ---- IDX ----
def test_idx_dimensions_that_wrap_to_zero(tmp_path):
    """2¹⁶·2¹⁶·2¹⁶·2¹⁶ = 2⁶⁴ is 0 in int64: the file must not pass as an empty, valid array."""
    img = idx(tmp_path / "wrap.idx", (1 << 16,) * 4)
    lab = idx(tmp_path / "lab.idx", (1,), b"\x00")
    with pytest.raises(DataError, match="truncated") as e:
        load_idx(img, lab)
    one_line(e, "wrap.idx")


def test_idx_with_no_images(tmp_path):
    img, lab = idx(tmp_path / "img.idx", (0, 28, 28)), idx(tmp_path / "lab.idx", (0,))
    with pytest.raises(DataError, match="holds no images") as e:
        load_idx(img, lab)
    one_line(e, "img.idx")


def test_idx_huge_label_is_refused_before_naming_classes(tmp_path):
    img = idx(tmp_path / "img.idx", (2, 2, 2), bytes(8))
    lab = idx(tmp_path / "lab.idx", (2,), struct.pack(">2i", 0, 2**31 - 1), type_byte=0x0C)
    with pytest.raises(DataError, match="2,147,483,647 means 2,147,483,648 classes") as e:
        load_idx(img, lab)
    one_line(e, "lab.idx")


# ---- weights files ----
def _model():
    return Model(Project.load(XOR).graph)


def _safetensors(f, dtype, data):
    head = json.dumps({"hidden/W": {"dtype": dtype, "shape": [len(data) // 2], "data_offsets": [0, len(data)]}})
    head = head.encode() + b" " * (-len(head) % 8)
    f.write_bytes(struct.pack("<Q", len(head)) + head + data)
    return f


def test_bf16_safetensors_is_a_clear_error(tmp_path):
    f = _safetensors(tmp_path / "w.safetensors", "BF16", bytes(8))
    # numpy has no bfloat16 unless a package (ml_dtypes, loaded by onnx) registers one: refused either way
    with pytest.raises(DataError, match=r"'hidden/W' (has a type numpy cannot hold|holds raw records \(bfloat16\))") as e:
        load_into(_model(), f)
    one_line(e, "w.safetensors")


@pytest.mark.parametrize("bad,match", [
    (lambda w: w.astype(str), "holds text"),
    (lambda w: w + 1j, "holds complex numbers"),
])
def test_weights_of_strings_or_complex_are_refused_not_cast(tmp_path, bad, match):
    m = _model()
    w = m.weights()
    w["hidden/W"] = bad(w["hidden/W"])
    (tmp_path / "w.npz").write_bytes(npz_bytes(**w))
    before = m.theta.copy()
    with pytest.raises(DataError, match=f"'hidden/W' {match}") as e:
        load_into(m, tmp_path / "w.npz")
    one_line(e, "w.npz")
    assert np.array_equal(m.theta, before)


def test_weights_npz_member_of_raw_bytes(tmp_path):
    f = tmp_path / "w.npz"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("hidden/W.npy", b"\x00\x01\x02")
    with pytest.raises(DataError, match="raw bytes") as e:
        load_into(_model(), f)
    one_line(e, "w.npz")


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04 truncated"])
def test_empty_or_truncated_weights_npz(tmp_path, data):
    (tmp_path / "w.npz").write_bytes(data)
    with pytest.raises(DataError, match="cannot read weights") as e:
        load_into(_model(), tmp_path / "w.npz")
    one_line(e, "w.npz")


# ---- settings and names ----
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), json.loads("1e999")])
def test_non_finite_settings_are_refused(value):
    with pytest.raises(ConfigError, match="units must be a finite number"):
        create("Dense", "d", {"units": value})
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        training_config({"lr": value})
    for kind in ("int", "float"):
        with pytest.raises(ConfigError, match="finite"):
            HP("v", kind, 0).check(value)


def test_project_with_units_1e999_is_one_clear_error(tmp_path):
    d = json.loads(XOR.read_text())
    next(n for n in d["graph"]["nodes"] if n["name"] == "hidden")["config"]["units"] = "@"
    text = json.dumps(d).replace('"@"', "1e999")
    (tmp_path / "p.json").write_text(text)
    info = infer(Project.load(tmp_path / "p.json").graph)["hidden"]       # the canvas shows it on the node
    assert info.error == "Dense 'hidden': units must be a finite number, got inf"


def test_slash_in_node_names_is_refused():
    g = Graph()
    with pytest.raises(GraphError, match="contains '/'.*'hid_den'"):
        g.add_node("Dense", "hid/den")
    g.add_node("Dense", "hid")
    with pytest.raises(GraphError, match="contains '/'"):
        g.rename("hid", "a/b")
    assert list(g.nodes) == ["hid"]
    d = {"nodes": [{"name": "in", "type": "Input"}, {"name": "hid/den", "type": "Dense"}], "edges": []}
    with pytest.raises(GraphError, match="node #2: the node name 'hid/den' contains '/'"):
        Graph.from_dict(d)
    with pytest.raises(GraphError, match="non-empty text name"):
        g.add_node("Dense", 7)
    with pytest.raises(GraphError, match="non-empty text name"):
        g.rename("hid", "")


# ---- image folders: unreadable files are skipped and reported (issue 20, item 5) ----
def image_folder(root, per_class=4, size=(6, 5)):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(root / c / f"{i}.png")
    return root


def truncate(f):
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def fingerprints(root):
    return {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(root.rglob("*")) if f.is_file()}


def folder_project(tmp_path, dataset):
    g = Graph()
    g.add_node("Input", "in", {"shape": [1, 6, 5]})
    g.add_node("Flatten", "flat")
    g.add_node("Dense", "out", {"units": 2})
    g.add_node("Softmax", "p")
    for a, b in (("in", "flat"), ("flat", "out"), ("out", "p")):
        g.connect(a, b)
    Project(graph=g, dataset=dataset, training=training_config({"epochs": 1, "loss": "cce", "batch_size": 4})
            ).save(tmp_path / "p.json")
    return str(tmp_path / "p.json")


def test_image_folder_skips_unreadable_files_and_the_cli_reports_them(tmp_path, capsys):
    root = image_folder(tmp_path / "pics")
    truncate(root / "cat" / "3.png")
    (root / "dog" / "0.png").write_bytes(b"")
    (root / "dog" / "notes.png").write_text("not an image")
    before = fingerprints(root)
    ds = load({"kind": "folder", "path": "pics"}, base=tmp_path)
    note = ("3 of 9 images skipped: cat/3.png: truncated; dog/0.png: not an image PIL can read; "
            "dog/notes.png: not an image PIL can read")
    assert len(ds) == 6 and ds.y.tolist() == [0, 0, 0, 1, 1, 1] and ds.notes == [note]
    from engine import cli
    assert cli.main(["train", folder_project(tmp_path, {"kind": "folder", "path": "pics"})]) == 0
    err = capsys.readouterr().err
    assert f"note: {note}\n" in err and "Traceback" not in err
    assert fingerprints(root) == before


def test_image_folder_lists_at_most_five_skipped_files(tmp_path):
    root = image_folder(tmp_path / "pics", per_class=8)
    for i in range(7):
        truncate(root / "dog" / f"{i}.png")
    (note,) = load_folder(root).notes
    assert note.startswith("7 of 16 images skipped: dog/0.png: truncated; dog/1.png: truncated;")
    assert note.endswith("dog/4.png: truncated; … (2 more)") and "\n" not in note


def test_image_folder_refused_when_a_class_is_left_empty(tmp_path, capsys):
    root = image_folder(tmp_path / "pics", per_class=2)
    truncate(root / "dog" / "0.png")
    (root / "dog" / "1.png").write_bytes(b"GIF89a")
    before = fingerprints(root)
    with pytest.raises(DataError, match=r"class folder .*dog: none of its 2 images can be read \(dog/0\.png: "
                                        r"truncated, …\)") as e:
        load_folder(root)
    one_line(e, "dog")
    from engine import cli
    assert cli.main(["train", folder_project(tmp_path, {"kind": "folder", "path": "pics"})]) == 2
    err = capsys.readouterr().err
    assert err.startswith("layerboard train: class folder") and err.count("\n") == 1
    assert fingerprints(root) == before


def test_readable_image_folder_has_no_notes(tmp_path):
    assert load_folder(image_folder(tmp_path / "pics")).notes == []


# ---- text: long cells ----
def test_a_one_megabyte_text_cell_is_read(tmp_path):
    text = " ".join(f"w{i % 500}" for i in range(250_000))          # ~1.2 MB of words
    assert len(text) > 1 << 20
    f = tmp_path / "t.csv"
    f.write_text(f'review,label\n"{text}",pos\nshort text,neg\n"{text[:5000]}",neg\n')
    before = f.read_bytes(), f.stat().st_mtime_ns
    ds = load({"kind": "text", "path": "t.csv", "text": "review", "target": "label", "max_len": 50}, base=tmp_path)
    assert ds.x.shape == (3, 50) and ds.lengths.tolist() == [50, 2, 50] and np.all(np.isfinite(ds.x))
    assert ds.vocab[:2] == ["<pad>", "<unk>"] and ds.classes == ["neg", "pos"]
    ds = load({"kind": "text", "path": "t.csv", "text": "review", "target": "label", "level": "char",
               "max_len": 1_200_000}, base=tmp_path)
    assert ds.lengths[0] == len(text) and np.all(np.isfinite(ds.x))
    assert (f.read_bytes(), f.stat().st_mtime_ns) == before


def test_a_cell_beyond_the_limit_is_refused_with_its_line(tmp_path, monkeypatch):
    import csv
    from engine.data import sequences
    monkeypatch.setattr(sequences, "MAX_CELL", 1 << 20)
    limit = csv.field_size_limit()
    f = tmp_path / "t.csv"
    f.write_text('review,label\nfine,pos\nalso fine,neg\n"' + "x" * ((1 << 20) + 10) + '",pos\n')
    before = fingerprints(tmp_path)
    with pytest.raises(DataError, match=r"t\.csv, line 4: a cell is longer than 1 MiB") as e:
        load({"kind": "text", "path": "t.csv", "text": "review", "target": "label"}, base=tmp_path)
    one_line(e, "t.csv")
    assert fingerprints(tmp_path) == before
    assert csv.field_size_limit() == limit                          # the process-wide limit is restored


def test_text_rows_without_a_label_are_left_out_with_a_note(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("review,label\ngood,pos\nbad,neg\nno label,\nworse,NaN\nfine,pos\n")
    ds = load({"kind": "text", "path": "t.csv", "text": "review", "target": "label"}, base=tmp_path)
    assert len(ds) == 3 and ds.classes == ["neg", "pos"] and np.all(np.isfinite(ds.x))
    assert ds.notes == ["2 of 5 rows have no label in column 'label' and are left out (line 4, 5)"]
    f.write_text("review,label\ngood,\nbad,null\n")
    with pytest.raises(DataError, match="no row has a label in column 'label'"):
        load({"kind": "text", "path": "t.csv", "text": "review", "target": "label"}, base=tmp_path)


# ---- outputs are checked before training or predicting starts (issue 20, item 5) ----
def unwritable(tmp_path):
    """A folder nobody may write in: a 0o555 folder, or /sys when running as root (root ignores modes)."""
    import os
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0o555)
    for cand in (d, Path("/sys")):
        try:
            (cand / ".probe").write_bytes(b"")
            (cand / ".probe").unlink()
        except OSError:
            return cand
    pytest.skip("no folder here refuses writes (root on a system without a read-only /sys)")


@pytest.fixture
def no_work(monkeypatch):
    """Training, prediction and data loading fail the test if they start."""
    monkeypatch.setattr("engine.trainer.Trainer.run", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr("engine.model.Model.predict", lambda *a, **k: pytest.fail("prediction started"))
    monkeypatch.setattr("engine.data.load", lambda *a, **k: pytest.fail("data loading started"))


def cli_error(capsys, argv):
    from engine import cli
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"layerboard {argv[0]}: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("where,want", [
    ("missing/w.npz", "the folder {t}/missing does not exist"),
    ("adir.npz", "{t}/adir.npz is a folder; give a file name, e.g. {t}/adir.npz/model.npz"),
    ("afile.txt/w.npz", "{t}/afile.txt is a file, not a folder"),
    ("locked", "cannot write in the folder"),
])
def test_train_out_is_checked_before_training(tmp_path, capsys, no_work, where, want):
    (tmp_path / "adir.npz").mkdir()
    (tmp_path / "afile.txt").write_text("mine")
    out = unwritable(tmp_path) / "w.npz" if where == "locked" else tmp_path / where
    err = cli_error(capsys, ["train", str(XOR), "--out", str(out)])
    assert f"--out {out}" in err and want.format(t=tmp_path) in err
    assert (tmp_path / "afile.txt").read_text() == "mine"


@pytest.fixture
def xor_weights(tmp_path):
    from engine.weights import save
    save(tmp_path / "w.npz", _model())
    np.save(tmp_path / "x.npy", np.array([[0, 1], [1, 1]], np.float32))
    return tmp_path / "w.npz"


@pytest.mark.parametrize("flag", ["--output", "--attention"])
def test_predict_outputs_are_checked_before_predicting(tmp_path, capsys, no_work, xor_weights, flag):
    locked = unwritable(tmp_path)
    outs = {"--output": tmp_path / "y.npy", "--attention": None}
    outs[flag] = locked / "o.npz"
    argv = ["predict", str(XOR), "--weights", str(xor_weights), "--input", str(tmp_path / "x.npy")]
    argv += [a for k, v in outs.items() if v is not None for a in (k, str(v))]
    err = cli_error(capsys, argv)
    assert f"{flag} {locked / 'o.npz'}: cannot write in the folder {locked}" in err
    assert not (tmp_path / "y.npy").exists()


def test_export_output_is_checked_first(tmp_path, capsys, xor_weights):
    (tmp_path / "afile").write_text("mine")
    locked = unwritable(tmp_path)
    err = cli_error(capsys, ["export", str(XOR), "--weights", str(xor_weights), "-o", str(locked / "m.onnx")])
    assert f"-o {locked / 'm.onnx'}: cannot write in the folder {locked}" in err
    err = cli_error(capsys, ["export", str(XOR), "--format", "pytorch", "-o", str(tmp_path / "afile" / "proj")])
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err
    err = cli_error(capsys, ["export", str(XOR), "--format", "pytorch", "-o", str(locked / "new" / "proj")])
    assert f"cannot write in the folder {locked}" in err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_failed_final_write_keeps_the_trained_weights(tmp_path, capsys, monkeypatch):
    """The folder was writable at the start but the write fails at the end (disk full): the weights are saved
    in the temporary folder and the one line says where."""
    import errno
    import tempfile

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("engine.weights.export", full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    err = cli_error(capsys, ["train", str(XOR), "--epochs", "2", "--out", str(tmp_path / "w.npz")])
    assert f"cannot write {tmp_path / 'w.npz'}: No space left on device; the trained weights are saved in " in err
    saved = Path(err.rsplit(" ", 1)[1])
    assert saved.parent == tmp_path / "tmp" and not (tmp_path / "w.npz").exists()
    m = _model()
    before = m.theta.copy()
    load_into(m, saved)
    assert not np.array_equal(m.theta, before)                          # trained weights, not the initial ones


def test_predict_attention_on_a_model_without_attention_names_the_layers_that_have_it(tmp_path, capsys, xor_weights):
    argv = ["predict", str(XOR), "--weights", str(xor_weights), "--input", str(tmp_path / "x.npy"),
            "--attention", str(tmp_path / "a.npz"), "--output", str(tmp_path / "y.npy")]
    err = cli_error(capsys, argv)
    assert "--attention: this model has no attention layer (" in err
    assert "MultiHeadSelfAttention" in err and "CrossAttention" in err and "Traceback" not in err
