"""Shared pieces of the sequence views: which layers to look at, the probe's lengths, masks and tokens."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel

from engine.layers import REGISTRY

MAX_TICKS = 40          # axis labels shown at most (every k-th token beyond that)


def exposing(tap):
    """Layer types that declare the tap (e.g. "hidden": RNN, LSTM, GRU), in registry order."""
    return tuple(t for t, cls in REGISTRY.items() if tap in cls.taps_doc)


def layers_of(model, types):
    """Names of the model's nodes of a layer type (or of any of several types), in graph order."""
    types = (types,) if isinstance(types, str) else tuple(types)
    return [n for n in model.order if model.graph.nodes[n].type in types]


def pick(names, want):
    return want if want in names else (names[0] if names else "")


def chosen(model, types, want):
    """The model's layer of these types named `want`, else its first one ("" when it has none)."""
    return pick(layers_of(model, types), want)


def lengths(probe, idx):
    """(n,) int valid steps of the probe samples idx (full length when the data has no lengths)."""
    idx = np.atleast_1d(idx)
    lens = getattr(probe, "lengths", None)
    if lens is None:
        t = probe.x.shape[1] if probe.x.ndim >= 2 else 1
        return np.full(len(idx), t, np.int64)
    return np.asarray(lens, np.int64)[idx]


def mask(probe, idx):
    """(n, T) bool of valid steps for the probe samples idx, or None when the data has no lengths."""
    if getattr(probe, "lengths", None) is None:
        return None
    return np.arange(probe.x.shape[1])[None, :] < lengths(probe, idx)[:, None]


def model_inputs(model, probe, idx):
    """(inputs, masks, the mask a loss counts) of the probe samples idx: arrays, or for an encoder–decoder dicts
    whose target Input reads the samples' targets shifted right (teacher forcing)."""
    from engine.seq2seq import source_input, steps_mask, target_input, teacher_inputs
    idx = np.atleast_1d(idx)
    tgt = target_input(model)
    if tgt is None or getattr(probe, "target_lengths", None) is None:
        m = mask(probe, idx)
        return probe.x[idx], m, m
    y, src = np.asarray(probe.y)[idx], source_input(model)
    tm = steps_mask(probe.target_lengths[idx], y.shape[1])
    return {src: probe.x[idx], tgt: teacher_inputs(y)}, {src: mask(probe, idx), tgt: tm}, tm


def forward(model, probe, idx):
    """Evaluation-mode forward of the probe samples idx (their masks included); returns their lengths."""
    x, m, _ = model_inputs(model, probe, idx)
    model.forward(x, training=False, mask=m)
    return lengths(probe, np.atleast_1d(idx))


def tokens(probe, i, n):
    """Text of the first n input tokens of probe sample i when the data has a vocabulary, else None."""
    vocab = getattr(probe, "vocab", None)
    x = probe.x[i]
    if not vocab or x.ndim > 2 or (x.ndim == 2 and x.shape[1] != 1):
        return None
    ids = np.asarray(x).reshape(-1)[:n].astype(np.int64)
    return [vocab[j] if 0 <= j < len(vocab) else "?" for j in ids]


def sample_index(probe, options, key="seq_sample"):
    """The chosen validation sample, clipped to the probe's samples."""
    return int(np.clip(int(options.get(key, 0) or 0), 0, max(len(probe.x) - 1, 0)))


def set_ticks(axis, labels, n):
    """Tokens (or step numbers 1…n) as an axis's labels at cell centres, thinned to at most MAX_TICKS."""
    every = max(1, -(-n // MAX_TICKS))
    names = labels if labels is not None else [str(t + 1) for t in range(n)]
    axis.setTicks([[(t + 0.5, str(names[t])) for t in range(0, n, every)], []])


def image_item(cmap="viridis"):
    img = pg.ImageItem(axisOrder="row-major")
    img.setColorMap(pg.colormap.get(cmap))
    return img


def layer_row(view, option, label="Recurrent layer:"):
    """(row, combo): the label and a combo that stores its choice in view.options[option] and re-probes."""
    row = QHBoxLayout()
    row.addWidget(QLabel(label))
    combo = QComboBox()
    combo.setMinimumContentsLength(8)

    def chose(name):
        if name:
            view.options[option] = name
            view.reprobe.emit(view.key)
    combo.currentTextChanged.connect(chose)
    row.addWidget(combo, 1)
    return row, combo


def refill(combo, ctx, types):
    """Fill combo with the run's layers of the given types, keeping the current choice while it exists; returns it."""
    keep = combo.currentText()
    names = [n for n in ctx.get("layers", []) if ctx.get("types", {}).get(n) in types]
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    combo.setCurrentText(pick(names, keep))
    combo.blockSignals(False)
    return combo.currentText()
