"""Run history: every training run (window or CLI) in an SQLite database that lasts.

One row per run in `runs` (project, graph hash, settings, dataset and its fingerprint, seed, size, status,
scores, wall time, weights file, version) and one per epoch in `epochs`. The schema is versioned through
PRAGMA user_version and upgraded by MIGRATIONS in order. Every write is one short IMMEDIATE transaction in
WAL mode, so two processes can record at once; a run whose process died is shown as "interrupted".
"""
import csv
import hashlib
import io
import json
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import LayerboardError

ENV = "LAYERBOARD_RUNS"           # path of the database, overriding the user data folder
FILE = "runs.sqlite"

# MIGRATIONS[i] takes the schema from version i to i + 1; never edit one that has shipped, append.
MIGRATIONS = (
    """CREATE TABLE runs (
         id INTEGER PRIMARY KEY, project TEXT NOT NULL, project_path TEXT, graph_hash TEXT NOT NULL,
         graph TEXT NOT NULL, training TEXT NOT NULL, dataset TEXT NOT NULL, dataset_fingerprint TEXT,
         seed INTEGER, params INTEGER, status TEXT NOT NULL, started REAL NOT NULL, ended REAL,
         seconds REAL, epochs INTEGER NOT NULL DEFAULT 0, result TEXT, weights TEXT, version TEXT);
       CREATE TABLE epochs (
         run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
         metrics TEXT NOT NULL, PRIMARY KEY (run, epoch));""",
    # 2: MACs, and the process that records a run, so that a run whose process died reads "interrupted"
    """ALTER TABLE runs ADD COLUMN macs INTEGER;
       ALTER TABLE runs ADD COLUMN host TEXT;
       ALTER TABLE runs ADD COLUMN pid INTEGER;
       ALTER TABLE runs ADD COLUMN message TEXT;
       CREATE INDEX runs_project ON runs(project, started);""",
)
VERSION = len(MIGRATIONS)
COLUMNS = ("id", "project", "project_path", "graph_hash", "training", "dataset", "dataset_fingerprint", "seed",
           "params", "macs", "status", "started", "ended", "seconds", "epochs", "result", "weights", "version",
           "host", "pid", "message")
JSON = ("training", "dataset", "result")


class HistoryError(LayerboardError):
    """The run database cannot be opened or written."""


