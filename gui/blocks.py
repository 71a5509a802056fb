"""Palette blocks: connected sub-graphs (e.g. a Transformer encoder block) inserted as one undoable step."""
from dataclasses import dataclass

from engine.graph import GraphError
from engine.hparams import resolve
from engine.layers import REGISTRY

from . import commands as C

DX = 190                 # canvas spacing of the block's nodes


@dataclass(frozen=True)
class Block:
    """A named sub-graph template: build(d_model) -> (nodes [(key, type, config)], edges [(src, dst, port)])."""

    title: str
    doc: str
    build: object
    entries: tuple        # (node key, port) pairs the block's input feeds
    memory: tuple = ()    # (node key, port) pairs a second input feeds (a decoder block: the encoder's output)

    @property
    def types(self):
        return sorted({t for _, t, _ in self.build(64)[0]})

    @property
    def available(self):
        return all(t in REGISTRY for t in self.types)


def _encoder(d_model):
    """x → MHSA → Add(x, ·) → LayerNorm → Dense(4·d) → ReLU → Dense(d) → Add(·, ·) → LayerNorm."""
    heads = next(h for h in (4, 2, 1) if d_model % h == 0)
    nodes = [("mhsa", "MultiHeadSelfAttention", {"heads": heads}), ("add", "Add", {}), ("norm", "LayerNorm", {}),
             ("ff", "Dense", {"units": 4 * d_model}), ("relu", "ReLU", {}), ("ff_out", "Dense", {"units": d_model}),
             ("add_ff", "Add", {}), ("norm_ff", "LayerNorm", {})]
    edges = [("mhsa", "add", 1), ("add", "norm", 0), ("norm", "ff", 0), ("ff", "relu", 0), ("relu", "ff_out", 0),
             ("norm", "add_ff", 0), ("ff_out", "add_ff", 1), ("add_ff", "norm_ff", 0)]
    return nodes, edges


def _decoder(d_model):
    """x → causal MHSA → Add → LayerNorm → CrossAttention(·, encoder) → Add → LayerNorm → FFN → Add → LayerNorm."""
    heads = next(h for h in (4, 2, 1) if d_model % h == 0)
    nodes = [("self_att", "MultiHeadSelfAttention", {"heads": heads, "causal": True}), ("add", "Add", {}),
             ("norm", "LayerNorm", {}), ("cross", "CrossAttention", {"heads": heads}), ("add_cross", "Add", {}),
             ("norm_cross", "LayerNorm", {}), ("ff", "Dense", {"units": 4 * d_model}), ("relu", "ReLU", {}),
             ("ff_out", "Dense", {"units": d_model}), ("add_ff", "Add", {}), ("norm_ff", "LayerNorm", {})]
    edges = [("self_att", "add", 1), ("add", "norm", 0), ("norm", "cross", 0), ("norm", "add_cross", 0),
             ("cross", "add_cross", 1), ("add_cross", "norm_cross", 0), ("norm_cross", "ff", 0), ("ff", "relu", 0),
             ("relu", "ff_out", 0), ("norm_cross", "add_ff", 0), ("ff_out", "add_ff", 1), ("add_ff", "norm_ff", 0)]
    return nodes, edges


def _luong(d_model):
    """x → GRU → CrossAttention(·, encoder) → Concatenate(GRU, context) → Dense(d) → Tanh (engine.seq2seq)."""
    from engine.seq2seq import luong_decoder
    return luong_decoder(d_model)


