"""Node names never hold '/' (weights are keyed 'node/param'): the document refuses before any command."""
import pytest

from engine.graph import GraphError
from engine.project import Project
from gui.document import Document
from resources import path


def test_document_refuses_slash_names_without_pushing_a_command(qtbot):
    doc = Document(Project.load(path("examples", "xor.json")))
    before = doc.undo_stack.count()
    for edit in (lambda: doc.rename("hidden", "hid/den"), lambda: doc.add_node("Dense", name="a/b")):
        with pytest.raises(GraphError, match="contains '/'"):
            edit()
    assert "hidden" in doc.graph.nodes and not any("/" in n for n in doc.graph.nodes)
    assert doc.undo_stack.count() == before
