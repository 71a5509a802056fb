"""Image datasets from the user's files: IDX (MNIST, Fashion-MNIST; optionally .gz) and class folders."""
import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .files import check_labels, read_bytes

# IDX type byte -> big-endian numpy dtype (the format's header is big-endian too)
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


def read_idx(path):
    """The array stored in one IDX file (gzip-compressed or not), checked against its header."""
    path = Path(path)
    raw = read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path} is not an IDX file: bad magic number {raw[:4].hex() or '(empty file)'} "
                        "(expected 0000 then a type byte and the number of dimensions, e.g. 00000803 for images)")
    dt, nd = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    head = 4 + 4 * nd
    if len(raw) < head:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, {nd} dimensions need {head})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", nd, 4))
    need = head + math.prod(dims) * dt.itemsize           # Python ints: a product never wraps around
    if len(raw) < need:
        raise DataError(f"{path}: truncated: the header promises {'×'.join(map(str, dims))} values "
                        f"({need:,} bytes) but the file has {len(raw):,} bytes")
    if len(raw) > need:
        raise DataError(f"{path}: {len(raw) - need:,} bytes after the {'×'.join(map(str, dims))} values "
                        "its header announces; not a valid IDX file")
    return np.frombuffer(raw, dt, offset=head).reshape(dims).astype(dt.newbyteorder("="))


def load_idx(images, labels, flat=False, classes=None):
    """Images (N, 1, H, W) and labels (N,) from IDX files, e.g. MNIST's train-images-idx3-ubyte(.gz).

    classes optionally names the labels 0, 1, … (e.g. Fashion-MNIST's "T-shirt/top", "Trouser", …).
    """
    images, labels = Path(images), Path(labels)
    x, y = read_idx(images), read_idx(labels)
    if x.ndim not in (3, 4):
        raise DataError(f"{images}: an image IDX file holds (N, H, W) or (N, H, W, C) values, this one "
                        f"{'×'.join(map(str, x.shape))}")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{labels}: a label IDX file holds N whole numbers, this one "
                        f"{'×'.join(map(str, y.shape))} of {y.dtype}")
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x):,} images but {labels} holds {len(y):,} labels")
    if x.size == 0:
        raise DataError(f"{images} holds no images: its header gives the dimensions {'×'.join(map(str, x.shape))}")
    if y.size and y.min() < 0:
        raise DataError(f"{labels}: negative label {int(y.min())}")
    check_labels(y, len(y), labels)
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError(f"{images}, image {int(np.argmax(~np.isfinite(x.reshape(len(x), -1)).all(1)))}: "
                        "contains NaN or infinity")
    if classes is not None:
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise DataError(f"{labels}: 'classes' must be a list of names, got {classes!r}")
        if y.size and y.max() >= len(classes):
            raise DataError(f"{labels}: label {int(y.max())} but only {len(classes)} class names are given")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)      # (N, C, H, W)
    if flat:
        x = x.reshape(len(x), -1)                                     # (N, C·H·W)
    return Dataset(x, y, "multiclass", images.name, list(classes or []))


def _size(size):
    if size is None:
        return None
    s = [size, size] if isinstance(size, int) else list(size) if isinstance(size, (list, tuple)) else []
    if len(s) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in s):
        raise DataError(f"image folder: 'size' must be [height, width] of whole numbers 1–4096, got {size!r}")
    return tuple(s)


def load_folder(path, size=None, mode="auto"):
    """Images in one sub-folder per class (class names = folder names), resized to size = [H, W]; (N, C, H, W).

    mode "L" gives 1 channel, "RGB" 3, "auto" 1 if every image is grey and 3 otherwise.
    Without size every image must already have the size of the first one. Unreadable or damaged files are
    skipped and listed in the dataset's notes; a class left without images is refused.
    """
    from PIL import Image
    path, size = Path(path), _size(size)
    if mode not in ("L", "RGB", "auto"):
        raise DataError(f"image folder {path}: 'mode' must be L (grey), RGB or auto, got {mode!r}")
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist or is not a folder")
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"image folder {path} has no sub-folders; put each class's images in its own sub-folder")
    fixed, imgs, ys, skipped, total = size is not None, [], [], [], 0
    for c, name in enumerate(classes):
        files = sorted(f for f in (path / name).iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        if not files:
            raise DataError(f"class folder {path / name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        total += len(files)
        before = len(skipped)
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if mode == "L" else "RGB")          # decodes the whole image
            except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
                skipped.append(f"{name}/{f.name}: {_why(e)}")
                continue
            size = size or (im.height, im.width)
            if (im.height, im.width) != size:
                if not fixed:
                    raise DataError(f"{f} is {im.width}×{im.height} pixels but the first image is "
                                    f"{size[1]}×{size[0]}; give the folder dataset a 'size' to resize to")
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            imgs.append(np.asarray(im, np.uint8).reshape(size[0], size[1], -1))   # (H, W, C)
            ys.append(c)
        if len(skipped) - before == len(files):
            raise DataError(f"class folder {path / name}: none of its {len(files):,} images can be read "
                            f"({skipped[before]}{', …' if len(files) > 1 else ''})")
    x = np.stack(imgs)                                                # (N, H, W, C)
    if mode == "auto" and np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2]):
        x = x[..., :1]                                                # every image is grey: (N, H, W, 1)
    x = x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0           # (N, C, H, W)
    ds = Dataset(x, np.array(ys), "binary" if len(classes) == 2 else "multiclass", path.name, classes)
    ds.notes = [f"{len(skipped):,} of {total:,} images skipped: " + "; ".join(skipped[:5]) +
                (f"; … ({len(skipped) - 5:,} more)" if len(skipped) > 5 else "")] if skipped else []
    return ds


def _why(e):
    """A short reason an image file could not be read, from PIL's exception."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "truncated" in msg:
        return "truncated"
    if "cannot identify image file" in msg:
        return "not an image PIL can read"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return msg[:100]
