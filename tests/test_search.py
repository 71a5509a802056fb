"""layerboard search: Optuna trials on moons beat the project's own settings, split over worker processes or
shared by separate workers (journal file and PostgreSQL), every trial recorded as a run."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from engine import search
from engine.cli import main as cli
from engine.errors import ConfigError
from engine.history import History
from engine.project import Project
from resources import path

ROOT = Path(__file__).resolve().parents[1]
MOONS = str(path("examples", "moons-mlp.json"))


@pytest.fixture
def moons(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOARD_RUNS", str(tmp_path / "runs.sqlite"))
    p = Project.load(MOONS)
    p.save(tmp_path / "moons.json")
    return tmp_path / "moons.json"


def _numbers(study):
    return sorted(t.number for t in study.trials)


def test_search_with_two_jobs_beats_the_projects_own_settings(moons, tmp_path, capsys):
    out = tmp_path / "best.json"
    assert cli(["search", str(moons), "--trials", "12", "--jobs", "2", "--epochs", "8", "--storage",
                str(tmp_path / "s.journal"), "--apply", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert rep["trials"] == 12 and rep["failed"] == 0 and rep["own"]["trial"] == 0
    assert rep["best"]["val_loss"] < rep["own"]["val_loss"]
    runs = History().runs()
    assert len(runs) == 12 and {r["status"] for r in runs} <= {"completed", "pruned", "early_stopped"}
    best = Project.load(out)
    for key, v in rep["best"]["params"].items():                   # --apply wrote the best trial's settings
        what, name = key.split(".", 1)
        assert (best.training[name] if what == "training" else best.graph.nodes[what].config[name]) == v


def test_two_separate_workers_share_one_study(moons, tmp_path):
    storage = str(tmp_path / "shared.journal")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "engine.cli", "search", str(moons), "--trials", "5", "--epochs", "5",
           "--storage", storage, "--study", "shared"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = search.create(Project.load(moons), storage, name="shared")
    assert _numbers(study) == list(range(10))                        # none lost, none run twice
    own = search.current(Project.load(moons), search.default_space(Project.load(moons)))
    assert sum(t.params == own for t in study.trials) == 1            # the project's settings enqueued once
    assert len(History().runs()) == 10


def test_pareto_front_of_loss_and_parameters_is_non_dominated(moons, tmp_path):
    study = search.run(Project.load(moons), 8, str(tmp_path / "p.journal"), pareto="params", epochs=4)
    front = [t.values for t in study.best_trials]
    assert front and all(not (b[0] <= a[0] and b[1] <= a[1] and b != a) for a in front for b in front)
    done = [t.values for t in study.trials if t.values]
    assert all(any(f[0] <= v[0] and f[1] <= v[1] for f in front) for v in done)   # the front dominates the rest


def test_bad_ranges_are_one_line(moons):
    p = Project.load(moons)
    for space, msg in [({"fc9.units": {"choices": [1]}}, "no node 'fc9'"),
                       ({"training.nope": {"low": 0, "high": 1}}, "no training setting 'nope'"),
                       ({"training.lr": {"low": 0, "high": 1, "log": True}}, "low > 0 on a log scale"),
                       ({"lr": {"low": 0, "high": 1}}, "training.<setting>")]:
        with pytest.raises(ConfigError, match=msg) as e:
            search.check_space(p, space)
        assert "\n" not in str(e.value)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    """A throw-away PostgreSQL server on a free local port (Debian's postgresql), as the postgres user if root."""
    pytest.importorskip("psycopg2")
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    bindir, port = bins[-1].parent, _free_port()
    data = Path(tempfile.mkdtemp(prefix="layerboard-pg-"))         # /tmp: reachable by the postgres user
    as_user = []
    if os.geteuid() == 0:                                             # initdb refuses to run as root
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    run = lambda *a: subprocess.run(as_user + list(a), check=True, capture_output=True, timeout=120)
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-o",
        f"-p {port} -k {data} -h 127.0.0.1", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "studies")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/studies"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_on_one_postgresql_study(moons, postgres):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "engine.cli", "search", str(moons), "--trials", "4", "--epochs", "4",
           "--storage", postgres, "--study", "pg"]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)                                                   # the first creates the study
    second = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    study = search.create(Project.load(moons), postgres, name="pg")
    assert _numbers(study) == list(range(8))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
