"""Autosave: written after each edit burst (debounced), removed by Save; killed writes' .tmp files cleaned;
one locked file per session, a crashed session's file kept until the user answers."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtCore import QStandardPaths

from gui.autosave import Autosave
from gui.document import Document, clean_tmp

ROOT = Path(__file__).resolve().parent.parent


def crash(a):
    """What a killed session leaves: its autosave file, and a lock no running process holds."""
    a.timer.stop()
    a.lock.unlock()

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


def test_save_clears_the_autosave_so_recovery_never_offers_an_older_copy(qtbot, tmp_path):
    doc = Document()
    a = Autosave(doc, delay_ms=50, folder=tmp_path / "data")
    doc.add_node("Dense", name="before_save")
    assert a.tick() and a.file.exists()
    doc.add_node("Dense", name="saved_edit")
    doc.save(tmp_path / "p.json")
    assert not a.file.exists()
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
    crash(a)
    old = a.file.stat().st_mtime - 100
    os.utime(a.file, (old, old))                         # the project was saved after the autosave (elsewhere)
    b = Autosave(Document(), folder=tmp_path / "data")
    assert not b.pending() and not a.file.exists()       # obsolete: not offered, removed


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


def test_a_second_session_neither_offers_nor_deletes_a_running_sessions_autosave(qtbot, tmp_path):
    doc = Document()
    a = Autosave(doc, delay_ms=10_000, folder=tmp_path)
    doc.add_node("Dense", name="live_work")
    assert a.tick() and a.file.exists() and a.lock.isLocked()
    b = Autosave(Document(), delay_ms=10_000, folder=tmp_path)
    assert b.file != a.file and b.lock.isLocked()
    assert not b.pending()                               # a's owner runs: not a crash
    assert not b.tick()                                  # b is clean: it removes its own file only
    b.clean_exit()
    assert a.file.exists() and "live_work" in a.file.read_text()
    crash(a)                                             # now a's session is gone: its work is offered
    c = Autosave(Document(), delay_ms=10_000, folder=tmp_path)
    assert c.pending() and c.orphan == a.file
    assert "live_work" in c.recover().graph.nodes
    d = Autosave(Document(), delay_ms=10_000, folder=tmp_path)
    assert not d.pending()                               # c holds it while it asks: d must not offer or delete it
    c.release(delete=True)                               # the user said No
    assert not a.file.exists()


def test_the_autosave_of_a_killed_process_is_recovered(qtbot, tmp_path):
    script = ("import sys, time\n"
              "from gui.document import Document\n"
              "from gui.autosave import Autosave\n"
              "doc = Document()\n"
              "a = Autosave(doc, folder=sys.argv[1])\n"
              "doc.add_node('Dense', name='killed_work')\n"
              "assert a.tick()\n"
              "print(a.file, flush=True)\n"
              "time.sleep(120)\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         text=True)
    try:
        written = Path(p.stdout.readline().strip())
        assert written.exists()
        assert not Autosave(Document(), folder=tmp_path).pending()       # still running: its lock is live
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    b = Autosave(Document(), folder=tmp_path)
    assert b.pending() and b.orphan == written                           # kill -9: the lock is stale
    assert "killed_work" in b.recover().graph.nodes
    b.adopt()                                                            # recovered: b's autosave from now on
    assert b.file == written and written.exists()
    b.clean_exit()
    assert not written.exists()
