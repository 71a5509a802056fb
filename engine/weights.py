"""Trained weights in .npz or .safetensors files, with the project's graph and the format version in the metadata."""
import io
import json
from pathlib import Path

import numpy as np

from .errors import DataError, TrainingError
from .project import VERSION, atomic_write

META = "__layerboard__"
FORMATS = ("npz", "safetensors")           # weight files; export() also writes "onnx"


def meta_for(model):
    meta = {"format": "layerboard-weights", "version": VERSION, "graph": model.graph.to_dict(),
            "dtype": model.dtype.name}
    if model.meta:
        meta["data"] = model.meta        # vocabulary and text options, so that predict reads raw text
    return meta


def format_of(path, formats=FORMATS):
    """The format a file name's extension names ('npz', 'safetensors', ...), or a DataError listing the choices."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in formats:
        raise DataError(f"cannot tell the format of {path} from its extension: use "
                        + " or ".join(f".{f}" for f in formats))
    return ext


# ---- .npz ----
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
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read weights from {path}: {e}") from None
    except Exception as e:                  # zipfile.BadZipFile and kin: a damaged or foreign file
        raise DataError(f"cannot read weights from {path}: not a weights .npz ({e})") from None
    meta = arrays.pop(META, None)
    if meta is not None and (not isinstance(meta, np.ndarray) or meta.dtype.kind != "U" or meta.ndim != 0):
        raise DataError(f"{path}: its Layerboard metadata '{META}' is not a text entry")
    try:
        meta = json.loads(str(meta)) if meta is not None else {}
    except json.JSONDecodeError:
        raise DataError(f"{path}: its Layerboard metadata is not valid JSON") from None
    return _tensors(arrays, path), _checked(meta, path)


# ---- .safetensors ----
def save_safetensors(path, model):
    """Write every tensor as 'node/param'; the metadata (str → str) holds format, version, dtype and graph JSON."""
    from safetensors.numpy import save
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta_for(model).items()}
    arrays = {k: np.ascontiguousarray(v) for k, v in model.weights().items()}
    atomic_write(path, save(arrays, metadata=meta))


def load_safetensors(path):
    """(tensors, metadata) from a weights .safetensors file."""
    from safetensors import SafetensorError, safe_open
    arrays, key = {}, None
    try:
        with safe_open(str(path), framework="np") as f:
            raw = f.metadata() or {}
            for key in f.keys():
                arrays[key] = f.get_tensor(key)
    except (OSError, SafetensorError, ValueError) as e:
        raise DataError(f"cannot read weights from {path}: {e}") from None
    except TypeError as e:                  # a dtype numpy has no type for, e.g. BF16
        raise DataError(f"cannot read weights from {path}: tensor '{key}' has a type numpy cannot hold "
                        f"({e}); save the weights as float32") from None
    arrays = _tensors(arrays, path)
    meta = dict(raw)
    for k in ("version", "graph", "data"):
        if k in meta:
            try:
                meta[k] = json.loads(meta[k])
            except json.JSONDecodeError:
                raise DataError(f"{path}: its Layerboard metadata '{k}' is not valid JSON") from None
    return arrays, _checked(meta, path)


def _tensors(arrays, path):
    """The arrays, refused (never cast) unless each is a real-valued numeric array."""
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):
            raise DataError(f"{path}: '{k}' is not an array (raw bytes in the archive)")
        if v.dtype.kind not in "biuf":
            kind = {"c": "complex numbers", "U": "text", "S": "bytes", "O": "objects", "V": "raw records"}
            raise DataError(f"{path}: tensor '{k}' holds {kind.get(v.dtype.kind, v.dtype)} ({v.dtype}); "
                            "weights must be real numbers")
    return arrays


def _checked(meta, path):
    if not isinstance(meta, dict):
        raise DataError(f"{path}: its Layerboard metadata is not a JSON object")
    v = meta.get("version", 0)
    if not isinstance(v, int):
        raise DataError(f"{path}: its Layerboard metadata has version {v!r}, not a whole number")
    if v > VERSION:
        raise DataError(f"{path} was written by a newer Layerboard (version {v})")
    return meta


# ---- by extension ----
SAVERS = {"npz": save_npz, "safetensors": save_safetensors}
LOADERS = {"npz": load_npz, "safetensors": load_safetensors}


def beside(project_path):
    """Where a project's trained weights are kept: NAME.weights.safetensors beside NAME.json (the window loads it)."""
    p = Path(project_path or "")
    return p.with_name(f"{p.stem}.weights.safetensors")


def save(path, model):
    """Write model's weights in the format path's extension names (.npz or .safetensors)."""
    SAVERS[format_of(path)](path, model)


def load(path):
    """(tensors, metadata) from a .npz or .safetensors weights file."""
    return LOADERS[format_of(path)](path)


def load_into(model, path):
    """Load a weights file into model; a shape or name mismatch raises a clear error."""
    arrays, meta = load(path)
    try:
        model.set_weights(arrays, where=f"the weights in {path}")
    except TrainingError as e:
        raise DataError(str(e)) from None
    data = meta.get("data", {})
    model.meta = dict(data) if isinstance(data, dict) else {}


def export(model, path, format=None):
    """Write model to path as 'npz', 'safetensors' or 'onnx' (default: the format path's extension names)."""
    format = format or format_of(path, FORMATS + ("onnx",))
    if format == "onnx":
        from .onnx_export import save_onnx
        save_onnx(path, model)
    elif format in SAVERS:
        SAVERS[format](path, model)
    else:
        raise DataError(f"unknown export format {format!r}: use npz, safetensors or onnx")
