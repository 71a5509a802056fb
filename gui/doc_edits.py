"""The Document's edits of several steps at once: paste, a layer's suggested fix, a search trial's values; a mixin
of Document (each pushes one undoable command)."""
import math

from engine.errors import ConfigError
from engine.graph import Edge, GraphError
from engine.hparams import resolve
from engine.layers import REGISTRY
from engine.project import TRAINING

from . import commands as C
from .layout import NODE_H, NODE_W

HP_TRAINING = {h.name: h for h in TRAINING}
PASTE_STEP = (30.0, 30.0)             # each paste lands this much further down-right until it covers nothing


def check_finite(config, where):
    """ConfigError if a number in config is NaN or infinite (JSON cannot hold it; no layer can use it)."""
    for k, v in config.items():
        vals = v if isinstance(v, (list, tuple)) else [v]
        for x in vals:
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"{where}: {k} must be a finite number, got {x}")


class Edits:
    """Document.paste, copy_data, apply_fix, apply_values."""

    def paste(self, data, offset=None):
        """Add copied nodes ({"nodes": [...], "edges": [...]}) under fresh names; returns the new names.

        The whole payload is checked on a copy of the graph first (names, types, settings, every edge as
        connect would check it): a bad payload raises GraphError/ConfigError and pushes nothing. Without
        an offset the copy lands PASTE_STEP further on, again until it covers no node (pastes cascade)."""
        if not isinstance(data, dict):
            raise GraphError("cannot paste: the clipboard does not hold Layerboard layers")
        nodes, edges = data.get("nodes", []), data.get("edges", [])
        if not isinstance(nodes, list) or not isinstance(edges, list):
            raise GraphError("cannot paste: 'nodes' and 'edges' must be lists")
        g = self.graph.copy()
        taken, names, adds = set(g.nodes), {}, []
        for i, n in enumerate(nodes):
            at = f"cannot paste layer #{i + 1}"
            if not isinstance(n, dict):
                raise GraphError(f"{at}: not an object")
            base, t = n.get("name"), n.get("type")
            if not isinstance(base, str) or not base.strip():
                raise GraphError(f"{at}: its name must be non-empty text, got {base!r}")
            if base in names:
                raise GraphError(f"{at}: the name '{base}' appears twice")
            if not isinstance(t, str) or t not in REGISTRY:
                raise GraphError(f"{at} ('{base}'): unknown layer type {t!r}")
            cfg, meta = n.get("config", {}), n.get("meta", {})
            if not isinstance(cfg, dict) or not isinstance(meta, dict):
                raise GraphError(f"{at} ('{base}'): 'config' and 'meta' must be objects")
            check_finite(cfg, f"cannot paste {t} '{base}'")
            resolve(REGISTRY[t].hparams, dict(cfg), f"cannot paste {t} '{base}'")
            new, k = base, 1
            while new in taken:
                new, k = f"{base.rstrip('0123456789') or base}{k}", k + 1
            taken.add(new)
            names[base] = new
            m = dict(meta)
            m.pop("block", None)                        # a pasted layer joins no block
            try:
                m["x"], m["y"] = self._xy((m.get("x", 0), m.get("y", 0)), base)
            except GraphError:
                m["x"], m["y"] = 0.0, 0.0
            g.add_node(t, new, dict(cfg), m)
            adds.append((t, new, dict(cfg), m))
        conns = []
        for i, e in enumerate(edges):
            at = f"cannot paste connection #{i + 1}"
            if not isinstance(e, dict):
                raise GraphError(f"{at}: not an object")
            src, dst, port = e.get("src"), e.get("dst"), e.get("port", 0)
            if src not in names or dst not in names:
                raise GraphError(f"{at}: {src!r} → {dst!r} names a layer that is not pasted")
            if isinstance(port, bool) or not isinstance(port, int):
                raise GraphError(f"{at} ({src} → {dst}): the port must be a whole number, got {port!r}")
            try:
                conns.append(g.connect(names[src], names[dst], port))
            except GraphError as err:
                raise GraphError(f"{at} ({src} → {dst}): {err}") from None
        if not adds:
            return []
        dx, dy = self._paste_offset(adds) if offset is None else offset
        cmds = []
        for t, new, cfg, m in adds:
            m["x"], m["y"] = m["x"] + dx, m["y"] + dy
            cmds.append(C.AddNode(self, t, new, cfg, m))
        cmds += [C.Connect(self, e) for e in conns]
        self._push(C.Compound(self, f"Paste {len(adds)} layer(s)", cmds))
        return [a[1] for a in adds]

    def _paste_offset(self, adds):
        """The first multiple of PASTE_STEP at which the pasted nodes overlap no existing node."""
        have = [self.pos(n) for n in self.graph.nodes]
        for k in range(1, 500):
            dx, dy = k * PASTE_STEP[0], k * PASTE_STEP[1]
            if not any(abs(m["x"] + dx - x) < NODE_W and abs(m["y"] + dy - y) < NODE_H
                       for _, _, _, m in adds for x, y in have):
                return dx, dy
        return dx, dy

    def copy_data(self, names):
        names = set(names)
        return {"nodes": [self.graph.nodes[n].to_dict() for n in self.graph.nodes if n in names],
                "edges": [e.to_dict() for e in self.graph.edges if e.src in names and e.dst in names]}

    def apply_fix(self, name, fix):
        """Carry out a layers.Fix for node `name`: insert a layer before it, or set hyperparameters."""
        node = self.graph.nodes.get(name)
        if node is None:
            raise GraphError(f"no node named '{name}'")
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

    def apply_values(self, values, text="Apply search trial"):
        """Set several settings as one undo step: {"training.lr": 0.01, "fc1.units": 64}; every value is checked
        before anything changes (a ConfigError/GraphError names the first bad one)."""
        for key, v in values.items():
            what, _, name = key.rpartition(".")
            if what == "training":
                if name not in HP_TRAINING:
                    raise ConfigError(f"training has no setting {name!r}")
                HP_TRAINING[name].check(v, "training")
            else:
                node = self.graph.nodes.get(what)
                hps = {h.name: h for h in REGISTRY[node.type].hparams} if node is not None else {}
                if name not in hps:
                    raise GraphError(f"no node '{what}' with a setting {name!r}")
                hps[name].check(v, f"{node.type} '{what}'")
        self.undo_stack.beginMacro(text)
        try:
            for key, v in values.items():
                what, _, name = key.rpartition(".")
                self.set_training(name, v) if what == "training" else self.set_hparam(what, name, v)
        finally:
            self.undo_stack.endMacro()