BLOCKS = {
    "Transformer encoder block": Block(
        "Transformer encoder block",
        "Self-attention and a feed-forward network, each with a residual Add and a LayerNorm: "
        "h = LayerNorm(x + MHSA(x)), y = LayerNorm(h + W₂·ReLU(W₁·h + b₁) + b₂). Select the layer that "
        "feeds it (a (T, d_model) sequence) before inserting to connect it.",
        _encoder, (("mhsa", 0), ("add", 0))),
    "Transformer decoder block": Block(
        "Transformer decoder block",
        "Causal self-attention, cross-attention to the encoder and a feed-forward network, each with a residual "
        "Add and a LayerNorm: h = LayerNorm(x + MaskedMHSA(x)), c = LayerNorm(h + CrossAttention(h, enc)), "
        "y = LayerNorm(c + W₂·ReLU(W₁·c + b₁) + b₂). Select the decoder's (T, d_model) sequence and the encoder's "
        "output (two nodes) before inserting to connect both.",
        _decoder, (("self_att", 0), ("add", 0)), (("cross", 1),)),
    "Recurrent decoder with attention": Block(
        "Recurrent decoder with attention",
        "A GRU over the decoder's sequence and Luong attention to the encoder's states: h_t = GRU(x_t, h_{t−1}), "
        "a_ts = softmax_s(h_tᵀ W_Qᵀ W_K e_s), c_t = Σ_s a_ts W_V e_s, y_t = tanh(W_c [h_t; c_t] + b_c). Select the "
        "decoder's (T, d) sequence (the target embedding) and the encoder's output (e.g. a GRU over the source "
        "embedding, return_sequences) before inserting to connect both.",
        _luong, (("decoder", 0),), (("attention", 1),)),
}


def d_model_after(doc, name):
    """The feature size d_model of node `name`'s output when it is a (T, d) sequence, else None."""
    info = doc.infos.get(name) if name else None
    shape = getattr(info, "shape", None)
    return int(shape[-1]) if shape and len(shape) == 2 else None


def insert_block(doc, title, pos=(0, 0), after=None, memory=None):
    """Add a block's nodes and edges (fed by node `after` if given) as one undo step; returns the new names.

    memory: the node feeding the block's second input (a decoder block's cross-attention: the encoder's output);
    `after` may also be two names, the decoder's (target stream) and the encoder's, in either order.

    Everything is checked on a copy of the graph first (types, settings, every connection), so a refused
    block changes nothing."""
    block = BLOCKS.get(title)
    if block is None:
        raise GraphError(f"unknown block {title!r}")
    missing = [t for t in block.types if t not in REGISTRY]
    if missing:
        raise GraphError(f"the {title} needs the layer type(s) {', '.join(missing)}, which this version lacks")
    if isinstance(after, (list, tuple)):
        after, memory = _decoder_and_encoder(doc.graph, list(after))
    for n in (after, memory):
        if n is not None and n not in doc.graph.nodes:
            raise GraphError(f"no node named '{n}' to connect the {title} to")
    d = d_model_after(doc, after) or 64
    nodes, edges = block.build(d)
    trial, names, cmds = doc.graph.copy(), {}, []
    x0, y0 = float(pos[0]), float(pos[1])
    for i, (key, t, cfg) in enumerate(nodes):
        name = trial.unique_name(key)
        cfg = dict(cfg)
        resolve(REGISTRY[t].hparams, cfg, f"{t} '{name}'")
        meta = {"x": x0 + DX * i, "y": y0 + (60 if t in ("Add",) else 0)}
        trial.add_node(t, name, cfg, meta)
        names[key] = name
        cmds.append(C.AddNode(doc, t, name, cfg, meta))
    links = [(names[s], names[t], p) for s, t, p in edges]
    if after is not None:
        links = [(after, names[k], p) for k, p in block.entries] + links
    if memory is not None:
        links += [(memory, names[k], p) for k, p in block.memory]
    for s, t, p in links:
        cmds.append(C.Connect(doc, trial.check_connect(s, t, p)))
        trial.connect(s, t, p)
    doc._push(C.Compound(doc, f"Insert {title}", cmds))
    return [names[k] for k, _, _ in nodes]


def _decoder_and_encoder(graph, two):
    """(decoder node, encoder node) of two selected names: the one on the target stream is the decoder's."""
    from engine.seq2seq import streams
    if len(two) != 2 or any(n not in graph.nodes for n in two):
        raise GraphError("select the decoder's sequence and the encoder's output (two nodes) to connect a block to both")
    s = streams(graph)
    return tuple(two) if s.get(two[1]) != "target" or s.get(two[0]) == "target" else (two[1], two[0])


__all__ = ["BLOCKS", "Block", "insert_block"]
