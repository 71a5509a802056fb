"""The palette's Transformer decoder block: causal self-attention, cross-attention fed by the encoder's output, FFN,
each with Add & LayerNorm, inserted as one undo step connected to the decoder's sequence and the encoder."""
import pytest

from engine.graph import Graph
from engine.project import Project
from gui.document import Document


def two_streams(S=5, T=4, d=16):
    """source (S, d) → Dense (the 'encoder'); target ids → Embedding (the decoder's sequence)."""
    g = Graph()
    g.chain(("src", "Input", {"shape": [S, d]}), ("enc", "Dense", {"units": d}))
    g.chain(("tgt", "Input", {"shape": [T], "feed": "target"}), ("emb", "Embedding", {"vocab": 9, "dim": d}))
    return Document(Project(g))


def test_palette_offers_the_decoder_block():
    from gui.blocks import BLOCKS
    b = BLOCKS["Transformer decoder block"]
    assert b.available and "CrossAttention" in b.types and b.memory == (("cross", 1),)


@pytest.mark.parametrize("order", [("emb", "enc"), ("enc", "emb")])
def test_decoder_block_connects_decoder_and_encoder_in_one_undo_step(order):
    from gui.blocks import insert_block
    doc = two_streams()
    before, n0 = doc.undo_stack.count(), len(doc.graph.nodes)
    names = insert_block(doc, "Transformer decoder block", (300, 0), after=list(order))   # either selection order
    assert doc.undo_stack.count() == before + 1
    types = [doc.graph.nodes[n].type for n in names]
    assert types == ["MultiHeadSelfAttention", "Add", "LayerNorm", "CrossAttention", "Add", "LayerNorm", "Dense",
                     "ReLU", "Dense", "Add", "LayerNorm"]
    att, add, norm, cross, add_x, norm_x, ff, relu, ff_out, add_ff, norm_ff = names
    assert doc.graph.nodes[att].config["causal"] is True
    assert doc.graph.inputs_of(att) == ["emb"] and doc.graph.inputs_of(add) == ["emb", att]
    assert doc.graph.inputs_of(cross) == [norm, "enc"] and doc.graph.inputs_of(add_x) == [norm, cross]
    assert all(doc.infos[n].ok for n in names) and doc.infos[norm_ff].shape == (4, 16)
    doc.undo_stack.undo()
    assert len(doc.graph.nodes) == n0
    doc.undo_stack.redo()
    assert doc.graph.inputs_of(cross) == [norm, "enc"]


def test_decoder_block_on_the_canvas_with_two_selected_nodes(qtbot):
    from gui.scene import GraphScene
    from gui.view import GraphView
    doc = two_streams()
    sc = GraphScene(doc)
    v = GraphView(sc)
    qtbot.addWidget(v)
    sc.select(["enc", "emb"])
    last = v.add_layer("Transformer decoder block")
    cross = next(n for n, node in doc.graph.nodes.items() if node.type == "CrossAttention")
    assert doc.graph.nodes[last].type == "LayerNorm" and doc.graph.inputs_of(cross)[1] == "enc"
    assert all(i.ok for i in doc.infos.values())
