"""The JSON project format: graph, training configuration, dataset reference and run records."""
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LayerboardError, ProjectError
from .graph import Graph
from .hparams import HP, resolve
from .losses import LOSSES
from . import optimizers
from .optimizers import OPTIMIZERS

FORMAT, VERSION = "layerboard-project", 1

TRAINING = (
    HP("loss", "choice", "cce", choices=tuple(LOSSES), doc="bce: sigmoid output; cce: softmax output; mse: linear"),
    HP("optimizer", "choice", "adam", choices=tuple(OPTIMIZERS), doc="Update rule: sgd θ ← θ − η∇L; momentum, adagrad, rmsprop, adam adapt the step"),
    optimizers.LR,
    HP("batch_size", "int", 32, min=1, max=1 << 20, doc="Mini-batch size B (ignored by gd: full batch)"),
    HP("epochs", "int", 20, min=1, max=1_000_000, doc="Passes over the training set"),
    HP("validation_split", "float", 0.2, min=0.0, max=0.9, doc="Fraction held out for validation"),
    HP("test_split", "float", 0.0, min=0.0, max=0.9,
       doc="Fraction held out as a test set: only Evaluate reads it, never training or early stopping"),
    HP("seed", "int", 0, min=0, max=2**32 - 1, doc="Seed for initialisation, shuffling and dropout"),
    HP("weight_decay", "float", 0.0, min=0.0, max=1.0, doc="L2 penalty λ on weights (not biases)"),
    HP("patience", "int", 0, min=0, max=100000, doc="Early stopping after this many epochs without improvement (0: off)"),
    optimizers.BETA, optimizers.BETA1, optimizers.BETA2, optimizers.EPS,      # declared once, with the update rules
    HP("clip_norm", "float", 0.0, min=0.0, max=1e6,
       doc="Gradient clipping by global norm c: g ← g·min(1, c/||g||) before each step (0: off)"),
)


def training_config(d):
    """Checked training settings with defaults filled in."""
    return resolve(TRAINING, d or {}, "training")


@dataclass
class Project:
    graph: Graph = field(default_factory=Graph)
    training: dict = field(default_factory=lambda: training_config({}))
    dataset: dict = field(default_factory=lambda: {"kind": "builtin", "name": "xor"})
    name: str = ""
    description: str = ""
    runs: list = field(default_factory=list)
    path: Path | None = None
    search: dict = field(default_factory=dict)     # search ranges, "training.lr" / "node.units" -> range (engine/search.py)

    def to_dict(self):
        return {"format": FORMAT, "version": VERSION, "name": self.name, "description": self.description,
                "graph": self.graph.to_dict(), "training": dict(self.training), "dataset": dict(self.dataset),
                "runs": list(self.runs), **({"search": dict(self.search)} if self.search else {})}

    @classmethod
    def from_dict(cls, d, where="project"):
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ProjectError(f"{where} is not a Layerboard project (missing \"format\": \"{FORMAT}\")")
        v = d.get("version")
        if not isinstance(v, int) or v < 1:
            raise ProjectError(f"{where}: 'version' must be a whole number ≥ 1, got {v!r}")
        if v > VERSION:
            raise ProjectError(f"{where} was written by a newer Layerboard (format version {v}; "
                               f"this one reads up to {VERSION}): update Layerboard to open it")
        try:
            graph = Graph.from_dict(d.get("graph"))
            training = training_config(d.get("training"))
        except LayerboardError as e:
            raise ProjectError(f"{where}: {e}") from None
        ds = d.get("dataset", {"kind": "builtin", "name": "xor"})
        runs = d.get("runs", [])
        if not isinstance(ds, dict) or not isinstance(runs, list):
            raise ProjectError(f"{where}: 'dataset' must be an object and 'runs' a list")
        search = d.get("search", {})
        if not isinstance(search, dict):
            raise ProjectError(f"{where}: 'search' must be an object of ranges")
        return cls(graph, training, ds, str(d.get("name", "")), str(d.get("description", "")), runs, search=search)

    @classmethod
    def load(cls, path):
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ProjectError(f"cannot open {path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ProjectError(f"{path} is not a text file") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProjectError(f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
        p = cls.from_dict(d, str(path))
        p.path = path
        return p

    def save(self, path=None):
        """Write atomically: a crash mid-save leaves the previous file as it was."""
        path = Path(path or self.path)
        atomic_write(path, (json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n").encode())
        self.path = path

    @property
    def base(self):
        """Folder that relative dataset paths are taken from."""
        return self.path.parent if self.path else Path.cwd()


_UMASK = os.umask(0)          # read once at import (setting it is process-wide, so never later, from a thread)
os.umask(_UMASK)


def _mode(path):
    """Permission bits for a file written at path: those of the file it replaces, else 0666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o666 & ~_UMASK


def atomic_write(path, data):
    """Write bytes to a temporary file beside path, fsync, then rename over path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode(path))            # mkstemp makes 0600; keep the old file's mode or the umask's
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
