"""Image data: IDX and image-folder loaders, augmentation, the built-in MNIST digits, a digits-cnn smoke test."""
import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from engine import DataError
from engine.errors import ConfigError
from engine.data import augment, load, load_folder, load_idx, read_idx
from engine.project import Project
from engine.session import prepare
from resources import path


def write_idx(f, a, type_byte=0x08, gz=False):
    a = np.asarray(a)
    head = bytes([0, 0, type_byte, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    raw = head + a.astype(a.dtype.newbyteorder(">")).tobytes()
    f.write_bytes(gzip.compress(raw) if gz else raw)
    return f


# ---- IDX ----
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    lab = np.array([3, 1, 4, 1, 5, 9, 2], np.uint8)
    fi = write_idx(tmp_path / ("i.idx3-ubyte" + ".gz" * gz), img, gz=gz)
    fl = write_idx(tmp_path / ("l.idx1-ubyte" + ".gz" * gz), lab, gz=gz)
    d = load({"kind": "idx", "images": fi.name, "labels": fl.name}, base=tmp_path)
    assert d.x.shape == (7, 1, 5, 4) and d.x.dtype == np.float32 and d.task == "multiclass"
    assert np.array_equal(np.round(d.x[:, 0] * 255).astype(np.uint8), img)
    assert d.y.tolist() == lab.tolist() and d.n_classes == 10
    assert load_idx(fi, fl, flat=True).x.shape == (7, 20)
    names = [f"c{i}" for i in range(10)]
    assert load({"kind": "idx", "images": str(fi), "labels": str(fl), "classes": names}).classes == names
    with pytest.raises(DataError, match="label 9 but only 5 class names"):
        load_idx(fi, fl, classes=names[:5])


def test_idx_other_types_are_big_endian(tmp_path):
    a = np.array([[1.5, -2.0], [3.25, 1e6]], np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f.idx", a, 0x0D)), a)
    b = np.array([-300, 70000, 5], np.int32)
    assert read_idx(write_idx(tmp_path / "i.idx", b, 0x0C)).tolist() == b.tolist()


def test_idx_errors_name_the_file(tmp_path):
    img = write_idx(tmp_path / "img.idx", np.zeros((4, 3, 3), np.uint8))
    lab = write_idx(tmp_path / "lab.idx", np.zeros(4, np.uint8))
    (tmp_path / "png.idx").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(DataError, match=r"png\.idx is not an IDX file: bad magic number 89504e47"):
        load_idx(tmp_path / "png.idx", lab)
    (tmp_path / "short.idx").write_bytes(img.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"short\.idx: truncated: the header promises 4×3×3 values \(52 bytes\) "
                                        r"but the file has 47"):
        load_idx(tmp_path / "short.idx", lab)
    (tmp_path / "head.idx").write_bytes(img.read_bytes()[:9])
    with pytest.raises(DataError, match=r"head\.idx: truncated IDX header"):
        load_idx(tmp_path / "head.idx", lab)
    lab5 = write_idx(tmp_path / "lab5.idx", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"img\.idx holds 4 images but .*lab5\.idx holds 5 labels"):
        load_idx(img, lab5)
    with pytest.raises(DataError, match=r"lab\.idx: an image IDX file holds"):
        load_idx(lab, lab)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(img.read_bytes())[:30])
    with pytest.raises(DataError, match=r"bad\.gz is a damaged \.gz file"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(DataError, match=r"cannot read .*missing\.idx"):
        read_idx(tmp_path / "missing.idx")
    with pytest.raises(DataError, match="the idx dataset needs a 'labels'"):
        load({"kind": "idx", "images": str(img)})
    with pytest.raises(DataError, match="the idx dataset has no option 'size'"):
        load({"kind": "idx", "images": str(img), "labels": str(lab), "size": 3})


# ---- image folders ----
def make_folder(root, rgb_class=None, n=3, size=(10, 12)):
    """root/<class>/<i>.png: class 'bar' has a bright column, 'dot' a bright pixel; (W, H) = size."""
    for c in ("bar", "dot"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            a = np.zeros(size[::-1], np.uint8)                # (H, W)
            if c == "bar":
                a[:, 2 + i] = 200
            else:
                a[3, 3 + i] = 255
            im = Image.fromarray(a)
            if c == rgb_class:
                rgb = np.stack([a, a // 2, np.zeros_like(a)], -1)     # a reddish image, (H, W, 3)
                im = Image.fromarray(rgb)
            im.save(root / c / f"{i}.png")
    return root


def test_folder_grey_classes_from_folder_names(tmp_path):
    root = make_folder(tmp_path / "set")
    (root / "bar" / "notes.txt").write_text("ignored: not an image")
    d = load({"kind": "folder", "path": "set"}, base=tmp_path)
    assert d.classes == ["bar", "dot"] and d.y.tolist() == [0, 0, 0, 1, 1, 1] and d.task == "binary"
    assert d.x.shape == (6, 1, 12, 10) and d.x.dtype == np.float32
    assert d.x[0, 0, :, 2].min() == pytest.approx(200 / 255) and d.x[4, 0, 3, 4] == 1.0 and d.x[4].sum() == 1.0


def test_folder_rgb_and_resize(tmp_path):
    root = make_folder(tmp_path / "set", rgb_class="dot")
    d = load_folder(root, size=[6, 5])
    assert d.x.shape == (6, 3, 6, 5)                           # auto: one image has colour -> RGB
    red, green = d.x[3, 0], d.x[3, 1]
    assert red.max() > 0 and np.allclose(green, np.floor(red * 255 / 2) / 255, atol=2 / 255)
    assert d.x[:3, 0].tolist() == d.x[:3, 2].tolist()          # the grey images stay grey in RGB
    g = load_folder(root, size=8, mode="L")
    assert g.x.shape == (6, 1, 8, 8) and g.x[3].max() > 0


def test_folder_errors(tmp_path):
    root = make_folder(tmp_path / "set")
    (root / "dot" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    d = load_folder(root)                                      # skipped and reported (tests/test_bad_input.py)
    assert len(d) == 5 and d.notes == ["1 of 6 images skipped: dot/2.png: not an image PIL can read"]
    (root / "dot" / "2.png").unlink()
    Image.new("L", (7, 7)).save(root / "dot" / "big.png")
    with pytest.raises(DataError, match=r"big\.png is 7×7 pixels but the first image is 10×12; give .* 'size'"):
        load_folder(root)
    assert load_folder(root, size=[4, 4]).x.shape == (6, 1, 4, 4)
    (root / "dot" / "big.png").unlink()
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty holds no images"):
        load_folder(root)
    with pytest.raises(DataError, match="has no sub-folders"):
        load_folder(root / "bar")
    with pytest.raises(DataError, match="'size' must be"):
        load_folder(root, size=[0, 3])
    with pytest.raises(DataError, match="'mode' must be"):
        load_folder(root, mode="CMYK")


# ---- augmentation ----
def test_augment_is_seeded_and_keeps_shape_and_dtype():
    x = np.random.default_rng(0).random((8, 2, 9, 7), dtype=np.float32)
    fn = augment.make({"shift": 2, "rotate": 15, "flip": True, "noise": 0.1})
    a, b = fn(x, np.random.default_rng(5)), fn(x, np.random.default_rng(5))
    c = fn(x, np.random.default_rng(6))
    assert a.shape == x.shape and a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert augment.make({})(x, np.random.default_rng(0)) is x


def test_shift_moves_a_known_pixel():
    x = np.zeros((200, 1, 9, 9), np.float32)
    x[:, 0, 4, 4] = 1.0
    y = augment.make({"shift": 2})(x, np.random.default_rng(1))
    pos = np.array([np.unravel_index(np.argmax(s[0]), (9, 9)) for s in y]) - 4       # (200, 2) moves
    assert np.all(y.sum(axis=(1, 2, 3)) == 1.0) and np.all(y.max(axis=(1, 2, 3)) == 1.0)   # moved, not blurred
    assert set(map(tuple, pos)) == {(i, j) for i in range(-2, 3) for j in range(-2, 3)}
    edge = np.zeros((1, 1, 5, 5), np.float32)
    edge[0, 0, :, 4] = 1.0
    out = [augment.make({"shift": 1})(edge, np.random.default_rng(s))[0, 0] for s in range(30)]
    assert any(o.sum() == 0 for o in out)                      # shifted off the image: zeros come in


def test_flip_and_rotate():
    x = np.zeros((64, 1, 8, 8), np.float32)
    x[:, 0, 2, 1] = 1.0
    y = augment.make({"flip": True})(x, np.random.default_rng(0))
    flipped = y[:, 0, 2, 6] == 1.0
    assert 10 < flipped.sum() < 54 and np.all(y[~flipped, 0, 2, 1] == 1.0)
    z = np.zeros((1, 1, 9, 9), np.float32)
    z[0, 0, 4, :] = 1.0                                        # a horizontal line through the centre
    r = augment.make({"rotate": 90})(np.repeat(z, 50, 0), np.random.default_rng(2))
    assert np.allclose(r[:, 0, 4, 4], 1.0, atol=1e-5)          # the centre stays
    steep = r[:, 0, 0, 4] + r[:, 0, 8, 4]                      # near ±90°: the line becomes vertical
    assert steep.max() > 1.0 and r[:, 0].sum(axis=(1, 2)).std() > 0


def test_noise_statistics():
    x = np.full((64, 1, 28, 28), 0.5, np.float32)
    y = augment.make({"noise": 0.05})(x, np.random.default_rng(0))
    d = y - x
    assert abs(d.mean()) < 0.002 and abs(d.std() - 0.05) < 0.002
    assert abs(np.mean(np.abs(d) < 0.05) - 0.6827) < 0.01     # Gaussian, not uniform
    flat = augment.make({"noise": 0.1})(np.zeros((100, 64), np.float32), np.random.default_rng(0))
    assert flat.shape == (100, 64)


def test_augment_config_errors():
    with pytest.raises(ConfigError, match="augment has no option 'shear'"):
        augment.make({"shear": 3})
    with pytest.raises(ConfigError, match="'rotate'.* must be a number from 0 to 180"):
        augment.make({"rotate": -5})
    with pytest.raises(ConfigError, match="'shift' is in whole pixels"):
        augment.make({"shift": 1.5})
    with pytest.raises(ConfigError, match="need image samples"):
        augment.make({"shift": 1})(np.zeros((4, 64), np.float32), np.random.default_rng(0))


def test_augment_runs_on_training_batches_only():
    """The trainer calls the hook once per training batch, never for validation or the final evaluation."""
    p = Project.load(path("examples", "digits-mlp.json"))
    p.training.update(epochs=2, batch_size=200)
    model, tr = prepare(p)
    seen = []

    def spy(xb, rng):
        seen.append(len(xb))
        return xb
    tr.augment = spy
    tr.run()
    assert sum(seen) == 2 * len(tr.train) and len(seen) == 2 * -(-len(tr.train) // 200)


def small_image_project(augment_cfg):
    nodes = [("px", "Input", {"shape": [1, 8, 8]}), ("flat", "Flatten", {}), ("fc", "Dense", {"units": 10}),
             ("sm", "Softmax", {})]
    return Project.from_dict({
        "format": "layerboard-project", "version": 1,
        "graph": {"nodes": [{"name": n, "type": t, "config": c} for n, t, c in nodes],
                  "edges": [{"src": a[0], "dst": b[0], "port": 0} for a, b in zip(nodes, nodes[1:])]},
        "training": {"loss": "cce", "epochs": 1, "batch_size": 64},
        "dataset": {"kind": "builtin", "name": "digits", "flat": False, "augment": augment_cfg}})


def test_project_augment_wiring_and_load_ignores_it():
    cfg = {"shift": 1, "noise": 0.02}
    p = small_image_project(cfg)
    assert load(p.dataset).x.shape == (1797, 1, 8, 8)
    _, tr = prepare(p)
    xb = tr.train.x[:5]
    assert np.array_equal(tr.augment(xb, np.random.default_rng(3)), augment.make(cfg)(xb, np.random.default_rng(3)))
    assert tr.run()["status"] == "completed"
    m2, tr2 = prepare(small_image_project(cfg))
    tr2.run()
    assert np.array_equal(tr.model.theta, m2.theta)                # augmented training is seeded end to end
    m3, plain = prepare(small_image_project({}))
    assert plain.augment is None
    plain.run()
    assert not np.array_equal(m3.theta, m2.theta)
    with pytest.raises(ConfigError, match="no option 'zoom'"):
        prepare(small_image_project({"zoom": 2}))


# ---- the built-in MNIST digits ----
def test_mnist_builtin_real_digits():
    d = load({"kind": "builtin", "name": "mnist"})
    assert d.x.shape == (10000, 1, 28, 28) and d.x.dtype == np.float32 and d.task == "multiclass"
    assert d.x.min() == 0.0 and d.x.max() == 1.0 and d.n_classes == 10
    counts = np.bincount(d.y)
    assert counts.min() >= 850 and counts.max() <= 1150
    assert d.x[:, 0, 0].max() == 0 and d.x[:, 0, :3].mean() < 0.01 * d.x[:, 0, 10:18, 10:18].mean()  # empty margin
    means = np.stack([d.x[d.y == c, 0].mean(0) for c in range(10)])    # (10, 28, 28)
    assert np.abs(means[1] - means[0]).mean() > 0.1
    assert means[0][14, 14] < 0.2 < means[1][14, 14]          # a 0 has a hole where a 1 has its stroke
    assert means[1].sum() < 0.6 * means[0].sum()              # ones use far less ink than zeros
    assert load({"kind": "builtin", "name": "mnist", "flat": True}).x.shape == (10000, 784)


def test_digits_cnn_smoke():
    """A few batches of the shipped digits-cnn project lower the loss (the full run is in the report)."""
    p = Project.load(path("examples", "digits-cnn.json"))
    assert p.dataset["name"] == "mnist"
    ds = load(p.dataset).subset(np.arange(400))
    p.training.update(epochs=1, batch_size=32, validation_split=0.05)
    model, tr = prepare(p, data=ds)
    assert tr.augment is not None
    xb, yb = tr.train.x[:128], tr.train.y[:128]
    before = tr.loss(model.forward(xb, logits=tr.fused), yb, tr.fused)[0]
    tr.run()
    after = tr.loss(model.forward(xb, logits=tr.fused), yb, tr.fused)[0]
    assert after < 0.8 * before
