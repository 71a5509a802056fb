"""Try a trained model on one input of the user's own: a drawn or loaded image, a typed text, a row of the data.

The window's Try-it panel and scripts share these: each turns the input into one sample as the dataset does,
runs the model in evaluation mode and returns what to show (classes with probabilities, or the value, and the
attention / hidden-state taps of that sample).
"""
import numpy as np

from .errors import DataError


def image_sample(pixels, input_shape):
    """(1, *input_shape) float32 from a grey or RGB image (H, W) / (H, W, 3) with values in 0…1: ink centred
    by its centre of mass and scaled into the middle of the frame as MNIST's digits are, then resized to the
    model's input (C, H, W) or flattened to (H·W,)."""
    from PIL import Image
    a = np.asarray(pixels, np.float32)
    if a.ndim not in (2, 3) or a.size == 0:
        raise DataError(f"an image must be (H, W) or (H, W, 3) pixels, got shape {a.shape}")
    shape = tuple(input_shape)
    chans = shape[0] if len(shape) == 3 else 1
    side = (shape[1], shape[2]) if len(shape) == 3 else _square(shape)
    grey = a if a.ndim == 2 else a.mean(axis=2)
    if chans == 1:
        a = _centred(grey, side)
        return a.reshape((1,) + shape).astype(np.float32)
    rgb = a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).resize(side[::-1], Image.BILINEAR)
    return (np.asarray(img, np.float32) / 255).transpose(2, 0, 1)[None].reshape((1,) + shape)


def _square(shape):
    """(H, W) of a flat input (D,) that is a square image, e.g. 64 → 8×8, 784 → 28×28."""
    if len(shape) != 1 or round(shape[0] ** 0.5) ** 2 != shape[0]:
        raise DataError(f"the model's input {shape} is not an image (C, H, W) or a flat square image")
    s = round(shape[0] ** 0.5)
    return s, s


def _centred(grey, side):
    """Ink's bounding box scaled to 20/28 of the frame (aspect kept), centred on its centre of mass."""
    from PIL import Image
    H, W = side
    ys, xs = np.nonzero(grey > 0.05)
    if not len(ys):
        return np.zeros(side, np.float32)
    box = grey[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    k = (20 / 28) * min(H, W) / max(box.shape)
    h, w = max(1, round(box.shape[0] * k)), max(1, round(box.shape[1] * k))
    small = np.asarray(Image.fromarray((box * 255).astype(np.uint8)).resize((w, h), Image.LANCZOS), np.float32) / 255
    out = np.zeros(side, np.float32)
    total = small.sum()
    cy, cx = ((np.arange(h)[:, None] * small).sum() / total, (np.arange(w)[None, :] * small).sum() / total) \
        if total > 0 else (h / 2, w / 2)
    top, left = int(round(H / 2 - cy)), int(round(W / 2 - cx))
    top, left = min(max(top, 0), H - h), min(max(left, 0), W - w)
    out[top:top + h, left:left + w] = small
    return out


def text_sample(text, meta):
    """(ids (1, T), lengths (1,)) of one typed text with the vocabulary saved with the model."""
    from .data.sequences import texts_to_ids
    if not text.strip():
        raise DataError("type some text first")
    return texts_to_ids([text], meta)


def predict(model, x, lengths=None, classes=None):
    """What the Try-it panel shows for one sample x (1, …): {"kind": "classes", "labels", "probabilities", "top"}
    or {"kind": "value", "value"}, plus "taps" {node: {tap: array of that sample}} for the sequence views."""
    y = model.predict(np.asarray(x, np.float32), lengths=lengths)[0]
    taps = {}
    for name in model.order:
        layer = model.layers[name]
        keep = {k: np.array(v[0]) for k, v in layer.taps.items() if k in ("attention", "hidden")
                and getattr(v, "ndim", 0) >= 2 and len(v) == 1}
        if keep:
            taps[name] = keep
    out = {"taps": taps, "lengths": None if lengths is None else int(np.asarray(lengths)[0])}
    head = model.layers[model.output].type
    if y.ndim == 1 and head in ("Softmax", "Sigmoid") and (len(y) > 1 or head == "Sigmoid"):
        p = np.array([1 - y[0], y[0]]) if len(y) == 1 else y
        labels = list(classes) if classes is not None and len(classes) == len(p) else [str(i) for i in range(len(p))]
        order = np.argsort(-p)
        return {**out, "kind": "classes", "labels": labels, "probabilities": p.astype(float).tolist(),
                "top": int(order[0])}
    return {**out, "kind": "value", "value": y.astype(float).tolist()}


def translation(model, text=None, ids=None, lengths=None, k=1, max_len=None):
    """What the Try-it panel shows for one source sentence of a model trained on sentence pairs: typed text, or
    source ids (1, S) with lengths (1,) of a data row. {"kind": "translation", "text", "source_tokens",
    "target_tokens" (<end> last when generated), "maps": {cross-attention node: (heads, target steps, source
    steps)}} ({} when the model's attention cannot be read)."""
    from .data.pairs import END, decode_targets, encode_sources
    from .translate import decode_ids
    if ids is None:
        if text is None or not text.strip():
            raise DataError("type a sentence first")
        ids, lengths, _ = encode_sources([text], model.meta)
    ids, lengths = np.asarray(ids, np.float32)[:1], np.asarray(lengths)[:1]
    out = decode_ids(model, ids, lengths, k, max_len)[0]
    vocab, tv = model.meta["vocab"], model.meta["target_vocab"]
    top = int(model.meta["text"]["target_max_len"]) if max_len is None else max_len
    steps = out + [END] if len(out) < top else out
    return {"kind": "translation", "text": decode_targets([out], model.meta)[0],
            "source_tokens": [vocab[int(v)] for v in ids[0, :int(lengths[0])]],
            "target_tokens": [tv[i] for i in steps], "maps": cross_maps(model, ids, lengths, out, len(steps))}


def cross_maps(model, ids, lengths, out, t):
    """{node: (heads, t, source length)} cross-attention of one source while the decoder reads <start> + the
    decoded ids `out` (engine.seq2seq.alignment): row j holds the weights that produced output token j."""
    try:
        from .seq2seq import alignment
    except ImportError:                      # the model side (engine.seq2seq) is not there: no heatmap
        return {}
    maps = alignment(model, ids, lengths, [list(out)])
    n = int(lengths[0])
    out = {}
    for name, a in (maps.items() if isinstance(maps, dict) else enumerate(maps)):
        a = np.asarray(a, np.float64)
        a = a[0] if a.ndim == 4 else a                                   # (heads, T, S) of the one sample
        out[str(name)] = a[:, :t, :n]
    return out