def default_path():
    """$LAYERBOARD_RUNS, else runs.sqlite in the user data folder ($XDG_DATA_HOME/layerboard)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "layerboard" / FILE


def graph_hash(graph_dict):
    """sha256 of the graph's nodes (type, settings) and edges; canvas positions (meta) do not count."""
    g = {"nodes": sorted(([n["name"], n["type"], n["config"]] for n in graph_dict.get("nodes", [])), key=str),
         "edges": sorted(([e["src"], e["dst"], e["port"]] for e in graph_dict.get("edges", [])), key=str)}
    return hashlib.sha256(json.dumps(g, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(ref, base=None):
    """Hash of a dataset reference and, for files, their size, time and first and last MiB."""
    h = hashlib.sha256(json.dumps(ref, sort_keys=True, default=str).encode())
    for key in ("path", "images", "labels", "x", "y", "lengths"):
        v = ref.get(key)
        if not isinstance(v, str):
            continue
        p = Path(base or ".") / v
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        if p.is_file():
            with open(p, "rb") as f:
                h.update(f.read(1 << 20))
                if st.st_size > 2 << 20:
                    f.seek(-(1 << 20), os.SEEK_END)
                    h.update(f.read())
    return h.hexdigest()[:16]


def _finite(v):
    """JSON-able copy with NaN/inf as None (SQLite stores text; json.dumps would write NaN)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if hasattr(v, "item"):                      # numpy scalars
        return _finite(v.item())
    return v


def _alive(host, pid):
    """False when the recording process is known to be gone (same machine, no such pid)."""
    if host != socket.gethostname() or not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class History:
    """The run database at `path` (created with the current schema, or upgraded to it)."""

    def __init__(self, path=None):
        self.path = Path(path or default_path())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)   # explicit transactions
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")     # WAL: a crash loses at most the last commits, never corrupts
            self.db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.DatabaseError as e:
            raise HistoryError(f"run history {self.path}: {e}") from None
        except OSError as e:
            raise HistoryError(f"run history {self.path}: {e.strerror or e}") from None

    def close(self):
        self.db.close()

    @contextmanager
    def write(self):
        """One IMMEDIATE transaction: committed whole or not at all, other writers wait (timeout 30 s)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def version(self):
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, to=VERSION):
        """Apply the migrations after the database's version, each in its own transaction."""
        with self.write() as db:
            v = db.execute("PRAGMA user_version").fetchone()[0]
            if v > VERSION:
                raise HistoryError(f"run history {self.path} has schema version {v}, newer than this Layerboard "
                                   f"reads ({VERSION}): update Layerboard")
            for i in range(v, to):
                for stmt in MIGRATIONS[i].split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version = {i + 1}")

    # ---- writing a run ----
    def start(self, project, params=None, macs=None, seed=None, version=None):
        """A new run with status "running"; returns its id."""
        g = project.graph.to_dict()
        row = {"project": project.name or (project.path.stem if project.path else "untitled"),
               "project_path": str(project.path.resolve()) if project.path else None,
               "graph_hash": graph_hash(g), "graph": json.dumps(g), "training": json.dumps(_finite(project.training)),
               "dataset": json.dumps(project.dataset), "dataset_fingerprint": fingerprint(project.dataset, project.base),
               "seed": seed if seed is not None else project.training.get("seed"), "params": params, "macs": macs,
               "status": "running", "started": time.time(), "version": version or _version(),
               "host": socket.gethostname(), "pid": os.getpid()}
        with self.write() as db:
            cur = db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                             tuple(row.values()))
            return cur.lastrowid

    def epoch(self, run, epoch, metrics):
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO epochs (run, epoch, metrics) VALUES (?, ?, ?)",
                       (run, int(epoch), json.dumps(_finite(metrics))))
            db.execute("UPDATE runs SET epochs = MAX(epochs, ?) WHERE id = ?", (int(epoch), run))

    def finish(self, run, status, result=None, message=None, weights=None):
        now = time.time()
        with self.write() as db:
            db.execute("UPDATE runs SET status = ?, result = ?, message = ?, ended = ?, seconds = ? - started,"
                       " weights = COALESCE(?, weights) WHERE id = ?",
                       (status, json.dumps(_finite(result or {})), message, now, now,
                        str(weights) if weights else None, run))

    def set_weights(self, run, path):
        with self.write() as db:
            db.execute("UPDATE runs SET weights = ? WHERE id = ?", (str(Path(path).resolve()), run))

    # ---- reading ----
    def runs(self, project=None):
        """Every run (oldest first) as a dict; project: a name or a project file path to filter on."""
        self._mark_interrupted()
        q, args = f"SELECT {', '.join(COLUMNS)} FROM runs", ()
        if project:
            q, args = q + " WHERE project = ? OR project_path = ?", (str(project), str(Path(project).resolve()))
        out = []
        for r in self.db.execute(q + " ORDER BY started, id", args):
            d = dict(zip(COLUMNS, r))
            for k in JSON:
                d[k] = json.loads(d[k]) if d[k] else {}
            out.append(d)
        return out

    def curves(self, run):
        """{metric: [value per epoch]} of one run."""
        out = {}
        for (m,) in self.db.execute("SELECT metrics FROM epochs WHERE run = ? ORDER BY epoch", (run,)):
            for k, v in json.loads(m).items():
                out.setdefault(k, []).append(v)
        return out

    def graph(self, run):
        row = self.db.execute("SELECT graph FROM runs WHERE id = ?", (run,)).fetchone()
        if row is None:
            raise HistoryError(f"no run {run} in {self.path}")
        return json.loads(row[0])

    def _mark_interrupted(self):
        gone = [(i,) for i, h, p in self.db.execute("SELECT id, host, pid FROM runs WHERE status = 'running'")
                if not _alive(h, p)]
        if gone:
            with self.write() as db:
                db.executemany("UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = 'running'", gone)

    def to_csv(self, project=None):
        """The runs as CSV text: one row per run, settings and final scores flattened into columns."""
        runs = self.runs(project)
        head = ["id", "project", "status", "started", "seconds", "epochs", "seed", "params", "macs", "graph_hash",
                "dataset_fingerprint", "weights"]
        setting = sorted({k for r in runs for k in r["training"]} - {"seed"})
        score = sorted({k for r in runs for k, v in r["result"].items() if isinstance(v, (int, float, str))}
                       - set(head) - {"message"})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(head + [f"setting.{k}" for k in setting] + score)
        for r in runs:
            w.writerow([r[k] if k != "started" else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r[k]))
                        for k in head] + [r["training"].get(k) for k in setting] + [r["result"].get(k) for k in score])
        return buf.getvalue()


