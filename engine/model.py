"""A runnable model built from a graph: layers, one flat parameter buffer, forward and backward."""
import zlib

import numpy as np

from .errors import ShapeError, TrainingError
from .initializers import initialize
from .layers import create, fusion, fusion_infer
from .layers.base import fmt
from .shapes import errors, infer
from .validate import outputs_of, problem


def stream(seed, key):
    """A random generator for (seed, tensor name): editing one layer leaves the others' draws unchanged."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


DATA = "__data__"     # weight-file prefix of the data statistics (not a layer)
DATA_KEYS = ("x_mean", "x_std", "y_mean", "y_std")


def memory_budget():
    """Bytes one evaluation or prediction batch may hold: a quarter of the available memory, at most 1 GiB."""
    avail = 4 << 30
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(ln.split()[1]) << 10 for ln in f if ln.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):        # not Linux: assume 4 GiB are free
        pass
    return min(1 << 30, avail // 4)


class Model:
    """Executes a Graph. Trainable weights are views into self.theta; their gradients into self.grad."""

    def __init__(self, graph, dtype=np.float32, seed=0):
        self.graph, self.dtype = graph, np.dtype(dtype)
        self.infos = infer(graph)
        errs = errors(self.infos)
        if errs:
            raise ShapeError("; ".join(f"{m}" for _, m in errs[:3]) + (" …" if len(errs) > 3 else ""))
        self.order = list(self.infos)
        self.srcs = {n: graph.inputs_of(n) for n in self.order}
        self.inputs = [n for n in self.order if graph.nodes[n].type == "Input"]
        self.feeds = {n: graph.nodes[n].config.get("feed", "source") for n in self.inputs}
        bad = problem(graph)                # the check the window shows on the nodes (engine/validate.py)
        if bad:
            raise ShapeError(bad[1])
        outs = outputs_of(graph)
        self.outputs = outs                 # several only when each is marked (an imported model's outputs)
        self.output = outs[0]               # the one trained and returned by forward/predict
        self.layers = {}
        for n in self.order:
            node = graph.nodes[n]
            layer = self.layers[n] = create(node.type, n, node.config)
            layer.build([self.infos[s].shape for s in self.srcs[n]])
        self._needs_grad()
        self._allocate(seed)
        self.head = self.layers[self.output]
        self.groups = fusion.groups(self)      # first node -> layers run as one pass (engine/layers/fusion.py)
        self.inner = {v for g in self.groups.values() for v in g.nodes[:-1]}
        self.fused_now = {}
        self.data = {}      # DATA key -> array: input/target standardisation kept with the weights
        self.meta = {}      # JSON-able data description saved with the weights (vocabulary, text options)

    @property
    def input_shape(self):
        return self.infos[self.inputs[0]].shape

    @property
    def output_shape(self):
        return self.infos[self.output].shape

    def _needs_grad(self):
        """trains[n]: n or a node upstream owns weights; only then does a gradient need to reach n. frozen: the
        nodes before an opaque layer (an ONNX node run in onnxruntime, no gradient): their weights are state."""
        stops = {n for n in self.order if getattr(self.layers[n], "opaque", False)}
        self.frozen, todo = set(), [s for n in stops for s in self.srcs[n]]
        if len(self.outputs) > 1:               # the other outputs' own layers: kept as they are (not trained)
            up, walk = set(), [self.output]
            while walk:
                n = walk.pop()
                if n not in up:
                    up.add(n)
                    walk += self.srcs[n]
            self.frozen |= {n for n in self.order if n not in up}
        while todo:
            n = todo.pop()
            if n not in self.frozen:
                self.frozen.add(n)
                todo += self.srcs[n]
        self.trains = {}
        for n in self.order:
            layer = self.layers[n]
            layer.need_dx = n not in stops and any(self.trains[s] for s in self.srcs[n])
            own = n not in self.frozen and any(p.trainable for p in layer.params(layer.in_shapes).values())
            self.trains[n] = layer.need_dx or own

    def _allocate(self, seed):
        specs = [(n, k, p) for n in self.order for k, p in self.layers[n].params(self.layers[n].in_shapes).items()]
        train = [s for s in specs if s[2].trainable and s[0] not in self.frozen]
        size = sum(p.size for _, _, p in train)
        self.theta = np.zeros(size, self.dtype)
        self.grad = np.zeros(size, self.dtype)
        self.decay = np.zeros(size, self.dtype)       # 1 where L2 weight decay applies (weights, not biases)
        self.slices, self.shapes, self.state = {}, {}, {}
        at = 0
        for n, k, p in specs:
            layer = self.layers[n]
            value = initialize(p.init, p.shape, stream(seed, f"{n}/{k}"), self.dtype)
            if p.trainable and n not in self.frozen:
                sl = slice(at, at + p.size)
                at += p.size
                self.slices[f"{n}/{k}"], self.shapes[f"{n}/{k}"] = sl, p.shape
                layer.p[k] = self.theta[sl].reshape(p.shape)
                layer.g[k] = self.grad[sl].reshape(p.shape)
                layer.p[k][...] = value
                self.decay[sl] = p.decay
            else:
                layer.p[k] = self.state[f"{n}/{k}"] = value
        for n in self.order:
            self.layers[n].rng = stream(seed, n)

    # ---- compute ----
    def input_of(self, x, mask=None):
        """({Input name: array}, {Input name: mask or None}) from one array / mask (the first Input's) or dicts."""
        xs = dict(x) if isinstance(x, dict) else {self.inputs[0]: x}
        ms = dict(mask) if isinstance(mask, dict) else {self.inputs[0]: mask}
        missing = [n for n in self.inputs if n not in xs]
        if missing:
            raise ShapeError(f"the model has the Inputs {self.inputs} (feeds {self.feeds}) but got no data for "
                             f"{missing}: pass a dict {{Input name: array}}")
        return xs, ms

    def forward(self, x, training=False, logits=False, mask=None, every=False, given=None):
        """Output for a batch x of shape (B, *input_shape); logits=True stops before the head activation.

        x: one array (a one-Input model, or the first Input) or {Input name: array}; mask: (B, T) bool of
        valid steps when the Input is a (T, F) sequence of variable length (a dict per Input when several);
        every layer finds its inputs' masks in layer.in_masks and self.masks holds each node's output mask.
        self.acts holds each node's output, except inside fused groups unless every=True. given: {node: (output,
        mask)} computed before (e.g. an encoder's, engine/seq2seq.py); those nodes do not run."""
        xs, ms = self.input_of(x, mask)
        for n in self.inputs:
            xs[n] = np.ascontiguousarray(xs[n], dtype=self.dtype)
        first = self.inputs[0]
        if "x_mean" in self.data:                           # per-feature standardisation of sequences (the source)
            xs[first] = ((xs[first] - self.data["x_mean"]) / self.data["x_std"]).astype(self.dtype)
        acts, masks = self.acts, self.masks = {}, {}
        for n, (a, m) in (given or {}).items():
            acts[n], masks[n] = a, m
        stop = self.output if logits else None
        self.fused_now, inner = ({}, ()) if every else (self.groups, self.inner) if training or given else \
            fusion_infer.plan(self, stop)                 # evaluation: chains of layers in one loop (fusion_infer)
        unmasked = self._unmasked() if not given and all(m is None for m in ms.values()) else None
        for n in self.order:
            if n == stop:
                return acts[self.srcs[n][0]]
            if n in acts:                                 # given, or the last node of a group that ran
                continue
            if n in self.fused_now:                       # a group of layers in one pass (layers/fusion.py)
                g = self.fused_now[n]
                for v in g.nodes:                         # each layer's mask, as when it runs alone
                    if unmasked is not None:
                        layer, layer.in_masks, masks[v] = unmasked[v]
                        continue
                    layer, srcs = self.layers[v], self.srcs[v]
                    layer.in_masks = [masks[s] for s in srcs]
                    masks[v] = layer.compute_mask(layer.in_masks)
                acts[g.nodes[-1]] = g.forward(*[acts[s] for s in self.srcs[n]],
                                              training=training and n not in self.frozen)
                continue
            if n in inner or n in acts:                   # inside a group, or its last node
                continue
            layer, srcs = self.layers[n], self.srcs[n]
            if unmasked is not None:
                layer, layer.in_masks, masks[n] = unmasked[n]
            elif srcs:
                layer.in_masks = [masks[s] for s in srcs]
                masks[n] = layer.compute_mask(layer.in_masks)
            else:
                layer.in_masks, masks[n] = [], self._input_mask(n, ms.get(n), len(xs[n]))
            acts[n] = layer.forward(*([acts[s] for s in srcs] or [xs[n]]), training=training and n not in self.frozen)
        return acts[self.output]

    def _unmasked(self):
        """{node: (layer, its in_masks, its mask)} when no Input has a mask (masks follow from the graph alone):
        worked out once, so that a step on unmasked data calls no compute_mask."""
        u = self.__dict__.get("_unmasked_")
        if u is None:
            masks, u = {}, {}
            for n in self.order:
                layer, srcs = self.layers[n], self.srcs[n]
                ins = [masks[s] for s in srcs]
                masks[n] = layer.compute_mask(ins) if srcs else None
                u[n] = (layer, ins, masks[n])
            self._unmasked_ = u
        return u

    def _input_mask(self, name, mask, batch):
        """The mask of Input `name` checked against its (T, F) shape, as bool."""
        if mask is None:
            return None
        mask = np.asarray(mask, dtype=bool)
        shape = self.infos[name].shape
        if len(shape) not in (1, 2) or mask.shape != (batch, shape[0]):
            raise ShapeError(f"a mask must be (batch, T) = ({batch}, {shape[0] if len(shape) <= 2 else 'T'}) "
                             f"for a (T, F) sequence or (T,) token Input; the Input '{name}' is {fmt(shape)} and "
                             f"the mask {fmt(mask.shape)}")
        return mask

    def backward(self, dy, logits=False):
        """Back-propagate dL/d(output) (or d(logits) when forward ran with logits=True); fills self.grad."""
        start = self.srcs[self.output][0] if logits else self.output
        pend = {start: dy}
        last = {g.nodes[-1]: (first, g) for first, g in self.fused_now.items()}
        for n in reversed(self.order[: self.order.index(start) + 1]):
            d = pend.pop(n, None)
            layer = self.layers[n]
            if d is None or not self.srcs[n]:
                continue
            if n in last:                                 # a fused group: its gradient goes to the first's input
                n, layer = last[n]
            for s, dx in zip(self.srcs[n], layer.backward(d)):
                if self.trains[s]:
                    pend[s] = dx if s not in pend else pend[s] + dx

    def sample_bytes(self):
        """Bytes an evaluation-mode forward holds per sample: every node's output and each layer's work arrays
        (attention maps: heads·T·S; in key blocks, beyond attention.TILE_MAX_T steps without a softcap, only the
        heads·T log-sum-exps: the maps are never held)."""
        from .layers.attention import TILE_MAX_T
        vals = 0
        for n in self.order:
            layer = self.layers[n]
            shapes = getattr(layer, "in_shapes", None) or []
            w = layer.work(shapes)
            if (w and layer.category == "attention" and max(s[0] for s in shapes) > TILE_MAX_T
                    and not layer.config.get("softcap")                      # (a softcap keeps the maps)
                    and (layer.type != "ScaledDotProductAttention" or len(set(layer._dims(shapes)[2:])) == 1)):
                w -= layer.config["heads"] * shapes[0][0] * (shapes[-1][0] - 1)      # h·T·S maps → h·T
            vals += self.infos[n].memory + w
        return int(vals) * self.dtype.itemsize

    def batch_for(self, most=512, budget=None):
        """Samples per evaluation batch whose forward fits in `budget` bytes (default: memory_budget()), 1 … most."""
        budget = memory_budget() if budget is None else budget
        return int(max(1, min(most, budget // max(self.sample_bytes(), 1))))

    def predict(self, x, batch_size=None, lengths=None):
        """Evaluation-mode outputs for any number of samples, in the targets' original units.

        x: one array or {Input name: array}; lengths: (N,) valid steps of each (padded) sequence (a dict per Input
        when several), or None when every step counts; batch_size: samples
        per forward (default: as many as fit in memory_budget(), at most 512). x may be any array with a shape
        that slices into batches (a memory map, a table's rows): it is read a batch at a time."""
        return self.predict_all(x, batch_size, lengths, [self.output])[self.output]

    def predict_all(self, x, batch_size=None, lengths=None, outputs=None):
        """{output node: predictions} of each of `outputs` (default: every output of the model), as predict."""
        outputs = outputs or self.outputs
        batch_size = batch_size or self.batch_for()
        xs, ls = self.input_of(x, lengths)
        masks = {}
        for n, a in xs.items():
            a = xs[n] = a if hasattr(a, "shape") else np.asarray(a)
            if tuple(a.shape[1:]) != self.infos[n].shape:
                raise ShapeError(f"the model expects samples of shape {fmt(self.infos[n].shape)} for the Input "
                                 f"'{n}' but got {fmt(a.shape[1:])}")
            lg = ls.get(n)
            masks[n] = None if lg is None else np.arange(a.shape[1])[None, :] < np.asarray(lg)[:, None]
        count = len(xs[self.inputs[0]])
        outs = {o: [] for o in outputs}
        for i in range(0, count, batch_size):
            self.forward({n: a[i:i + batch_size] for n, a in xs.items()},
                         mask={n: None if m is None else m[i:i + batch_size] for n, m in masks.items()})
            for o in outputs:
                outs[o].append(self.acts[o])
        ys = {o: np.concatenate(v) if v else np.zeros((0,) + self.infos[o].shape, self.dtype) for o, v in outs.items()}
        if self.output in ys:
            ys[self.output] = self.original_units(ys[self.output])
        return ys

    def original_units(self, y):
        """Outputs in the targets' units (undo the trainer's target standardisation)."""
        if "y_mean" not in self.data:
            return y
        return (y * self.data["y_std"] + self.data["y_mean"]).astype(self.dtype)

    # ---- weights ----
    def weights(self):
        """Copies of every tensor (trainable and state) keyed 'node/param'."""
        w = {k: self.theta[sl].reshape(self.shapes[k]).copy() for k, sl in self.slices.items()}
        w.update({k: v.copy() for k, v in self.state.items()})
        w.update({f"{DATA}/{k}": v.copy() for k, v in self.data.items()})
        return w

    def set_weights(self, w, where="weights"):
        """Load tensors by 'node/param' name; every tensor must be present with the right shape."""
        data = {k.split("/", 1)[1]: np.asarray(v, self.dtype) for k, v in w.items() if k.startswith(DATA + "/")}
        bad = sorted(set(data) - set(DATA_KEYS))
        if bad:
            raise TrainingError(f"{where}: unknown data statistic {DATA}/{bad[0]}")
        w = {k: v for k, v in w.items() if not k.startswith(DATA + "/")}
        mine = {k: v for k, v in self.weights().items() if not k.startswith(DATA + "/")}
        missing = sorted(set(mine) - set(w))
        extra = sorted(set(w) - set(mine))
        if missing or extra:
            raise TrainingError(f"{where} do not fit this model: missing {missing or 'nothing'}, "
                                f"unexpected {extra or 'nothing'}")
        for k, v in mine.items():
            if tuple(w[k].shape) != v.shape:
                raise TrainingError(f"{where}: '{k}' has shape {fmt(w[k].shape)} but the model needs {fmt(v.shape)}")
        for k, v in w.items():
            n, p = k.split("/")
            self.layers[n].p[p][...] = v
        self.data = data
