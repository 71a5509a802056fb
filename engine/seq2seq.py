"""Encoder–decoder models: teacher forcing, training batches of two streams, a next-token step, alignments.

A model with an Input whose feed is "target" reads the target tokens shifted right by one step (starting with
<start> = 2) and outputs (T, V) next-token probabilities; the loss counts the valid target steps only
(Dataset.target_lengths, which count <end>). Token ids: 0 <pad>, 1 <unk>, 2 <start>, 3 <end>.
"""
import numpy as np

from .errors import TrainingError

PAD, UNK, START, END = 0, 1, 2, 3


def teacher_inputs(y, start=START):
    """(N, T) decoder inputs (float32 ids): y shifted right by one step, starting with `start` (teacher forcing)."""
    y = np.asarray(y)
    out = np.empty(y.shape, np.float32)                     # (N, T)
    out[:, :1] = start
    out[:, 1:] = y[:, :-1]
    return out


def target_input(model):
    """Name of the model's Input fed by the target (the decoder input), or None for one-stream models."""
    return next((n for n, f in model.feeds.items() if f == "target"), None)


def source_input(model):
    """Name of the Input fed by the data's x (the first Input whose feed is source)."""
    return next(n for n in model.inputs if model.feeds[n] != "target")


def steps_mask(lengths, T):
    """(n, T) bool: step t < lengths[i]."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


class Batch(dict):
    """{Input name: array}; [i:j] or [indices] slices every array, keeping `target` (the target Input's name)."""

    target = None

    def __getitem__(self, k):
        if isinstance(k, str):
            return dict.__getitem__(self, k)
        b = Batch({n: None if v is None else v[k] for n, v in self.items()})
        b.target = self.target
        return b

    @property
    def loss(self):
        """The target Input's entry: the mask the loss and the per-step metrics count."""
        return dict.__getitem__(self, self.target)


class Teacher:
    """Builds the model's inputs for samples of a pairs dataset: the source ids, the teacher-forced target."""

    def __init__(self, model):
        self.model = model
        self.src, self.tgt = source_input(model), target_input(model)

    def check(self, ds):
        """TrainingError unless ds has sentence pairs whose shapes fit the two Inputs and the output."""
        m = self.model
        if ds.target_lengths is None:
            raise TrainingError(f"the model has a target Input '{self.tgt}' (an encoder–decoder) but the dataset "
                                f"'{ds.name}' has no target sequences: use a sentence-pairs dataset (kind \"pairs\") "
                                f"or set the Input's feed to source")
        for n, shape, what in ((self.src, ds.x.shape[1:], "source"), (self.tgt, ds.y.shape[1:], "target")):
            if tuple(m.infos[n].shape) != tuple(shape):
                raise TrainingError(f"the dataset '{ds.name}' has {what} sequences of shape {tuple(shape)} but the "
                                    f"Input '{n}' expects {tuple(m.infos[n].shape)}: set its shape to {list(shape)}")
        T, V = ds.y.shape[1], len(ds.target_vocab or ds.classes)
        out = tuple(m.output_shape)
        if len(out) != 2 or out[0] != T or out[1] < V:
            raise TrainingError(f"'{ds.name}' has target sequences of {T} steps over {V} tokens, so the output layer "
                                f"'{m.output}' needs shape ({T}, {V}), not {out}")

    METRICS = ("exact_match", "token_accuracy", "bleu")
    LIMIT = 200            # validation pairs decoded per evaluation (greedy: one forward per target step)

    def metrics(self, ds, prefix, limit=None):
        """{prefix_exact_match, prefix_token_accuracy, prefix_bleu} of greedy decoding of ds's first `limit` pairs."""
        from .text_metrics import evaluate_translation
        r = evaluate_translation(self.model, ds, self.LIMIT if limit is None else limit)
        return {f"{prefix}_{k}": float(r[k]) for k in self.METRICS if k in r}

    def batch(self, ds, idx):
        """(inputs, y, masks) of samples idx: Batch {source: x, target: teacher_inputs(y)}, the (n, T) targets and
        Batch {source: (n, S) mask, target: (n, T) mask} whose .loss is the target's."""
        y = ds.y[idx]
        x = Batch({self.src: ds.x[idx], self.tgt: teacher_inputs(y)})
        m = Batch({self.src: ds.mask(idx), self.tgt: steps_mask(ds.target_lengths[idx], y.shape[1])})
        x.target = m.target = self.tgt
        return x, y, m


def loss_mask(mask):
    """The mask a loss counts: the target's of a two-stream Batch, else the mask itself."""
    return mask.loss if isinstance(mask, Batch) else mask


def log_softmax(z):
    """log softmax over the last axis, stable."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _next_logits(model, src, src_len, prefix, given=None):
    """(B, t, V) log-probabilities of the next token after each prefix position (one evaluation forward);
    given: {node: (output, mask)} of nodes not to run (the encoder's, cached by Step.bind)."""
    src_name, tgt = source_input(model), target_input(model)
    src = np.asarray(src, np.float32)
    prefix = np.asarray(prefix)
    B, t = prefix.shape
    T = model.infos[tgt].shape[0]
    if t > T:
        raise TrainingError(f"a prefix of {t} tokens is longer than the target Input '{tgt}' ({T} steps)")
    dec = np.zeros((B, T), np.float32)                      # (B, T) the prefix, then padding
    dec[:, :t] = prefix
    masks = {src_name: steps_mask(src_len, src.shape[1]), tgt: steps_mask(np.full(B, t), T)}
    logits = model.head.type in ("Softmax", "LogSoftmax")
    out = model.forward({src_name: src, tgt: dec}, logits=logits, mask=masks, given=given)     # (B, T, V)
    out = np.asarray(out[:, :t], np.float64)
    return log_softmax(out) if logits else np.log(np.maximum(out, 1e-30))


def encoder_nodes(model):
    """Nodes that do not depend on the target Input (the source side: the encoder), in graph order."""
    dec = set()
    for n in model.order:
        if model.feeds.get(n) == "target" or any(s in dec for s in model.srcs[n]):
            dec.add(n)
    return [n for n in model.order if n not in dec]


class Step:
    """step(src (B, S), src_len (B,), prefix (B, t) ids starting with <start>) -> (B, V) log-probabilities of
    the next target token: the whole model run on the prefix (the decoder is causal, so this is exact).
    bind(src, src_len) runs the encoder once and gives run(rows, prefix) for sources src[rows], which re-runs
    only the decoder side (engine/decode.py uses it)."""

    def __init__(self, model):
        self.model, self.enc = model, encoder_nodes(model)
        dec = [n for n in model.order if n not in set(self.enc)]
        self.feed = [n for n in self.enc if any(n in model.srcs[d] for d in dec)]   # encoder outputs the decoder reads

    def __call__(self, src, src_len, prefix):
        return _next_logits(self.model, src, src_len, prefix)[:, -1]

    def encode(self, src, src_len):
        """{node: (output, mask)} of the encoder outputs the decoder reads, for sources src (B, S)."""
        m = self.model
        src_name, tgt = source_input(m), target_input(m)
        src = np.asarray(src, np.float32)
        skip = {n: (None, None) for n in m.order if n not in set(self.enc)}
        dummy = np.zeros((len(src), m.infos[tgt].shape[0]), np.float32)            # (B, T) not read
        m.forward({src_name: src, tgt: dummy}, mask={src_name: steps_mask(src_len, src.shape[1])}, given=skip)
        return {n: (m.acts[n].copy(), None if m.masks.get(n) is None else m.masks[n].copy()) for n in self.feed}

    def bind(self, src, src_len):
        """run(rows, prefix) -> (len(rows), V): the next-token log-probabilities of sources src[rows] after
        prefix, from the encoder's outputs computed here once."""
        cache, src, src_len = self.encode(src, src_len), np.asarray(src, np.float32), np.asarray(src_len)

        def run(rows, prefix):
            given = {n: (None, None) for n in self.enc}
            given.update({n: (a[rows], None if mk is None else mk[rows]) for n, (a, mk) in cache.items()})
            return _next_logits(self.model, src[rows], src_len[rows], prefix, given)[:, -1]
        return run


def model_step(model, cache=True):
    """The next-token step of a trained encoder–decoder (Step; cache=False: a plain function that re-runs the
    whole model at every token, without bind)."""
    if cache:
        return Step(model)
    return lambda src, src_len, prefix: _next_logits(model, src, src_len, prefix)[:, -1]


def cross_attention_nodes(model):
    """Names of the model's CrossAttention nodes in graph order."""
    return [n for n in model.order if model.layers[n].type == "CrossAttention"]


def alignment(model, src, src_len, out_ids, start=START, end=END):
    """{CrossAttention node: [(heads, len(ids) + 1, src_len) array per sample]}: how much each output token
    (the decoded ids, then <end>) attended to each source token, teacher-forcing the decoded ids once."""
    n = len(out_ids)
    T = model.infos[target_input(model)].shape[0]
    t = min(T, max((len(o) for o in out_ids), default=0) + 1)
    prefix = np.zeros((n, t), np.int64)                     # (n, t) <start>, then the decoded ids
    prefix[:, 0] = start
    for i, ids in enumerate(out_ids):
        ids = list(ids)[:t - 1]
        prefix[i, 1:1 + len(ids)] = ids
    _next_logits(model, src, src_len, prefix)
    src_len = np.asarray(src_len)
    return {c: [model.layers[c].taps["attention"][i, :, :min(len(out_ids[i]) + 1, t), :src_len[i]].copy()
                for i in range(n)] for c in cross_attention_nodes(model)}


def transformer(S, T, src_vocab, tgt_vocab, d=32, heads=4, enc=1, dec=1, ff=None, max_len=None):
    """A Graph of a transformer encoder–decoder: source ids (S,) and teacher-forced target ids (T,) → (T, tgt_vocab)
    next-token probabilities; `enc` encoder blocks (self-attention, FFN) and `dec` decoder blocks (causal
    self-attention, cross-attention to the encoder's output, FFN), each sub-layer with a residual Add and LayerNorm;
    max_len: rows of the learned position tables (default S and T)."""
    from .graph import Graph
    g, ff = Graph(), ff or 2 * d

    def block(x, p, cross=None):
        """Sub-layers after node x with name prefix p; returns the block's last node."""
        subs = [("att", "MultiHeadSelfAttention", {"heads": heads, "causal": cross is not None})]
        subs += [("cross", "CrossAttention", {"heads": heads})] if cross else []
        for k, t, c in subs + [("ff", None, None)]:
            if t is None:
                y = g.chain((f"{p}ff1", "Dense", {"units": ff}), (f"{p}relu", "ReLU", {}),
                            (f"{p}ff2", "Dense", {"units": d}), after=x)
            else:
                y = g.chain((f"{p}{k}", t, c), after=x)
                if cross:
                    g.connect(cross, y, 1) if t == "CrossAttention" else None
            g.add_node("Add", f"{p}{k}_add")
            g.connect(x, f"{p}{k}_add", 0)
            g.connect(y, f"{p}{k}_add", 1)
            x = g.chain((f"{p}{k}_norm", "LayerNorm", {}), after=f"{p}{k}_add")
        return x

    x = g.chain(("source", "Input", {"shape": [S]}), ("src_embed", "Embedding", {"vocab": src_vocab, "dim": d}),
                ("src_pos", "PositionEmbedding", {"max_len": max_len or S}))
    for i in range(enc):
        x = block(x, f"enc{i + 1}_")
    y = g.chain(("target", "Input", {"shape": [T], "feed": "target"}),
                ("tgt_embed", "Embedding", {"vocab": tgt_vocab, "dim": d}), ("tgt_pos", "PositionEmbedding", {"max_len": max_len or T}))
    for i in range(dec):
        y = block(y, f"dec{i + 1}_", cross=x)
    g.chain(("logits", "Dense", {"units": tgt_vocab}), ("probs", "Softmax", {}), after=y)
    return g


# ---- two streams on the canvas: which Input's steps a node's output runs over (engine/shapes.py) ----
MIXES = ("CrossAttention",)        # layer types that may read both streams (input 1: queries, input 2: keys)


def stream_of(graph, name, srcs, stream, used):
    """The stream ("source" or "target") node `name` runs over, from its inputs' streams (`stream`, filled in
    topological order); `used`: {feed: first Input with it}, filled here."""
    node = graph.nodes[name]
    if node.type == "Input":
        feed = node.config.get("feed", "source")
        used.setdefault(feed, name)
        return feed
    return stream.get(srcs[0]) if srcs else None


def stream_error(graph, name, srcs, stream, used, shapes):
    """(message, Fix or None) when node `name` mixes the two streams step by step or an Input repeats a feed,
    else None. shapes: its inputs' shapes."""
    from .layers.base import Fix
    node = graph.nodes[name]
    if node.type == "Input":
        feed = node.config.get("feed", "source")
        first = used.get(feed)
        if first != name:
            other = "target" if feed == "source" else "source"
            fix = Fix("set", f"set its feed to {other}", config=(("feed", other),)) if other not in used else None
            return (f"Input '{name}' is fed by the {feed} like Input '{first}': an encoder–decoder has one source "
                    f"Input (the data's x) and one target Input (the target shifted right, teacher forcing)"
                    + (f": {fix.text}" if fix else ""), fix)
        return None
    ss = [stream.get(s) for s in srcs]
    if node.type in MIXES:
        if ss[:2] == ["source", "target"]:
            return (f"{node.type} '{name}': its queries (input 1, from '{srcs[0]}') run over the source and its keys "
                    f"(input 2, from '{srcs[1]}') over the target, so the encoder would read the target: connect "
                    f"the decoder to input 1 and the encoder's output to input 2", None)
        return None
    if len(set(s for s in ss if s)) > 1 and all(len(s) == 2 for s in shapes):
        a, b = (srcs[ss.index(f)] for f in ("source", "target"))
        return (f"{node.type} '{name}' combines the source sequence (from '{a}') and the target sequence (from "
                f"'{b}') step by step, but step t of one is not step t of the other: let the decoder read the encoder "
                f"through a CrossAttention (queries from the decoder, keys and values from '{a}')", None)
    return None


def streams(graph):
    """{node: "source" | "target" | None}: which Input's steps each node's output runs over."""
    stream, used, ins = {}, {}, graph.inputs_index()
    for n in graph.topo_order():
        stream[n] = stream_of(graph, n, ins[n], stream, used)
    return stream


def luong_decoder(d=32, cell="GRU"):
    """(nodes [(key, type, config)], edges [(src, dst, port)]) of a recurrent decoder with Luong attention: the
    target embeddings feed `cell` 'decoder' (port 0; its states h_t), the encoder's states feed 'attention'
    (a one-head CrossAttention, port 1) whose context c_t joins h_t in ỹ_t = tanh(W_c [h_t; c_t])."""
    nodes = [("decoder", cell, {"units": d, "return_sequences": True}), ("attention", "CrossAttention", {"heads": 1}),
             ("state_context", "Concatenate", {}), ("combine", "Dense", {"units": d}), ("tanh", "Tanh", {})]
    edges = [("decoder", "attention", 0), ("decoder", "state_context", 0), ("attention", "state_context", 1),
             ("state_context", "combine", 0), ("combine", "tanh", 0)]
    return nodes, edges


def recurrent(S, T, src_vocab, tgt_vocab, d=32, cell="GRU"):
    """A Graph of a recurrent encoder–decoder with attention (Luong): source ids → Embedding → `cell` (the
    encoder's states e_s); target ids (teacher-forced) → Embedding → `cell` (the decoder's h_t, causal by
    construction); one-head CrossAttention scores h_t against every e_s (Luong's bilinear "general" score
    q_t·k_s = h_tᵀ W_Qᵀ W_K e_s) and returns the context c_t; ỹ_t = tanh(W_c [h_t; c_t]); softmax over tgt_vocab."""
    from .graph import Graph
    g = Graph()
    g.chain(("source", "Input", {"shape": [S]}), ("src_embed", "Embedding", {"vocab": src_vocab, "dim": d}),
            ("encoder", cell, {"units": d, "return_sequences": True}))
    g.chain(("target", "Input", {"shape": [T], "feed": "target"}),
            ("tgt_embed", "Embedding", {"vocab": tgt_vocab, "dim": d}))
    nodes, edges = luong_decoder(d, cell)
    for key, t, cfg in nodes:
        g.add_node(t, key, cfg)
    for src, dst, port in [("tgt_embed", "decoder", 0)] + edges + [("encoder", "attention", 1)]:
        g.connect(src, dst, port)
    g.chain(("logits", "Dense", {"units": tgt_vocab}), ("probs", "Softmax", {}), after="tanh")
    return g
