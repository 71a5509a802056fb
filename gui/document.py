"""The Document: owns the engine Project and the undo stack and is the only writer of the graph."""
import copy
import math
import os
import re
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from engine.errors import ConfigError, LayerboardError, ProjectError
from engine.graph import GraphError, check_name
from engine.hparams import resolve
from engine.layers import REGISTRY
from engine.project import Project
from engine.shapes import infer
from engine.validate import mark

from . import commands as C
from .doc_edits import HP_TRAINING, Edits, check_finite
from .doc_primitives import Primitives

TMP_AGE = 60.0                        # seconds: a hidden .NAME.*.tmp older than this is a killed save's leftover


def weights_path(path):
    """Where the trained weights of the project file `path` are kept: NAME.weights.safetensors beside it."""
    from engine.weights import beside
    return beside(path)



def clean_tmp(path, age=TMP_AGE, now=None):
    """Delete hidden .NAME.*.tmp files beside path (left by atomic writes that were killed) older than age s."""
    path = Path(path)
    now = time.time() if now is None else now
    pat = re.compile(r"^\." + re.escape(path.name) + r"\..+\.tmp$")
    gone = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return gone
    for e in entries:
        if not pat.match(e.name):
            continue
        try:
            if e.is_file(follow_symlinks=False) and now - e.stat(follow_symlinks=False).st_mtime > age:
                os.unlink(e.path)
                gone.append(e.name)
        except OSError:
            pass
    return gone


class LockedError(LayerboardError):
    """The model cannot change while it trains."""


CANVAS = 1e6          # largest |x|, |y| of a node on the canvas


