"""The Document: owns the engine Project and the undo stack and is the only writer of the graph."""
import json
from pathlib import Path

from PySide6.QtCore import QIODevice, QObject, QSaveFile, Signal
from PySide6.QtGui import QUndoStack

from engine.errors import ConfigError, LayerboardError, ProjectError
from engine.graph import Edge, GraphError
from engine.hparams import resolve
from engine.layers import REGISTRY
from engine.project import TRAINING, Project
from engine.shapes import infer

from . import commands as C

HP_TRAINING = {h.name: h for h in TRAINING}


class LockedError(LayerboardError):
    """The model cannot change while it trains."""


class Document(QObject):
    """Project + QUndoStack + latest shape inference; every edit is an undoable command."""

    changed = Signal()
    validated = Signal(object)          # the infos dict (object: Signal(dict) would re-sort it by name)
    locked_changed = Signal(bool)
    dirty_changed = Signal(bool)
    # fine-grained signals the scene mirrors
    reset = Signal()                    # a new project was loaded: rebuild everything
    node_added = Signal(str)
    node_removed = Signal(str)
    node_changed = Signal(str)          # config changed
    node_moved = Signal(str)
    node_renamed = Signal(str, str)
    edge_added = Signal(object)
    edge_removed = Signal(object)
    path_changed = Signal(object)

    def __init__(self, project=None, parent=None):
        super().__init__(parent)
        self.project = project or Project()
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._clean_changed)
        self.locked = False
        self.infos = {}
        self.checks = []                    # fn(graph, infos) adding errors the graph alone cannot see (the data's)
        self.revalidate()

    # ---- state ----
    @property
    def graph(self):
        return self.project.graph

    def _clean_changed(self, clean):
        self.dirty_changed.emit(not clean)

    @property
    def dirty(self):
        return not self.undo_stack.isClean()

    def set_locked(self, on):
        on = bool(on)
        if on != self.locked:
            self.locked = on
            self.locked_changed.emit(on)

    def revalidate(self):
        self.infos = infer(self.graph)
        for check in self.checks:
            check(self.graph, self.infos)
        self.validated.emit(self.infos)

    def pos(self, name):
        m = self.graph.nodes[name].meta
        return float(m.get("x", 0)), float(m.get("y", 0))

    def _raw_pos(self, name):
        """Position as stored (ints stay ints, so undo restores the file's exact text)."""
        m = self.graph.nodes[name].meta
        return m.get("x", 0), m.get("y", 0)

    # ---- whole-project operations (not undoable) ----
    def load(self, project):
        """Replace the project (after a successful Project.load): clears the undo history."""
        self.project = project
        self.undo_stack.clear()
        self.undo_stack.setClean()
        self.revalidate()
        self.reset.emit()
        self.path_changed.emit(project.path)
        self.dirty_changed.emit(False)
        self.changed.emit()

    def open(self, path):
        """Load a project file; ProjectError leaves this document untouched."""
        self.load(Project.load(path))

    def save(self, path=None):
        """Write atomically with QSaveFile; ProjectError if it fails (the old file stays as it was)."""
        path = Path(path or self.project.path or "")
        if not path.name:
            raise ProjectError("no file name to save to")
        data = (json.dumps(self.project.to_dict(), indent=1, ensure_ascii=False) + "\n").encode()
        f = QSaveFile(str(path))
        if not f.open(QIODevice.OpenModeFlag.WriteOnly):
            raise ProjectError(f"cannot write {path}: {f.errorString()}")
        if f.write(data) != len(data):
            f.cancelWriting()
        if not f.commit():
            raise ProjectError(f"cannot save {path}: {f.errorString() or 'write failed'}; the old file is unchanged")
        self.project.path = path
        self.undo_stack.setClean()
        self.path_changed.emit(path)

    # ---- undoable edits (raise a LayerboardError with the reason when refused) ----
    def _push(self, cmd, structural=True):
        if structural and self.locked:
            raise LockedError("the model is training: stop the run to edit it")
        self.undo_stack.push(cmd)

    def add_node(self, type, config=None, pos=(0, 0), name=None):
        if type not in REGISTRY:
            raise GraphError(f"unknown layer type {type!r}")
        name = name or self.graph.unique_name(type)
        if name in self.graph.nodes:
            raise GraphError(f"a node named '{name}' already exists")
        cfg = dict(config or {})
        resolve(REGISTRY[type].hparams, cfg, f"{type} '{name}'")
        self._push(C.AddNode(self, type, name, cfg, {"x": float(pos[0]), "y": float(pos[1])}))
        return name

    def remove_nodes(self, names, edges=()):
        names = [n for n in names if n in self.graph.nodes]
        edges = [e for e in edges if e in self.graph.edges and e.src not in names and e.dst not in names]
        if not names and not edges:
            return
        what = f"Delete {', '.join(names)}" if names else "Disconnect"
        self._push(C.Compound(self, what, [C.Disconnect(self, e) for e in edges] +
                              [C.RemoveNode(self, n) for n in names]))

    def connect(self, src, dst, port=None):
        edge = self.graph.check_connect(src, dst, port)
        self._push(C.Connect(self, edge))
        return edge

    def disconnect(self, edge):
        if edge not in self.graph.edges:
            raise GraphError(f"no edge {edge.src} → {edge.dst}")
        self._push(C.Disconnect(self, edge))

    def move_nodes(self, positions):
        moves = {n: (self._raw_pos(n), (float(x), float(y))) for n, (x, y) in positions.items()
                 if n in self.graph.nodes and self.pos(n) != (float(x), float(y))}
        if moves:
            self._push(C.MoveNodes(self, moves))

    def set_hparam(self, name, key, value):
        node = self.graph.nodes[name]
        hps = {h.name: h for h in REGISTRY[node.type].hparams}
        if key not in hps:
            raise ConfigError(f"{node.type} '{name}' has no setting {key!r}")
        value = hps[key].check(value, f"{node.type} '{name}'")
        if isinstance(value, tuple):
            value = list(value)
        old = node.config.get(key, C.MISSING)
        if old == value:
            return
        self._push(C.SetHparam(self, name, key, old, value))

    def rename(self, old, new):
        new = (new or "").strip()
        if new == old:
            return
        if not new:
            raise GraphError("a node needs a non-empty name")
        if new in self.graph.nodes:
            raise GraphError(f"a node named '{new}' already exists")
        self._push(C.Rename(self, old, new))

    def paste(self, data, offset=(30, 30)):
        """Add copied nodes ({"nodes": [...], "edges": [...]}) under fresh names; returns the new names."""
        taken, names, cmds = set(self.graph.nodes), {}, []
        for n in data.get("nodes", []):
            if n.get("type") not in REGISTRY:
                raise GraphError(f"cannot paste unknown layer type {n.get('type')!r}")
            base, new = n["name"], n["name"]
            i = 1
            while new in taken:
                new, i = f"{base.rstrip('0123456789') or base}{i}", i + 1
            taken.add(new)
            names[n["name"]] = new
            m = dict(n.get("meta", {}))
            m["x"], m["y"] = float(m.get("x", 0)) + offset[0], float(m.get("y", 0)) + offset[1]
            cmds.append(C.AddNode(self, n["type"], new, dict(n.get("config", {})), m))
        for e in data.get("edges", []):
            if e["src"] in names and e["dst"] in names:
                cmds.append(C.Connect(self, Edge(names[e["src"]], names[e["dst"]], e.get("port", 0))))
        if cmds:
            self._push(C.Compound(self, f"Paste {len(names)} layer(s)", cmds))
        return list(names.values())

    def copy_data(self, names):
        names = set(names)
        return {"nodes": [self.graph.nodes[n].to_dict() for n in self.graph.nodes if n in names],
                "edges": [e.to_dict() for e in self.graph.edges if e.src in names and e.dst in names]}

    def apply_fix(self, name, fix):
        """Carry out a layers.Fix for node `name`: insert a layer before it, or set hyperparameters."""
        node = self.graph.nodes[name]
        if fix.action == "set_training":                # e.g. switch the loss to the dataset's task
            cmds = [C.SetTraining(self, k, self.project.training.get(k, C.MISSING), HP_TRAINING[k].check(v, "training"))
                    for k, v in fix.config]
            self._push(C.Compound(self, fix.text, cmds), structural=False)
            return name
        if fix.action == "set":
            cmds = []
            for k, v in fix.config:
                v = list(v) if isinstance(v, tuple) else v
                cmds.append(C.SetHparam(self, name, k, node.config.get(k, C.MISSING), v))
            self._push(C.Compound(self, fix.text, cmds))
            return name
        if fix.action != "insert_before":
            raise GraphError(f"unknown fix action {fix.action!r}")
        new = self.graph.unique_name(fix.type)
        x, y = self.pos(name)
        shift = {n: (self._raw_pos(n), (x0 + 200, y0)) for n in self.graph._downstream(name)
                 for x0, y0 in [self.pos(n)]}
        cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fix.config}
        cmds = [C.MoveNodes(self, shift), C.AddNode(self, fix.type, new, cfg, {"x": x, "y": y})]
        ins = sorted((e for e in self.graph.edges if e.dst == name), key=lambda e: e.port)
        if ins:
            e = ins[0]
            cmds += [C.Disconnect(self, e), C.Connect(self, Edge(e.src, new, 0))]
            cmds.append(C.Connect(self, Edge(new, name, e.port)))
        else:
            cmds.append(C.Connect(self, Edge(new, name, 0)))
        self._push(C.Compound(self, fix.text[:1].upper() + fix.text[1:], cmds))
        return new

    def set_training(self, key, value):
        if key not in HP_TRAINING:
            raise ConfigError(f"training has no setting {key!r}")
        value = HP_TRAINING[key].check(value, "training")
        old = self.project.training.get(key, C.MISSING)
        if old != value:
            self._push(C.SetTraining(self, key, old, value), structural=False)

    def set_dataset(self, ref):
        if not isinstance(ref, dict):
            raise ConfigError("a dataset reference must be an object")
        if ref != self.project.dataset:
            self._push(C.SetDataset(self, dict(self.project.dataset), dict(ref)), structural=False)

    def add_run(self, record):
        self._push(C.AddRun(self, record), structural=False)

    # ---- primitives: called only by commands; each emits the matching signal ----
    def _add(self, type, name, config, meta, index=None):
        """Add a node (at position `index` of the node order when undoing a removal)."""
        self.graph.add_node(type, name, dict(config), dict(meta))
        if index is not None and index < len(self.graph.nodes) - 1:
            items = list(self.graph.nodes.items())
            items.insert(index, items.pop())
            self.graph.nodes = dict(items)
        self.node_added.emit(name)

    def _remove(self, name):
        """Remove a node; returns (node, its index, [(edge index, edge)]) for the undo."""
        index = list(self.graph.nodes).index(name)
        gone = [(i, e) for i, e in enumerate(self.graph.edges) if name in (e.src, e.dst)]
        node, _ = self.graph.remove_node(name)
        for _, e in gone:
            self.edge_removed.emit(e)
        self.node_removed.emit(name)
        return node, index, gone

    def _connect(self, edge, index=None):
        self.graph.connect(edge.src, edge.dst, edge.port)
        if index is not None:
            self.graph.edges.insert(index, self.graph.edges.pop())
        self.edge_added.emit(edge)

    def _disconnect(self, edge):
        index = self.graph.edges.index(edge)
        self.graph.disconnect(edge)
        self.edge_removed.emit(edge)
        return index

    def _move(self, name, xy):
        m = self.graph.nodes[name].meta
        m["x"], m["y"] = xy
        self.node_moved.emit(name)

    def _set_config(self, name, key, value):
        cfg = self.graph.nodes[name].config
        if value is C.MISSING:
            cfg.pop(key, None)
        else:
            cfg[key] = value
        self.node_changed.emit(name)

    def _rename(self, old, new):
        olds = [e for e in self.graph.edges if old in (e.src, e.dst)]
        for e in olds:
            self.edge_removed.emit(e)
        self.graph.rename(old, new)
        self.node_renamed.emit(old, new)
        for e in self.graph.edges:
            if new in (e.src, e.dst):
                self.edge_added.emit(e)

    def _edited(self, structural=True):
        """After every command's redo/undo: re-validate and tell everyone."""
        if structural:
            self.revalidate()
        self.changed.emit()
