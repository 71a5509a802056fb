"""Trained weights in .npz files, with the project's graph and the format version in the metadata."""
import io
import json

import numpy as np

from .errors import DataError, TrainingError
from .project import VERSION, atomic_write

META = "__layerboard__"


def meta_for(model):
    return {"format": "layerboard-weights", "version": VERSION, "graph": model.graph.to_dict(),
            "dtype": model.dtype.name}


def save_npz(path, model):
    """Write every tensor as 'node/param' plus a JSON metadata string; atomic."""
    buf = io.BytesIO()
    arrays = model.weights()
    arrays[META] = np.array(json.dumps(meta_for(model)))
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def load_npz(path):
    """(tensors, metadata) from a weights .npz; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read weights from {path}: {e}") from None
    meta = arrays.pop(META, None)
    try:
        meta = json.loads(str(meta)) if meta is not None else {}
    except json.JSONDecodeError:
        raise DataError(f"{path}: its Layerboard metadata is not valid JSON") from None
    if meta.get("version", 0) > VERSION:
        raise DataError(f"{path} was written by a newer Layerboard (version {meta['version']})")
    return arrays, meta


def load_into(model, path):
    """Load a weights file into model; a shape or name mismatch raises a clear error."""
    arrays, _ = load_npz(path)
    try:
        model.set_weights(arrays, where=f"the weights in {path}")
    except TrainingError as e:
        raise DataError(str(e)) from None
