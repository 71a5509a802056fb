"""The palette's recurrent decoder with (Luong) attention: the nodes of engine.seq2seq.recurrent's decoder, inserted
as one undo step connected to the decoder's sequence and the encoder's states, giving the same model as recurrent()."""
import pytest

from engine.graph import Graph
from engine.model import Model
from engine.project import Project
from engine.seq2seq import recurrent
from gui.document import Document

S, T, V, W, D = 6, 5, 11, 9, 16


def encoder_and_target():
    """source ids → Embedding → GRU (the encoder's states); target ids → Embedding (the decoder's sequence)."""
    g = Graph()
    g.chain(("source", "Input", {"shape": [S]}), ("src_embed", "Embedding", {"vocab": V, "dim": D}),
            ("encoder", "GRU", {"units": D, "return_sequences": True}))
    g.chain(("target", "Input", {"shape": [T], "feed": "target"}), ("tgt_embed", "Embedding", {"vocab": W, "dim": D}))
    return Document(Project(g))


def test_palette_offers_the_recurrent_decoder():
    from gui.blocks import BLOCKS
    b = BLOCKS["Recurrent decoder with attention"]
    assert b.available and {"GRU", "CrossAttention", "Concatenate", "Tanh"} <= set(b.types)
    assert b.memory == (("attention", 1),) and b.entries == (("decoder", 0),)


@pytest.mark.parametrize("order", [("tgt_embed", "encoder"), ("encoder", "tgt_embed")])
def test_block_builds_recurrents_decoder_in_one_undo_step(order):
    from gui.blocks import insert_block
    doc = encoder_and_target()
    before, n0 = doc.undo_stack.count(), len(doc.graph.nodes)
    names = insert_block(doc, "Recurrent decoder with attention", (300, 0), after=list(order))
    assert doc.undo_stack.count() == before + 1
    assert [doc.graph.nodes[n].type for n in names] == ["GRU", "CrossAttention", "Concatenate", "Dense", "Tanh"]
    gru, att, cat, dense, tanh = names
    assert doc.graph.inputs_of(gru) == ["tgt_embed"] and doc.graph.inputs_of(att) == [gru, "encoder"]
    assert doc.graph.inputs_of(cat) == [gru, att] and doc.infos[tanh].shape == (T, D)
    assert all(doc.infos[n].ok for n in names)
    g = doc.graph.copy()
    g.chain(("logits", "Dense", {"units": W}), ("probs", "Softmax", {}), after=tanh)
    ours, ref = Model(g), Model(recurrent(S, T, V, W, d=D))
    assert sorted(ours.layers[n].type for n in ours.order) == sorted(ref.layers[n].type for n in ref.order)
    assert ours.theta.size == ref.theta.size                    # the same parameters as recurrent()
    doc.undo_stack.undo()
    assert len(doc.graph.nodes) == n0
