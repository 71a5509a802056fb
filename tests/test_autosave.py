"""Autosave: written after each edit burst (debounced), removed by Save; killed writes' .tmp files cleaned."""
import json
import os
import time

from PySide6.QtCore import QStandardPaths

from gui.autosave import Autosave
from gui.document import Document, clean_tmp

QStandardPaths.setTestModeEnabled(True)


def test_an_edit_burst_is_autosaved_once_a_few_seconds_after_the_last_edit(qtbot, tmp_path):
    doc = Document()
    a = Autosave(doc, delay_ms=200, folder=tmp_path)
    writes = []
    a.timer.timeout.connect(lambda: writes.append(a.file.exists()))
    for i in range(5):                                   # one burst: the wait restarts at every edit
        doc.add_node("Dense", name=f"d{i}")
    assert a.timer.isActive() and a.timer.isSingleShot() and a.timer.interval() == 200
    qtbot.waitUntil(lambda: a.file.exists(), timeout=5000)
    assert writes == [True]
    d = json.loads(a.file.read_text())
    assert {f"d{i}" for i in range(5)} <= {n["name"] for n in d["graph"]["nodes"]}
    assert a.pending()


def test_save_clears_the_autosave_so_recovery_never_offers_an_older_copy(qtbot, tmp_path):
    doc = Document()
    a = Autosave(doc, delay_ms=50, folder=tmp_path / "data")
    doc.add_node("Dense", name="before_save")
    assert a.tick() and a.pending()
    doc.add_node("Dense", name="saved_edit")
    doc.save(tmp_path / "p.json")
    assert not a.file.exists() and not a.pending()
    assert not a.tick() and not a.file.exists()          # the debounce firing after the save writes nothing
    doc.add_node("ReLU", name="after")                   # dirty again: autosaved again
    qtbot.waitUntil(a.file.exists, timeout=5000)
    doc.undo_stack.undo()                                # back to the saved state: the autosave goes
    qtbot.waitUntil(lambda: not a.file.exists(), timeout=5000)


def test_an_autosave_older_than_its_project_file_is_not_offered(qtbot, tmp_path):
    doc = Document()
    a = Autosave(doc, delay_ms=10_000, folder=tmp_path / "data")
    doc.save(tmp_path / "p.json")
    doc.add_node("Dense")
    assert a.tick()
    old = a.file.stat().st_mtime - 100
    os.utime(a.file, (old, old))                         # the project was saved after the autosave (elsewhere)
    assert not a.pending()


def test_killed_atomic_writes_leftovers_are_removed_on_save_and_open(qtbot, tmp_path):
    f = tmp_path / "p.json"
    stale = [tmp_path / ".p.json.abc123.tmp", tmp_path / ".p.json.x.tmp"]
    fresh = tmp_path / ".p.json.new.tmp"                  # maybe another save in progress: kept
    other = [tmp_path / ".q.json.abc.tmp", tmp_path / "p.json.abc.tmp", tmp_path / ".p.json.abc.txt"]
    old = time.time() - 3600
    for p in stale + other:
        p.write_bytes(b"x" * 10)
        os.utime(p, (old, old))
    fresh.write_bytes(b"y")
    doc = Document()
    doc.save(f)
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and all(p.exists() for p in other)
    stale[0].write_bytes(b"x")
    os.utime(stale[0], (old, old))
    Document().open(f)
    assert not stale[0].exists()
    assert clean_tmp(f) == []
