"""Run history in SQLite: schema and migrations, runs recorded by the CLI, a run killed mid-epoch reads
"interrupted", two processes writing at once lose nothing, CSV/JSON listings."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import history
from engine.cli import main as cli
from engine.history import History, HistoryError
from engine.project import Project
from resources import path

ROOT = Path(__file__).resolve().parents[1]
XOR = str(path("examples", "xor.json"))


def test_new_database_has_the_current_schema(tmp_path):
    h = History(tmp_path / "runs.sqlite")
    assert h.version() == history.VERSION >= 2
    cols = {r[1] for r in h.db.execute("PRAGMA table_info(runs)")}
    assert set(history.COLUMNS) <= cols and "graph" in cols
    assert {r[1] for r in h.db.execute("PRAGMA table_info(epochs)")} == {"run", "epoch", "metrics"}
    assert h.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_older_database_is_migrated_and_keeps_its_runs(tmp_path):
    f = tmp_path / "old.sqlite"
    db = sqlite3.connect(f)
    db.executescript(history.MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute("INSERT INTO runs (project, graph_hash, graph, training, dataset, status, started, epochs) "
               "VALUES ('old', 'abc', '{}', '{\"lr\": 0.1}', '{}', 'completed', 1.0, 3)")
    db.execute("INSERT INTO epochs VALUES (1, 1, '{\"val_loss\": 0.5}')")
    db.commit()
    db.close()
    h = History(f)
    assert h.version() == history.VERSION
    (r,) = h.runs()
    assert (r["project"], r["training"], r["epochs"], r["macs"], r["pid"]) == ("old", {"lr": 0.1}, 3, None, None)
    assert h.curves(r["id"]) == {"val_loss": [0.5]}


def test_a_newer_database_is_refused_in_one_line(tmp_path):
    f = tmp_path / "new.sqlite"
    sqlite3.connect(f).execute(f"PRAGMA user_version = {history.VERSION + 1}").connection.commit()
    with pytest.raises(HistoryError, match="newer than this Layerboard") as e:
        History(f)
    assert "\n" not in str(e.value)


def test_not_a_database_is_one_line(tmp_path):
    f = tmp_path / "runs.sqlite"
    f.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HistoryError, match="runs.sqlite") as e:
        History(f)
    assert "\n" not in str(e.value)
    assert f.read_bytes() == b"this is not sqlite" * 100             # the user's file is left as it was


def test_cli_train_records_its_run_with_curves_and_weights(tmp_path, monkeypatch, capsys):
    db = tmp_path / "runs.sqlite"
    monkeypatch.setenv("LAYERBOARD_RUNS", str(db))
    out = tmp_path / "w.npz"
    assert cli(["train", XOR, "--epochs", "3", "--seed", "5", "--out", str(out)]) == 0
    (r,) = History(db).runs()
    p = Project.load(XOR)
    assert r["status"] == "completed" and r["epochs"] == 3 and r["seed"] == 5
    assert r["graph_hash"] == history.graph_hash(p.graph.to_dict()) and r["params"] == 9
    assert r["training"]["epochs"] == 3 and r["dataset"] == p.dataset and r["weights"] == str(out)
    assert r["result"]["status"] == "completed" and 0 < r["result"]["train_loss"] < 2 and r["seconds"] > 0
    assert len(History(db).curves(r["id"])["train_loss"]) == 3
    capsys.readouterr()
    assert cli(["runs", XOR, "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["curves"]["train_loss"] == History(db).curves(r["id"])["train_loss"]
    assert cli(["runs", "export", "--csv", "-o", str(tmp_path / "runs.csv")]) == 0
    head, row = (tmp_path / "runs.csv").read_text().splitlines()
    cols = dict(zip(head.split(","), row.split(",")))
    assert cols["status"] == "completed" and cols["setting.lr"] == str(p.training["lr"]) and cols["seed"] == "5"
    assert len(head.split(",")) == len(set(head.split(",")))             # no column named twice


def test_graph_hash_ignores_canvas_positions_only():
    g = Project.load(XOR).graph.to_dict()
    moved = json.loads(json.dumps(g))
    moved["nodes"][0]["meta"] = {"pos": [10, 20]}
    changed = json.loads(json.dumps(g))
    changed["nodes"][1]["config"]["units"] = 7
    assert history.graph_hash(moved) == history.graph_hash(g) != history.graph_hash(changed)


def _env(db):
    return {**os.environ, "LAYERBOARD_RUNS": str(db), "PYTHONPATH": str(ROOT)}


def test_a_run_killed_mid_epoch_reads_interrupted(tmp_path):
    db = tmp_path / "runs.sqlite"
    proj = tmp_path / "slow.json"
    p = Project.load(str(path("examples", "moons-mlp.json")))
    p.training["epochs"] = 100000
    p.save(proj)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "train", str(proj)], cwd=ROOT, env=_env(db),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):                                            # until one epoch is recorded (≤ 120 s)
            if db.exists():
                try:
                    if sqlite3.connect(db).execute("SELECT COUNT(*) FROM epochs").fetchone()[0] >= 1:
                        break
                except sqlite3.OperationalError:
                    pass
            assert proc.poll() is None, "training ended before it was killed"
            time.sleep(0.2)
        else:
            pytest.fail("no epoch was recorded")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    h = History(db)
    assert h.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (r,) = h.runs()
    assert r["status"] == "interrupted" and r["epochs"] >= 1 and r["ended"] is None
    assert len(h.curves(r["id"])["train_loss"]) == r["epochs"]


WRITER = """
import sys
from engine.history import History
from engine.project import Project
h = History(sys.argv[1])
p = Project.load(sys.argv[2])
for i in range(int(sys.argv[3])):
    run = h.start(p, seed=i)
    for e in range(1, 4):
        h.epoch(run, e, {"train_loss": 1.0 / e, "writer": int(sys.argv[4])})
    h.finish(run, "completed", {"train_loss": 0.33})
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    db = tmp_path / "runs.sqlite"
    History(db).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), XOR, "40", str(w)], cwd=ROOT, env=_env(db),
                              stderr=subprocess.PIPE) for w in (1, 2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    h = History(db)
    runs = h.runs()
    assert len(runs) == 80 and all(r["status"] == "completed" and r["epochs"] == 3 for r in runs)
    writers = [h.curves(r["id"])["writer"] for r in runs]
    assert sorted(w[0] for w in writers) == [1] * 40 + [2] * 40 and all(len(set(w)) == 1 for w in writers)


def test_diff_of_two_runs_names_nodes_settings_size_and_scores(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAYERBOARD_RUNS", str(tmp_path / "runs.sqlite"))
    p = Project.load(XOR)
    h = History()
    a = h.start(p, params=9, macs=6)
    h.finish(a, "completed", {"val_loss": 0.5, "train_loss": 0.4})
    hidden = next(n for n in p.graph.nodes.values() if n.type == "Dense")
    hidden.config["units"] = 4
    p.training["lr"] = 0.5
    b = h.start(p, params=17, macs=12)
    h.finish(b, "completed", {"val_loss": 0.25, "train_loss": 0.2})
    capsys.readouterr()
    assert cli(["runs", "diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"~ node {hidden.name}: units 2 → 4" in out and "~ lr: " in out and "→ 0.5" in out
    assert "~ params: 9 → 17 (+8)" in out and "val_loss: 0.5 → 0.25 (-0.25)" in out
    assert cli(["runs", "diff", str(a), "999"]) == 2
