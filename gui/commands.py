"""Undoable edits: each QUndoCommand changes the model only through the Document's primitives."""
import weakref

from PySide6.QtGui import QUndoCommand

MISSING = object()          # a config key that was not set (the layer's default applies)
SET_HPARAM_ID = 1001


class Command(QUndoCommand):
    """apply()/revert() do the primitive work; redo()/undo() add the re-validation and never raise.

    An exception escaping QUndoCommand.redo/undo crashes PySide6, so a failing apply/revert is caught,
    reported through Document.error and leaves the model as it was (the step then does nothing)."""

    structural = True

    def __init__(self, doc, text):
        super().__init__(text)
        self._doc = weakref.ref(doc)     # no doc -> stack -> command -> doc cycle: Qt tears it down in order
        self.applied = False

    @property
    def doc(self):
        return self._doc()

    def apply(self):
        raise NotImplementedError

    def revert(self):
        raise NotImplementedError

    def redo(self):
        self._run(self.apply, True)

    def undo(self):
        self._run(self.revert, False)

    def _run(self, fn, applied):
        doc = self.doc
        if doc is None or self.applied == applied:        # already in that state (an earlier step failed)
            return
        try:
            fn()
            self.applied = applied
        except Exception as e:                            # noqa: BLE001 - nothing may escape into Qt
            doc.error.emit(f"cannot {'redo' if applied else 'undo'} {self.text()}: {e}")
        try:
            doc._edited(self.structural)
        except Exception as e:                            # noqa: BLE001
            doc.error.emit(f"after {self.text()}: {e}")


class Compound(Command):
    """Several commands as one undo step (paste, delete with edges, insert-fix)."""

    def __init__(self, doc, text, parts):
        super().__init__(doc, text)
        self.parts = list(parts)

    def apply(self):
        """All parts or none: a failing part reverts the ones before it, then the error goes on."""
        _all_or_none(self.parts, "apply", "revert")

    def revert(self):
        _all_or_none(reversed(self.parts), "revert", "apply")


def _all_or_none(parts, do, undo):
    """Call each part's `do` in order; if one fails, call `undo` on those done (last first) and re-raise."""
    done = []
    try:
        for p in parts:
            getattr(p, do)()
            done.append(p)
    except Exception:
        for p in reversed(done):
            getattr(p, undo)()
        raise


class AddNode(Command):
    def __init__(self, doc, type, name, config, meta):
        super().__init__(doc, f"Add {name}")
        self.args = (type, name, dict(config), dict(meta))

    def apply(self):
        self.doc._add(*self.args)

    def revert(self):
        self.doc._remove(self.args[1])


class RemoveNode(Command):
    """Removes a node and its edges; undo restores both (ports included)."""

    def __init__(self, doc, name):
        super().__init__(doc, f"Delete {name}")
        self.name, self.node, self.index, self.edges = name, None, None, []

    def apply(self):
        self.node, self.index, self.edges = self.doc._remove(self.name)

    def revert(self):
        n = self.node
        self.doc._add(n.type, n.name, n.config, n.meta, self.index)
        for i, e in self.edges:                       # ascending indices restore the original edge order
            self.doc._connect(e, i)


class RemoveMany(Command):
    """Removes nodes (with their edges) and edges in one pass; undo puts all back in one checked pass."""

    def __init__(self, doc, text, names, edges):
        super().__init__(doc, text)
        self.names, self.edges, self.gone = list(names), list(edges), None

    def apply(self):
        self.gone = self.doc._remove_many(self.names, self.edges)

    def revert(self):
        self.doc._restore(*self.gone)


class Connect(Command):
    def __init__(self, doc, edge):
        super().__init__(doc, f"Connect {edge.src} → {edge.dst}")
        self.edge = edge

    def apply(self):
        self.doc._connect(self.edge)

    def revert(self):
        self.doc._disconnect(self.edge)


class Disconnect(Command):
    def __init__(self, doc, edge):
        super().__init__(doc, f"Disconnect {edge.src} → {edge.dst}")
        self.edge, self.index = edge, None

    def apply(self):
        self.index = self.doc._disconnect(self.edge)

    def revert(self):
        self.doc._connect(self.edge, self.index)


class MoveNodes(Command):
    """moves: {name: (old_xy, new_xy)}; one step per drag. Not structural: allowed while training."""

    structural = False

    def __init__(self, doc, moves):
        super().__init__(doc, "Move" if len(moves) != 1 else f"Move {next(iter(moves))}")
        self.moves = dict(moves)

    def apply(self):
        for n, (_, new) in self.moves.items():
            self.doc._move(n, new)

    def revert(self):
        for n, (old, _) in self.moves.items():
            self.doc._move(n, old)


class SetHparam(Command):
    """Set one hyperparameter; consecutive edits of the same field merge into one step."""

    def __init__(self, doc, name, key, old, new):
        super().__init__(doc, f"Set {name}.{key}")
        self.name, self.key, self.old, self.new = name, key, old, new

    def apply(self):
        self.doc._set_config(self.name, self.key, self.new)

    def revert(self):
        self.doc._set_config(self.name, self.key, self.old)

    def id(self):
        return SET_HPARAM_ID

    def mergeWith(self, other):
        if not isinstance(other, SetHparam) or (other.name, other.key) != (self.name, self.key):
            return False
        self.new = other.new
        self.setObsolete(self.new == self.old)
        return True


class Rename(Command):
    def __init__(self, doc, old, new):
        super().__init__(doc, f"Rename {old} → {new}")
        self.old, self.new = old, new

    def apply(self):
        self.doc._rename(self.old, self.new)

    def revert(self):
        self.doc._rename(self.new, self.old)


class SetKey(Command):
    """Set one key of a dict field of the project (`field`) from old to new; the value `absent` removes the key."""

    structural = False
    field, absent = "", MISSING

    def __init__(self, doc, text, key, old, new):
        super().__init__(doc, text)
        self.key, self.old, self.new = key, old, new

    def _put(self, v):
        t = getattr(self.doc.project, self.field)
        if v is self.absent:
            t.pop(self.key, None)
        else:
            t[self.key] = dict(v) if isinstance(v, dict) else v       # never the command's own dict

    def apply(self):
        self._put(self.new)

    def revert(self):
        self._put(self.old)


class SetTraining(SetKey):
    field = "training"

    def __init__(self, doc, key, old, new):
        super().__init__(doc, f"Set training {key}", key, old, new)


class SetDataset(Command):
    structural = False

    def __init__(self, doc, old, new):
        super().__init__(doc, "Change dataset")
        self.old, self.new = old, new

    def apply(self):
        self.doc.project.dataset = dict(self.new)

    def revert(self):
        self.doc.project.dataset = dict(self.old)