class Document(Edits, Primitives, QObject):
    """Project + QUndoStack + latest shape inference; every edit is an undoable command."""

    changed = Signal()
    validated = Signal(object)          # the infos dict (object: Signal(dict) would re-sort it by name)
    locked_changed = Signal(bool)
    dirty_changed = Signal(bool)
    # fine-grained signals the scene mirrors
    reset = Signal()                    # a new project was loaded: rebuild everything
    trained_changed = Signal()          # a run ended (or weights were loaded): self.trained is the new model
    node_added = Signal(str)
    node_removed = Signal(str)
    node_changed = Signal(str)          # config changed
    node_moved = Signal(str)
    node_renamed = Signal(str, str)
    edge_added = Signal(object)
    edge_removed = Signal(object)
    blocks_changed = Signal()           # a block was grouped, ungrouped, renamed, folded or unfolded (gui.grouping)
    bulk = Signal(bool)                 # True before, False after many node/edge signals in a row (one edit)
    path_changed = Signal(object)
    saved = Signal(object)              # after a successful save (autosave clears itself)
    error = Signal(str)                 # a command that could not run (one line); the model is unchanged

    def __init__(self, project=None, parent=None):
        super().__init__(parent)
        self.project = project or Project()
        self.trained = None                 # engine Model of the last run or loaded weights: saved beside the file
        self.weights_note = ""              # why the weights beside an opened file were not used ("" if fine)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._clean_changed)
        self.unsaved_runs = False           # a run was recorded since the last save (runs are not undo steps)
        self.locked = False
        self.infos = {}
        self.checks = []                    # fn(graph, infos) adding errors the graph alone cannot see (the data's);
        #                                     it replaces an entry (dataclasses.replace), never edits a NodeInfo
        self._inferred = None               # infer()'s own result, before the checks: the next one starts from it
        self._touched = None                # node names whose analysis an edit invalidated (None: all)
        self.auto_shape = None              # the dataset's sample shape for Inputs whose shape is "auto" (None: none)
        self.revalidate()

    # ---- state ----
    @property
    def graph(self):
        return self.project.graph

    def _clean_changed(self, clean):
        self.dirty_changed.emit(self.dirty)

    @property
    def dirty(self):
        return not self.undo_stack.isClean() or self.unsaved_runs

    def set_locked(self, on):
        on = bool(on)
        if on != self.locked:
            self.locked = on
            self.locked_changed.emit(on)

    def revalidate(self, full=True):
        """Shape inference + checks; after an edit (full=False) only the nodes it touched and those downstream."""
        touched, self._touched = self._touched, set()
        prev = None if full or touched is None else self._inferred
        self._inferred = infer(self.graph, prev, touched, auto=self.auto_shape)
        self.infos = mark(self.graph, dict(self._inferred))     # what Train would refuse: two outputs, no Input
        for check in self.checks:
            check(self.graph, self.infos)
        self.validated.emit(self.infos)

    def _touch(self, *names):
        if self._touched is not None:
            self._touched.update(names)

    def pos(self, name):
        m = self.graph.nodes[name].meta
        return float(m.get("x", 0)), float(m.get("y", 0))

    def _raw_pos(self, name):
        """Position as stored (ints stay ints, so undo restores the file's exact text)."""
        m = self.graph.nodes[name].meta
        return m.get("x", 0), m.get("y", 0)

    # ---- whole-project operations (not undoable) ----
    def load(self, project, trained=None):
        """Replace the project (after a successful Project.load): clears the undo history.

        trained: the Model of the weights saved with it (see open), or None."""
        self.project = project
        self.trained = trained
        self.unsaved_runs = False
        self.undo_stack.clear()
        self.undo_stack.setClean()
        self.revalidate()
        self.reset.emit()
        self.path_changed.emit(project.path)
        self.dirty_changed.emit(False)
        self.changed.emit()

    def open(self, path):
        """Load a project file (and the trained weights saved beside it); ProjectError leaves this document untouched."""
        p = Project.load(path)
        self.load(p, self.read_trained(p))
        clean_tmp(path)

    def read_trained(self, project):
        """The Model of NAME.weights.safetensors beside the project if it fits the graph, else None (and a note)."""
        from engine.model import Model
        from engine.weights import load as load_weights
        f = weights_path(project.path)
        self.weights_note = ""
        if not f.exists():
            return None
        try:
            arrays, _ = load_weights(f)
            model = Model(project.graph.copy())
            model.set_weights(arrays, where=f"the weights in {f.name}")
        except (LayerboardError, OSError, ValueError) as e:
            self.weights_note = f"the trained weights {f.name} were not loaded: {e}"
            return None
        return model

    def set_trained(self, model):
        """The model the last run trained (or the user loaded): Save writes it beside the project."""
        self.trained = model
        self.trained_changed.emit()

    def trained_fits(self):
        """True when the kept trained model still matches the graph (same nodes, settings and edges)."""
        from .training.weights import signature
        return self.trained is not None and signature(self.trained.graph) == signature(self.graph)

    def save(self, path=None):
        """Write atomically (Project.save); ProjectError if it fails (the old file stays as it was)."""
        path = Path(path or self.project.path or "")
        if not path.name:
            raise ProjectError("no file name to save to")
        try:
            self.project.save(path)                   # engine.project.atomic_write: the one atomic writer
        except OSError as e:
            raise ProjectError(f"cannot save {path}: {e.strerror or e}; the old file is unchanged") from None
        clean_tmp(path)
        if self.trained_fits():
            from engine.weights import save as save_weights
            w = weights_path(path)
            try:
                save_weights(w, self.trained)
            except (OSError, LayerboardError) as e:
                raise ProjectError(f"saved {path.name} but not its trained weights {w.name}: {e}") from None
            clean_tmp(w)
        self.project.path = path
        self.unsaved_runs = False
        self.undo_stack.setClean()
        self.dirty_changed.emit(self.dirty)
        self.path_changed.emit(path)
        self.saved.emit(path)

    # ---- undoable edits (raise a LayerboardError with the reason when refused) ----
    def _push(self, cmd, structural=True):
        if structural and self.locked:
            raise LockedError("the model is training: stop the run to edit it")
        self.undo_stack.push(cmd)

    def add_node(self, type, config=None, pos=(0, 0), name=None):
        if not isinstance(type, str) or type not in REGISTRY:
            raise GraphError(f"unknown layer type {type!r}")
        name = name or self.graph.unique_name(type)
        if isinstance(name, str) and not name.strip():
            name = ""
        check_name(name)                                    # before the command: its redo must not raise
        if name in self.graph.nodes:
            raise GraphError(f"a node named '{name}' already exists")
        if config is not None and not isinstance(config, dict):
            raise ConfigError(f"{type} '{name}': the settings must be an object, got {config!r}")
        cfg = dict(config or {})
        check_finite(cfg, f"{type} '{name}'")
        resolve(REGISTRY[type].hparams, cfg, f"{type} '{name}'")
        x, y = self._xy(pos, name)
        self._push(C.AddNode(self, type, name, cfg, {"x": x, "y": y}))
        return name

    @staticmethod
    def _xy(pos, name):
        """(x, y) as finite floats on the canvas (|x|, |y| ≤ 1e6: Qt's geometry overflows far beyond), or GraphError."""
        try:
            x, y = (float(v) for v in pos)
        except (TypeError, ValueError):
            raise GraphError(f"'{name}': a position is two numbers, got {pos!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise GraphError(f"'{name}': a position must be finite, got ({x}, {y})")
        if max(abs(x), abs(y)) > CANVAS:
            raise GraphError(f"'{name}': a position must lie within ±{CANVAS:,.0f} on the canvas, got ({x:.4g}, {y:.4g})")
        return x, y

    def remove_nodes(self, names, edges=()):
        names = [n for n in names if n in self.graph.nodes]
        gone = set(names)
        edges = [e for e in edges if self.graph.has_edge(e) and e.src not in gone and e.dst not in gone]
        if not names and not edges:
            return
        what = (f"Delete {', '.join(names)}" if len(names) <= 3 else f"Delete {len(names)} layers") if names \
            else "Disconnect"
        from .search_marks import dropping_ranges
        self._push(dropping_ranges(self, C.RemoveMany(self, what, names, edges), names))

    def connect(self, src, dst, port=None):
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise GraphError(f"an input port is a whole number, got {port!r}")
        edge = self.graph.check_connect(src, dst, port)
        self._push(C.Connect(self, edge))
        return edge

    def disconnect(self, edge):
        if not self.graph.has_edge(edge):
            raise GraphError(f"no edge {edge.src} → {edge.dst}")
        self._push(C.Disconnect(self, edge))

    def move_nodes(self, positions):
        """Move nodes (one undo step); allowed while training: a position is not part of the model."""
        moves = {}
        for n, p in positions.items():
            if n not in self.graph.nodes:
                continue
            xy = self._xy(p, n)
            if self.pos(n) != xy:
                moves[n] = (self._raw_pos(n), xy)
        if moves:
            self._push(C.MoveNodes(self, moves), structural=False)

    def set_hparam(self, name, key, value):
        node = self.graph.nodes.get(name)
        if node is None:
            raise GraphError(f"no node named '{name}'")
        hps = {h.name: h for h in REGISTRY[node.type].hparams}
        if key not in hps:
            raise ConfigError(f"{node.type} '{name}' has no setting {key!r}")
        check_finite({key: value}, f"{node.type} '{name}'")
        if not (node.type == "Input" and key == "shape" and value == "auto"):        # "auto": the dataset's shape
            value = hps[key].check(value, f"{node.type} '{name}'")
        check_finite({key: value}, f"{node.type} '{name}'")
        if isinstance(value, tuple):
            value = list(value)
        old = node.config.get(key, C.MISSING)
        if old == value:
            return
        self._push(C.SetHparam(self, name, key, old, value))

    def rename(self, old, new):
        if old not in self.graph.nodes:
            raise GraphError(f"no node named '{old}'")
        if not isinstance(new, str):
            raise GraphError(f"a node's name is text, got {new!r}")
        new = new.strip()
        if new == old:
            return
        check_name(new)                                     # before the command: its redo must not raise
        if new in self.graph.nodes:
            raise GraphError(f"a node named '{new}' already exists")
        self._push(C.Rename(self, old, new))

    def set_training(self, key, value):
        if key not in HP_TRAINING:
            raise ConfigError(f"training has no setting {key!r}")
        check_finite({key: value}, "training")
        value = HP_TRAINING[key].check(value, "training")
        check_finite({key: value}, "training")
        old = self.project.training.get(key, C.MISSING)
        if old != value:
            self._push(C.SetTraining(self, key, old, value), structural=False)

    def set_dataset(self, ref):
        if not isinstance(ref, dict):
            raise ConfigError("a dataset reference must be an object")
        if ref != self.project.dataset:
            self._push(C.SetDataset(self, dict(self.project.dataset), dict(ref)), structural=False)

    def add_run(self, record):
        """Keep a finished run in the project: saved with it, but not an undo step (a run is not an edit)."""
        self.project.runs.append(copy.deepcopy(record))
        was, self.unsaved_runs = self.dirty, True
        if not was:
            self.dirty_changed.emit(True)
        self.changed.emit()
