"""PyTorch code export: a project as model.py + weights + a DDP train.py + its data, and checkpoints back in.

Each layer's to_torch() says which nn.Module mirrors it and how its tensors are named (an Emitted, emitters.py);
a layer type without one cannot be exported and the error names it. Needs only numpy: torch runs the output.
"""
import io
from pathlib import Path

import numpy as np

from ..errors import DataError, LayerboardError
from ..project import atomic_write
from .codegen import (class_name, emitter, from_state_dict, fused_head, identifiers, is_state_dict, model_source,
                      paths, reads_mask, state_dict, unsupported)
from .emitters import HELPERS, Emitted
from .data_template import data_source
from .train_template import train_source

FILES = ("model.py", "weights.safetensors", "train.py", "data.py", "data.npz", "README.md")

__all__ = ["HELPERS", "Emitted", "FILES", "class_name", "emitter", "export_project", "from_state_dict",
           "identifiers", "import_checkpoint", "is_state_dict", "model_source", "state_dict", "unsupported"]


def _prepared(project, weights=None):
    """(model, train, val) as a training run starts: the project's split, the Input adapted, weights loaded if given."""
    from ..data import load
    from ..model import Model
    cfg = project.training
    model = Model(project.graph, seed=cfg["seed"])
    msg = unsupported(model)
    if msg:                                                  # before the data is read
        raise LayerboardError(msg)
    ds = load(project.dataset, project.base)
    train, val = ds.split(cfg["validation_split"], cfg["seed"])
    if tuple(ds.x.shape[1:]) != model.input_shape:
        raise DataError(f"the dataset '{ds.name}' has samples of shape {tuple(ds.x.shape[1:])} but the model's "
                        f"Input expects {model.input_shape}")
    for n in model.inputs:
        model.layers[n].adapt(train.x)
    if isinstance(weights, dict):
        model.set_weights(weights, where="the trained weights")
    elif weights is not None:
        from ..weights import load_into
        load_into(model, weights)
    from ..session import describe
    from ..trainer import target_stats
    describe(model, train)                                   # as a run starts: statistics of the training split
    if cfg["loss"] == "mse" and train.task == "regression":
        mean, std = target_stats(train)
        model.data["y_mean"], model.data["y_std"] = mean.astype(model.dtype), std.astype(model.dtype)
    return model, train, val


def limits(project, train):
    """What train.py cannot reproduce for this project (empty: it trains as Layerboard does)."""
    if train.lengths is not None and train.per_step and train.target_lengths is None:
        return "per-step targets of sequences (losses and metrics over each sequence's valid steps)"
    return ""


