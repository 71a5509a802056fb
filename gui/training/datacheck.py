"""Data shapes the model: mismatches between the dataset and the Input shape, the output units and the loss,
shown at once as errors on the nodes (each with a one-click fix) instead of when Train is pressed."""
from dataclasses import replace
from math import prod

from engine.layers import REGISTRY
from engine.layers.base import Fix, fmt

from .settings import LOSS_TASK, TASKS


def _units_node(graph, out):
    """The node whose `units` set the output width: `out` itself or the nearest one upstream through
    parameter-free single-input layers (Sigmoid, Softmax, Dropout, ...); None if there is none."""
    name = out
    while name is not None:
        node = graph.nodes[name]
        if any(h.name == "units" for h in REGISTRY[node.type].hparams):
            return name
        ins = graph.inputs_of(name)
        if len(ins) != 1 or node.type == "Input":
            return None
        name = ins[0]
    return None


def mismatches(graph, infos, ds, loss):
    """[(node, message, Fix)] where the model does not fit the dataset `ds` trained with `loss`."""
    out = []
    inputs = [n for n, v in graph.nodes.items() if v.type == "Input"]
    pairs = getattr(ds, "target_lengths", None) is not None         # sentence pairs: a source and a target Input
    for n in inputs if len(inputs) == 1 or pairs else []:
        target = pairs and graph.nodes[n].config.get("feed") == "target"
        want = tuple(int(d) for d in (ds.y if target else ds.x).shape[1:])
        have = graph.nodes[n].config.get("shape", REGISTRY["Input"].hparams[0].default)
        if have != "auto" and tuple(have) != want:          # "auto" takes the dataset's shape
            what = "target sequences" if target else "samples"
            out.append((n, f"the dataset '{ds.name}' has {what} of shape {fmt(want)} but this Input is {fmt(have)}",
                        Fix("set", f"set the shape to {fmt(want)}", config=(("shape", want),))))
    outs = graph.outputs()
    if len(outs) != 1:
        return out
    o = outs[0]
    task = ds.task
    if loss in LOSS_TASK and LOSS_TASK[loss] != task and not (task == "binary" and loss == "cce"):
        good = TASKS[task][1]
        out.append((o, f"the dataset '{ds.name}' is a {TASKS[task][0].lower()} task but the loss is {loss}",
                    Fix("set_training", f"switch the loss to {good}", config=(("loss", good),))))
        loss = good
    elif task == "binary" and loss == "cce" and graph.nodes[o].type == "Sigmoid":   # one sigmoid unit wants BCE
        out.append((o, f"the dataset '{ds.name}' is binary and the output is a Sigmoid, but the loss is cce",
                    Fix("set_training", "switch the loss to bce", config=(("loss", "bce"),))))
        loss = "bce"
    units = {"cce": ds.n_classes, "bce": 1}.get(loss)
    if loss == "mse" and task == "regression":
        units = int(prod(ds.y.shape[1:])) if ds.y.ndim > 1 else 1
    info = infos.get(o)
    u = _units_node(graph, o)
    if units and u is not None and info is not None and info.shape is not None and len(info.shape) >= 1 \
            and info.shape[-1] != units:
        why = {"cce": f"{ds.n_classes} classes", "bce": "one probability"}.get(loss, f"{units} target value(s)")
        out.append((u, f"the dataset needs {units} output unit(s) ({why}) but {u} has {info.shape[-1]}",
                    Fix("set", f"set units to {units}", config=(("units", units),))))
    return out


class DataCheck:
    """A Document check (doc.checks) that marks the mismatches with the panel's current dataset on the nodes."""

    def __init__(self, doc, panel):
        self.doc, self.panel = doc, panel
        self._seen = None
        doc.checks.append(self)
        panel.loaded.connect(self._loaded)
        doc.changed.connect(self._changed)
        doc.revalidate()

    def _loaded(self, ds):
        """A dataset was read (or none is usable): Inputs with shape "auto" take its sample shape."""
        self.doc.auto_shape = None if ds is None else tuple(int(d) for d in ds.x.shape[1:])
        self.doc.revalidate()

    def _changed(self):
        loss = self.doc.project.training.get("loss")
        if loss != self._seen:                     # the loss is not part of the graph: re-check when it changes
            self._seen = loss
            self.doc.revalidate()

    def __call__(self, graph, infos):
        ds = self.panel.dataset
        if ds is None:
            return
        for name, msg, fix in mismatches(graph, infos, ds, self.doc.project.training.get("loss")):
            i = infos.get(name)
            if i is not None and not i.error:                # a new entry: the inferred NodeInfo is reused later
                infos[name] = replace(i, error=msg[:1].upper() + msg[1:], fix=fix)
