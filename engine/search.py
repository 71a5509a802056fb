"""Hyperparameter and structure search with Optuna: TPE (or NSGA-II for a Pareto front), median pruning on the
validation loss per epoch, trials in worker processes sharing one study storage, every trial a recorded run.

A project's search ranges live in project.search, keyed "training.<setting>" or "<node>.<hparam>":
  {"low": 1e-4, "high": 0.1, "log": true}   a float range (log scale when "log")
  {"low": 1, "high": 4, "int": true}        an integer range
  {"choices": [16, 32, 64]}                 one of these values
and "repeat:<node>+<node>" for a block repeated k ∈ [low, high] times (engine/structure.py).
"""
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import ConfigError, LayerboardError
from .project import Project
from .structure import check_range, is_repeat, repeat

OBJECTIVES = {"val_loss": "minimize", "val_accuracy": "maximize", "val_rmse": "minimize", "val_mae": "minimize",
              "val_r2": "maximize", "train_loss": "minimize"}
PARETO = ("params", "macs", "latency")


def default_space(project):
    """Ranges a user would try first: η on a log scale, the batch size, the width of each hidden Dense."""
    sp = {"training.lr": {"low": 1e-4, "high": 1e-1, "log": True},
          "training.batch_size": {"choices": [16, 32, 64, 128]}}
    dense = [n for n in project.graph.nodes.values() if n.type == "Dense"]
    for n in dense[:-1]:                                   # the last Dense sets the output width: not searched
        u = int(n.config.get("units", 16))
        sp[f"{n.name}.units"] = {"choices": sorted({max(1, u // 2), u, u * 2})}
    return sp


def check_space(project, space):
    """ConfigError naming the first range that names no setting or node hyperparameter or is malformed."""
    for key, r in space.items():
        if is_repeat(key):
            check_range(project, key, r)
            continue
        what, _, name = key.rpartition(".")
        if not what or not name:                           # node names may hold dots: the setting is after the last
            raise ConfigError(f"search range {key!r}: write 'training.<setting>' or '<node>.<hyperparameter>'")
        if what == "training":
            if name not in project.training:
                raise ConfigError(f"search range {key!r}: no training setting {name!r}")
        elif what not in project.graph.nodes:
            raise ConfigError(f"search range {key!r}: no node {what!r} in the graph")
        if not isinstance(r, dict) or not ("choices" in r or ("low" in r and "high" in r)):
            raise ConfigError(f"search range {key!r}: give {{\"low\": a, \"high\": b}} or {{\"choices\": [...]}}")
        if "choices" in r and not (isinstance(r["choices"], list) and r["choices"]):
            raise ConfigError(f"search range {key!r}: 'choices' must be a non-empty list")
        if "low" in r and not (r["low"] < r["high"] and (not r.get("log") or r["low"] > 0)):
            raise ConfigError(f"search range {key!r}: needs low < high (and low > 0 on a log scale)")
        check_range(project, key, r)


def suggest(trial, space):
    """{key: value} drawn by an Optuna trial from the ranges."""
    out = {}
    for key, r in space.items():
        if "choices" in r:
            out[key] = trial.suggest_categorical(key, r["choices"])
        elif r.get("int") or is_repeat(key):
            out[key] = trial.suggest_int(key, int(r["low"]), int(r["high"]), log=bool(r.get("log")))
        else:
            out[key] = trial.suggest_float(key, float(r["low"]), float(r["high"]), log=bool(r.get("log")))
    return out


def current(project, space):
    """The project's own values of the searched settings (the first trial, so the search starts from them)."""
    out = {}
    for key in space:
        what, _, name = key.rpartition(".")
        if is_repeat(key):
            out[key] = 1                                   # the block as drawn, once
        elif what == "training":
            out[key] = project.training[name]
        else:
            from .layers import REGISTRY
            node = project.graph.nodes[what]
            hp = {h.name: h for h in REGISTRY[node.type].hparams}
            out[key] = node.config.get(name, hp[name].default if name in hp else None)
    return out


def apply(project, values, space=None):
    """A new Project with the values set (the graph and settings checked as on load); blocks are repeated
    after the settings are set, so that every copy carries the trial's values."""
    d = project.to_dict()
    nodes = {n["name"]: n for n in d["graph"]["nodes"]}
    for key, v in values.items():
        what, _, name = key.rpartition(".")
        if is_repeat(key):
            continue
        if what == "training":
            d["training"][name] = v
        else:
            nodes[what]["config"][name] = v
    p = Project.from_dict(d)
    ranges = space if space is not None else project.search
    for key, k in values.items():
        if is_repeat(key) and k != 1:
            names = ranges.get(key, {}).get("repeat") or key[len("repeat:"):].split("+")
            p.graph = repeat(p.graph, names, int(k))
    p.path = project.path
    return p


def _latency(model, project):
    """Seconds per sample of model.predict on a batch of 64 zero inputs (best of three)."""
    x = np.zeros((64,) + tuple(model.input_shape), np.float32)
    model.predict(x)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        model.predict(x)
        best = min(best, time.perf_counter() - t)
    return best / 64


class Objective:
    """Trains the project with a trial's values; reports val_loss per epoch for pruning; records the run."""

    def __init__(self, project, space, objective="val_loss", pareto=None, epochs=None, record=True):
        self.project, self.space, self.objective, self.pareto = project, space, objective, pareto
        self.epochs, self.record = epochs, record

    def __call__(self, trial):
        import optuna
        from .session import prepare
        from .shapes import infer, totals
        values = suggest(trial, self.space)
        p = apply(self.project, values, self.space)
        if self.epochs:
            p.training["epochs"] = self.epochs
        model, tr = prepare(p)
        rec = None
        if self.record:
            from .history import HistoryError, recorder
            try:
                rec = recorder(p, tr)
            except HistoryError:
                rec = None
        pruned = []

        def report(ev):
            if ev.kind == "epoch_end" and self.pareto is None:
                v = ev.data.get("val_loss", ev.data.get("train_loss"))
                if v is not None and np.isfinite(v):
                    trial.report(float(v), ev.epoch)
                    if trial.should_prune():
                        pruned.append(ev.epoch)
                        tr.stop()
        tr.subscribe(report)
        try:
            res = tr.run()
        except BaseException as e:
            if rec:
                rec.failed(str(e) or type(e).__name__)
            raise
        if rec:
            res_rec = dict(res, status="pruned") if pruned else res
            rec.done(res_rec)
            trial.set_user_attr("run", rec.run)
        trial.set_user_attr("status", res["status"])
        if pruned:
            raise optuna.TrialPruned(f"pruned at epoch {pruned[0]}")
        score = res.get(self.objective)
        if score is None or not np.isfinite(score):
            raise LayerboardError(f"trial {trial.number}: no finite {self.objective} ({res['status']}: "
                                  f"{res.get('message') or 'no validation split?'})")
        if self.pareto is None:
            return float(score)
        params, macs, _ = totals(infer(p.graph))
        size = {"params": params, "macs": macs}.get(self.pareto)
        return float(score), float(size if size is not None else _latency(model, p))


def storage_of(url=None):
    """An Optuna storage: an SQLAlchemy URL (postgresql://…, sqlite:///…), a .journal file, or the default
    journal file beside the run history."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    if url and "://" in url:
        return optuna.storages.RDBStorage(url)
    if not url:
        from .history import default_path
        url = str(default_path().parent / "studies.journal")
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(url)))


@contextmanager
def _lock(storage):
    """An exclusive file lock beside a local storage (journal file) while a study is created; none for servers."""
    if storage and "://" in storage:
        yield
        return
    import fcntl
    from .history import default_path
    path = Path(storage or default_path().parent / "studies.journal").with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def study_name(project):
    """The project's name, its graph's hash and, when it marks ranges, theirs (Optuna refuses a study whose
    choices change, so other ranges make another study)."""
    import hashlib
    import json
    from .history import graph_hash
    base = f"{project.name or 'project'}-{graph_hash(project.graph.to_dict())[:8]}"
    if not project.search:
        return base
    return base + "-" + hashlib.sha256(json.dumps(project.search, sort_keys=True).encode()).hexdigest()[:6]


def create(project, storage=None, objective="val_loss", pareto=None, name=None, seed=0):
    """The study (created or joined): TPE with median pruning, or NSGA-II for objective × pareto."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if pareto is not None and pareto not in PARETO:
        raise ConfigError(f"--pareto must be one of {', '.join(PARETO)}, got {pareto!r}")
    kw = {"directions": [OBJECTIVES[objective], "minimize"]} if pareto else {"direction": OBJECTIVES[objective]}
    sampler = (optuna.samplers.NSGAIISampler(seed=seed) if pareto
               else optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    return optuna.create_study(storage=storage_of(storage), study_name=name or study_name(project),
                               sampler=sampler, pruner=pruner, load_if_exists=True, **kw)


def _worker(path, space, n, storage, objective, pareto, name, epochs, seed):
    """One worker process: join the study and run n trials."""
    import optuna
    project = Project.load(path)
    study = create(project, storage, objective, pareto, name, seed)
    study.optimize(Objective(project, space, objective, pareto, epochs), n_trials=n, catch=(LayerboardError,))
    return n


def run(project, trials, storage=None, jobs=1, objective="val_loss", pareto=None, name=None, epochs=None,
        space=None):
    """Run `trials` trials (split over `jobs` worker processes); returns the study."""
    space = space or project.search or default_space(project)
    check_space(project, space)
    if project.path is None:
        raise ConfigError("search needs a saved project file (worker processes load it)")
    with _lock(storage):                                   # one worker of many enqueues the project's own settings
        study = create(project, storage, objective, pareto, name)
        if not study.trials:
            study.enqueue_trial(current(project, space))      # the first trial: the project as it is
    shares = [trials // jobs + (i < trials % jobs) for i in range(jobs)]
    args = [(str(project.path), space, s, storage, objective, pareto, study.study_name, epochs, i)
            for i, s in enumerate(shares) if s]
    if jobs == 1:
        _worker(*args[0])
    else:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(len(args)) as pool:
            pool.starmap(_worker, args)
    return create(project, storage, objective, pareto, study.study_name)


def report(study, project, space, objective="val_loss"):
    """JSON-able summary: the best trial (or Pareto front), the project's own trial, importances."""
    import optuna
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    own_values = current(project, space)
    own = next((t for t in done if t.params == own_values), None)
    out = {"study": study.study_name, "trials": len(study.trials), "complete": len(done),
           "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
           "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials), "objective": objective}
    if len(study.directions) > 1:
        out["pareto"] = [{"trial": t.number, "values": t.values, "params": t.params} for t in study.best_trials]
        return out
    if done:
        b = study.best_trial
        out["best"] = {"trial": b.number, objective: b.value, "params": b.params, "run": b.user_attrs.get("run")}
    if own is not None:
        out["own"] = {"trial": own.number, objective: own.value, "params": own.params}
    if len(done) >= 3:
        try:
            out["importance"] = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):
            pass
    return out


# ---- command line: layerboard search PROJECT --trials N [...] ----
def add_parser(sub):
    s = sub.add_parser("search", help="search hyperparameters with Optuna; every trial is a recorded run")
    s.add_argument("project")
    s.add_argument("--trials", type=int, default=20, help="trials this command runs (over all its --jobs)")
    s.add_argument("--jobs", type=int, default=1, help="worker processes on this machine")
    s.add_argument("--storage", help="study storage: an SQLAlchemy URL (postgresql://user@host/db) shared by "
                                     "workers on many machines, or a .journal file (default: beside the run history)")
    s.add_argument("--study", help="study name (default: the project's name and graph hash)")
    s.add_argument("--objective", default="val_loss", choices=sorted(OBJECTIVES))
    s.add_argument("--pareto", choices=PARETO, help="a second objective to minimise: a Pareto front (NSGA-II)")
    s.add_argument("--epochs", type=int, help="epochs per trial (default: the project's)")
    s.add_argument("--apply", metavar="OUT.json", help="write the project with the best trial's settings")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_search)


def cmd_search(a):
    from .cli import _project, dumps, writable
    p = _project(a.project)
    if a.trials < 1 or a.jobs < 1:
        raise ConfigError("--trials and --jobs must be at least 1")
    if a.apply:
        writable(a.apply, "--apply")
    space = p.search or default_space(p)
    study = run(p, a.trials, a.storage, a.jobs, a.objective, a.pareto, a.study, a.epochs, space)
    out = report(study, p, space, a.objective)
    if a.apply and "best" in out:
        apply(p, out["best"]["params"], space).save(a.apply)
    if a.json:
        print(dumps(out))
        return 0
    print(f"study {out['study']}: {out['trials']} trials ({out['complete']} complete, {out['pruned']} pruned, "
          f"{out['failed']} failed)")
    if "best" in out:
        print(f"best: trial {out['best']['trial']}, {a.objective} {out['best'][a.objective]:.4g}: "
              + ", ".join(f"{k} = {v}" for k, v in out["best"]["params"].items()))
    if "own" in out:
        print(f"the project's own settings: {a.objective} {out['own'][a.objective]:.4g}")
    for k, v in out.get("importance", {}).items():
        print(f"  importance of {k}: {v:.2f}")
    for t in out.get("pareto", []):
        print(f"  Pareto: trial {t['trial']}: {a.objective} {t['values'][0]:.4g}, {a.pareto} {t['values'][1]:.4g}")
    if a.apply and "best" in out:
        print(f"wrote {a.apply}")
    return 0