def _version():
    try:
        from importlib.metadata import version
        return version("layerboard")
    except Exception:
        return "unknown"


class Recorder:
    """Records one trainer's run: subscribe it to the trainer, call done() (or failed()) at the end."""

    def __init__(self, history, project, model=None, seed=None):
        from .shapes import infer, totals
        params = macs = None
        try:
            params, macs, _ = totals(infer(project.graph))
        except Exception:                       # a graph the shapes cannot follow still gets its run recorded
            pass
        self.history = history
        self.run = history.start(project, params=params, macs=macs, seed=seed)

    def __call__(self, ev):
        if ev.kind == "epoch_end":
            self.history.epoch(self.run, ev.epoch, {k: v for k, v in ev.data.items()
                                                    if isinstance(v, (int, float)) and k != "epochs"})

    def done(self, result, weights=None):
        r = {k: v for k, v in result.items() if k not in ("findings",)}
        self.history.finish(self.run, r.get("status", "completed"), r, r.get("message") or None, weights)

    def failed(self, message):
        self.history.finish(self.run, "failed", {}, message)


def recorder(project, trainer, path=None, seed=None, warn=None):
    """A Recorder subscribed to trainer, in the default (or given) database; None when LAYERBOARD_RUNS=off or the
    database is unusable (then warn(reason) is called, if given: the run goes on unrecorded)."""
    if os.environ.get(ENV) == "off":
        return None
    try:
        rec = Recorder(History(path), project, seed=seed if seed is not None else trainer.cfg.get("seed"))
    except HistoryError as e:
        if warn:
            warn(f"not recorded in the run history: {e}")
        return None
    trainer.subscribe(rec)
    return rec


# ---- command line: layerboard runs [PROJECT] [--json] | layerboard runs export --csv ----
def add_parser(sub):
    r = sub.add_parser("runs", help="the run history: every training run with its settings and scores")
    r.add_argument("project", nargs="?", help="only this project's runs (a project file or name); "
                                              "'export' writes the runs as CSV; 'diff' compares two runs")
    r.add_argument("ids", nargs="*", type=int, help="with diff: the two run ids")
    r.add_argument("--json", action="store_true", help="one JSON object per run, with its curves")
    r.add_argument("--csv", action="store_true", help="with export: CSV (the default)")
    r.add_argument("--db", help=f"the run database (default: ${ENV}, else the user data folder)")
    r.add_argument("-o", "--output", help="with export: write to this file instead of standard output")
    r.set_defaults(fn=cmd_runs)


def cmd_runs(a):
    import sys
    h = History(a.db)
    if a.project == "export":
        text = h.to_csv()
        if a.output:
            from .project import atomic_write
            atomic_write(a.output, text.encode())
        else:
            sys.stdout.write(text)
        return 0
    if a.project == "diff":
        from .rundiff import diff, lines
        if len(a.ids) != 2:
            raise HistoryError("runs diff needs two run ids, e.g. layerboard runs diff 3 7")
        by = {r["id"]: r for r in h.runs()}
        for i in a.ids:
            if i not in by:
                raise HistoryError(f"no run {i} in {h.path}")
        d = diff(by[a.ids[0]], by[a.ids[1]], h.graph(a.ids[0]), h.graph(a.ids[1]))
        print(json.dumps(d) if a.json else "\n".join(lines(d)))
        return 0
    runs = h.runs(a.project)
    if a.json:
        for r in runs:
            print(json.dumps({**r, "curves": h.curves(r["id"])}))
        return 0
    if not runs:
        print(f"no runs recorded in {h.path}" + (f" for {a.project}" if a.project else ""))
        return 0
    print(f"{'id':>4}  {'started':<16}  {'project':<22} {'status':<11} {'epochs':>6}  {'val_loss':>9}  "
          f"{'val_acc':>7}  {'val_rmse':>9}  {'params':>9}  seconds")
    for r in runs:
        res = r["result"]
        num = lambda k, w, f: f"{res[k]:>{w}{f}}" if isinstance(res.get(k), (int, float)) else " " * (w - 1) + "–"
        print(f"{r['id']:>4}  {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['started'])):<16}  "
              f"{r['project'][:22]:<22} {r['status']:<11} {r['epochs']:>6}  {num('val_loss', 9, '.4g')}  "
              f"{num('val_accuracy', 7, '.3f')}  {num('val_rmse', 9, '.4g')}  "
              f"{(r['params'] if r['params'] is not None else '–'):>9}  "
              + (f"{r['seconds']:.1f}" if r["seconds"] is not None else "–"))
    return 0
