"""Greedy decoding beside the exports of an encoder–decoder: translate() in the PyTorch model.py, and a script that
runs the exported ONNX model (teacher-forced scoring of the whole target) in a loop, one token per pass."""
import inspect
from pathlib import Path

from .data.pairs import detokenize
from .project import atomic_write
from .seq2seq import END, START, source_input, target_input

TORCH_TRANSLATE = '''

TARGET_STEPS = @@T@@       # the target Input's length: decoding stops there at the latest


@torch.no_grad()
def translate(model, src, src_lengths, max_len=TARGET_STEPS, start=@@START@@, end=@@END@@):
    """Greedy decoding as `layerboard predict`: id lists (without <start> and <end>) for source ids src (B, S)
    with src_lengths (B,) valid steps. Each pass scores the prefix <start> + the tokens so far (the decoder is
    causal, so later steps change nothing) and appends the most probable next token, until <end> or max_len."""
    model.eval()
    src = torch.as_tensor(src, dtype=torch.float32)
    lengths = torch.as_tensor(src_lengths)
    B, S = src.shape
    T = TARGET_STEPS
    src_mask = torch.arange(S)[None, :] < lengths[:, None]                        # (B, S)
    prefix = torch.zeros(B, T)                                                    # (B, T) ids, then padding
    prefix[:, 0] = start
    out, live = [[] for _ in range(B)], [True] * B
    for t in range(min(max_len, T)):
        tgt_mask = (torch.arange(T) <= t).expand(B, T)                            # (B, T) the prefix's steps
        nxt = model(src, prefix, src_mask, tgt_mask)[:, t].argmax(-1)             # (B,) most probable next id
        for i in range(B):
            if live[i]:
                live[i] = int(nxt[i]) != end
                if live[i]:
                    out[i].append(int(nxt[i]))
        if not any(live):
            break
        if t + 1 < T:
            prefix[:, t + 1] = nxt
    return out
'''

ONNX_GREEDY = '''"""Greedy decoding with the encoder–decoder exported by Layerboard to @@FILE@@ (onnxruntime only).

The ONNX graph scores a whole target at once (teacher forcing): inputs @@SRC@@ (B, S) source ids, @@TGT@@ (B, T) the
target so far (<start> = @@START@@ first, padded with 0), lengths (B,) and target_lengths (B,) valid steps; output
(B, T, V) next-token probabilities. Greedy decoding runs it once per generated token:

    python @@SCRIPT@@ "a source sentence"      # models with their vocabularies (characters or words): text in, out
    python @@SCRIPT@@ 5,9,13                   # any model: source ids in, target ids out
"""
import sys
import unicodedata

import numpy as np
import onnxruntime as ort

START, END, S, T = @@START@@, @@END@@, @@S@@, @@T@@
VOCAB = @@VOCAB@@                  # source token id -> text (None: not saved with the weights)
TARGET_VOCAB = @@TARGET_VOCAB@@    # target token id -> text
CHARS, LOWER = @@CHARS@@, @@LOWER@@      # character tokens (else words); lower-cased before encoding


def words(text):
    """Word tokens as Layerboard makes them: runs of letters, marks, digits and _; any other non-space character
    is a token of its own."""
    out, cur = [], ""
    for c in text:
        if unicodedata.category(c)[0] in "LMN" or c == "_":
            cur += c
            continue
        out += [cur] if cur else []
        cur = ""
        if not (c.isspace() or unicodedata.category(c)[0] == "Z"):
            out.append(c)
    return out + ([cur] if cur else [])


@@DETOKENIZE@@

def greedy(session, src, src_lengths, max_len=T):
    """Id lists (without <start> and <end>) of source ids src (B, S) with src_lengths (B,) valid steps."""
    src = np.asarray(src, np.float32)
    B = len(src)
    lengths = np.asarray(src_lengths, np.int32)
    prefix = np.zeros((B, T), np.float32)                                        # (B, T)
    prefix[:, 0] = START
    out, live = [[] for _ in range(B)], np.ones(B, bool)
    for t in range(min(max_len, T)):
        probs = session.run(None, {"@@SRC@@": src, "@@TGT@@": prefix, "lengths": lengths,
                                   "target_lengths": np.full(B, t + 1, np.int32)})[0]   # (B, T, V)
        nxt = probs[:, t].argmax(-1)                                             # (B,)
        for i in np.flatnonzero(live):
            live[i] = nxt[i] != END
            if live[i]:
                out[i].append(int(nxt[i]))
        if not live.any():
            break
        if t + 1 < T:
            prefix[:, t + 1] = nxt
    return out


def encode(arg):
    """(ids (1, S), [length], is text) of "5,9,13" or, for models with a vocabulary, of a text (cut to S)."""
    try:
        ids, text = [int(v) for v in arg.split(",")], None
    except ValueError:
        if not VOCAB:
            raise SystemExit("this model takes source ids: python @@SCRIPT@@ 5,9,13")
        text = arg.strip().lower() if LOWER else arg.strip()
        ix = {t: i for i, t in enumerate(VOCAB)}
        ids = [ix.get(c, 1) for c in (text if CHARS else words(text))] or [1]      # 1: <unk>
    ids = ids[:S]
    return np.array([ids + [0] * (S - len(ids))], np.float32), [len(ids)], text is not None


if __name__ == "__main__":
    sess = ort.InferenceSession("@@FILE@@", providers=["CPUExecutionProvider"])
    src, lengths, is_text = encode(sys.argv[1])
    out = greedy(sess, src, lengths)[0]
    toks = [TARGET_VOCAB[i] for i in out] if is_text else []
    print(("".join(toks) if CHARS else detokenize(toks)) if is_text else ",".join(map(str, out)))
'''


def _fill(text, **kv):
    for k, v in kv.items():
        text = text.replace(f"@@{k}@@", str(v))
    return text


def torch_translate(model):
    """The translate() source appended to model.py for an encoder–decoder ('' for other models)."""
    tgt = target_input(model)
    if tgt is None:
        return ""
    return _fill(TORCH_TRANSLATE, T=model.infos[tgt].shape[0], START=START, END=END)


def onnx_greedy(model, onnx_name, script_name):
    """The greedy-decoding script for the ONNX export of an encoder–decoder."""
    tgt, src = target_input(model), source_input(model)
    text = model.meta.get("text") or {}
    return _fill(ONNX_GREEDY, FILE=onnx_name, SCRIPT=script_name, SRC=src, TGT=tgt, S=model.infos[src].shape[0],
                 T=model.infos[tgt].shape[0], START=START, END=END, VOCAB=repr(model.meta.get("vocab")),
                 TARGET_VOCAB=repr(model.meta.get("target_vocab")), CHARS=text.get("tokens") == "char",
                 LOWER=bool(text.get("lowercase")), DETOKENIZE=inspect.getsource(detokenize))


def save_onnx_greedy(path, model):
    """Beside an encoder–decoder's .onnx file, its greedy-decoding script <stem>_greedy.py; returns its path or None."""
    if target_input(model) is None:
        return None
    path = Path(path)
    script = path.with_name(path.stem + "_greedy.py")
    atomic_write(script, onnx_greedy(model, path.name, script.name).encode())
    return script