def _npz(**arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


README = """# @@NAME@@ in PyTorch

Exported by Layerboard@@FROM@@. @@DESC@@

    python train.py                              # one process
    torchrun --nproc_per_node=2 train.py         # two processes with DistributedDataParallel (gloo / nccl)

`--epochs N` overrides the number of epochs, `--batch-size B` the global batch. Each epoch prints one JSON
line (`epoch`, `train_loss`, `val_loss`@@ACC@@, `elapsed`); the last line is the summary.
The trained weights land in `checkpoint.safetensors`; bring them back into Layerboard with

    layerboard import-weights @@PROJECT@@ --from checkpoint.safetensors -o trained.safetensors

or File ▸ Load weights… in the app (it reads the checkpoint directly).

| file | what |
| --- | --- |
| `model.py` | `@@CLASS@@`, an `nn.Module` with one attribute per node of the canvas |
| `weights.safetensors` | its `state_dict`: @@WEIGHTS@@ |
| `train.py` | loss, optimizer, hyperparameters, early stopping and seed as in the project |
| `data.py`, `data.npz` | the training ({ntrain} samples) and validation ({nval}) sets exactly as Layerboard splits them |

What is the same as in Layerboard: the model's outputs (checked to 1e-5), the loss, the update rule of the
optimizer (@@OPT@@), L2 weight decay on weights only, the batch size, epochs, patience with the best weights
restored, the validation split and the standardisation statistics@@AUGSAME@@. What differs: the order of the
mini-batches@@AUGDIFF@@, which come from torch's random numbers rather than numpy's;
with N processes each takes batch/N samples per step, and BatchNorm (if any) uses per-process batch
statistics on CPU (SyncBatchNorm on CUDA).
"""


def _readme(project, cls, model, train, val, weights_path):
    aug = project.dataset.get("augment")
    rep = {"@@NAME@@": project.name or cls, "@@CLASS@@": cls,
           "@@FROM@@": f" from `{project.path.name}`" if project.path else "",
           "@@DESC@@": project.description or "",
           "@@ACC@@": ", `train_accuracy`, `val_accuracy`" if project.training["loss"] in ("cce", "bce") else
                      ", `train_rmse`, `val_rmse`, `train_mae`, `val_mae`, `train_r2`, `val_r2`"
                      if "y_mean" in model.data else "",
           "@@PROJECT@@": str(project.path) if project.path else "PROJECT.json",
           "@@WEIGHTS@@": "the trained weights" if isinstance(weights_path, dict) else
                          f"the weights of `{Path(weights_path).name}`" if weights_path else
                          f"Layerboard's initialisation for seed {project.training['seed']}",
           "@@OPT@@": project.training["optimizer"],
           "@@AUGSAME@@": f"; the augmentation too ({aug})" if aug else "",
           "@@AUGDIFF@@": ", the dropout masks and the augmentation draws" if aug else " and the dropout masks"}
    s = README
    for k, v in rep.items():
        s = s.replace(k, v)
    return s.replace("{ntrain}", str(len(train))).replace("{nval}", str(len(val) if val is not None else 0))


def export_project(project, out_dir, weights=None):
    """Write the PyTorch project (FILES) to out_dir.

    weights: a weights file or {'node/param': array}; None: the initialisation for the project's seed.
    Returns (out_dir, what train.py cannot reproduce for this project: '' when nothing)."""
    model, train, val = _prepared(project, weights)
    cls = class_name(project.name)
    fused = fused_head(model, project.training["loss"])
    origin = f"{project.path.name}" if project.path else ""
    src = model_source(model, cls, doc=f"{project.name or cls} as a PyTorch module", logits=fused, origin=origin)
    from ..seq2seq_export import torch_translate
    src += torch_translate(model)                            # encoder–decoders: greedy decoding
    sd = state_dict(model)
    ids = paths(model)                                       # 'block1.conv1' inside a block's class
    decay = []                                               # torch names of the tensors with L2 decay
    for n in model.order:
        layer = model.layers[n]
        names = emitter(layer)(layer).params
        decay += [f"{ids[n]}.{names[k] if isinstance(names[k], str) else names[k][0]}"
                  for k, p in layer.params(layer.in_shapes).items() if p.decay]
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LayerboardError(f"cannot create the folder {out}: {e.strerror or e}") from None
    from safetensors.numpy import save
    empty = val if val is not None else train.subset(np.arange(0))
    extra = {} if train.lengths is None else {"lengths_train": train.lengths, "lengths_val": empty.lengths}
    if train.target_lengths is not None:                     # sentence pairs: the loss counts valid target steps
        extra.update(target_lengths_train=train.target_lengths, target_lengths_val=empty.target_lengths)
    files = {
        "model.py": src.encode(),
        "weights.safetensors": save(sd, metadata={"format": "pytorch-state-dict", "module": f"model.{cls}"}),
        "train.py": train_source(project, model, cls, decay, fused, limits(project, train),
                                 reads_mask(model)).encode(),
        "data.py": data_source(project, cls, train.task).encode(),
        "data.npz": _npz(x_train=train.x, y_train=train.y, x_val=empty.x, y_val=empty.y, **extra),
        "README.md": (_readme(project, cls, model, train, val, weights) + (
            f"\n**train.py does not train this project**: it cannot yet reproduce {limits(project, train)}, "
            "and says so when started. `model.py` and `weights.safetensors` reproduce the model's outputs.\n"
            if limits(project, train) else "")).encode(),
    }
    for name, data in files.items():
        atomic_write(out / name, data)
    return out, limits(project, train)


def import_checkpoint(project, path):
    """{'node/param': array} from a torch state_dict file (safetensors) written by the exported train.py."""
    from ..model import Model
    from ..weights import load_safetensors
    if Path(path).suffix.lower() != ".safetensors":
        raise DataError(f"{path}: a PyTorch checkpoint to import must be a .safetensors file "
                        "(train.py writes checkpoint.safetensors)")
    tensors, _ = load_safetensors(path)
    model = Model(project.graph, seed=project.training["seed"])
    msg = unsupported(model)
    if msg:
        raise LayerboardError(msg)
    return model, from_state_dict(model, tensors, where=str(path))
