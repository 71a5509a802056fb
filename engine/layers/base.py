"""Layer interface (Keras-3 style, shapes exclude the batch axis) and the layer registry."""
from dataclasses import dataclass
from math import prod

import numpy as np

from ..errors import ShapeError
from ..hparams import resolve

REGISTRY = {}
CATEGORIES = ("input", "core", "activation", "convolution", "pooling", "recurrent", "attention",
              "normalization", "regularization", "merge", "reshape")


def register(cls):
    """Class decorator: add a layer type to the registry (and so to the shared gradient check)."""
    assert cls.category in CATEGORIES, cls.category
    cls.type = cls.__name__
    REGISTRY[cls.type] = cls
    return cls


def fmt(shape):
    """Shape as the user reads it: (16, 7, 7)."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


@dataclass(frozen=True)
class Fix:
    """A one-click repair: insert a layer of `type` with `config` before the failing node, or set hparams."""

    action: str            # "insert_before" or "set"
    text: str              # what the user reads, e.g. "insert a Flatten before it"
    type: str = ""
    config: tuple = ()     # (name, value) pairs

    def to_dict(self):
        return {"action": self.action, "text": self.text, "type": self.type, "config": dict(self.config)}


FLATTEN_FIX = Fix("insert_before", "insert a Flatten before it", "Flatten")


@dataclass(frozen=True)
class Param:
    """A weight tensor a layer owns: shape, initializer, whether L2 decay and training touch it."""

    shape: tuple
    init: object = "zeros"   # initializer name or a constant
    decay: bool = False
    trainable: bool = True

    @property
    def size(self):
        return prod(self.shape)


class Layer:
    """Base layer: declare hparams, compute_output_shape, params, macs; implement forward/backward."""

    type = "Layer"
    category = "core"
    doc = ""
    hparams = ()
    n_inputs = 1          # fixed number of inputs; None means two or more
    taps_doc = {}         # internal tensors exposed in self.taps for visualisation
    fused = None          # how the fused training kernel runs it: fused(self, b) emits rows (engine/fused.py),
                          # None: never (the per-layer path runs it); every registered layer declares its own
    reads_lengths = False  # reads self.in_masks: its ONNX graph takes the (batch,) int32 `lengths` input

    # ---- exporters, declared beside the layer (tests/test_enrolment.py fails for a layer without them) ----
    palette = True          # offered in the window's palette (False: a layer only an import makes)
    to_onnx = None          # def to_onnx(self, ctx, ins) -> name of the output tensor (ctx: onnx_export.Builder)
    to_torch = None         # def to_torch(self) -> torch_export.Emitted (the nn.Module attribute, weights, call)
    torch_reference = None  # def torch_reference(self, xs, p, torch) -> forward in torch ops (parity, float64)

    def __init__(self, name="", **config):
        self.name = name or self.type.lower()
        self.config = resolve(self.hparams, config, self.where)
        self.p, self.g, self.taps = {}, {}, {}
        self.rng = None       # numpy Generator, set by the model (dropout, noise)
        self.need_dx = True   # the model clears it when no input needs a gradient
        self.in_masks = []    # per input: (B, T) bool of valid time steps or None, set by the model per batch

    @property
    def where(self):
        return f"{self.type} '{self.name}'"

    # ---- analysis (no arrays) ----
    def compute_output_shape(self, in_shapes):
        """Output shape without batch axis; raise ShapeError saying what arrived and how to fix it."""
        return in_shapes[0]

    def params(self, in_shapes):
        """Name -> Param for every tensor this layer owns."""
        return {}

    def macs(self, in_shapes):
        """Multiply-accumulates per sample for the forward pass."""
        return 0

    def kernel_stride(self):
        """(E, S[, why]) per positional axis for layers that window positions, None when the layer keeps them.

        E: adjacent input positions one output reads (d·(K − 1) + 1); S: step in input positions (Fraction(1, S)
        when upsampling); why: per axis, E's formula with its numbers (or None). engine/receptive.py uses it."""
        return None

    def work(self, in_shapes):
        """Values per sample an evaluation-mode forward holds besides its output (e.g. attention maps)."""
        return 0

    def param_count(self, in_shapes):
        """Trainable values (the spec's parameter count; running statistics are not counted)."""
        return sum(p.size for p in self.params(in_shapes).values() if p.trainable)

    def formulas(self, in_shapes):
        """{"shape", "params", "macs"}: how each number is computed, one line each with this node's numbers.

        The default reads the numbers off compute_output_shape, params and macs; layers whose formula says
        more (Dense, Conv2D, pooling, ...) override the lines they explain better."""
        shape = tuple(self.compute_output_shape(in_shapes))
        ins = [tuple(s) for s in in_shapes]
        if len(ins) == 1 and ins[0] == shape:
            f = {"shape": f"output shape = input shape = {fmt(shape)}"}
        else:
            f = {"shape": ", ".join(fmt(s) for s in ins) + f" → {fmt(shape)}" if ins else f"shape = {fmt(shape)}"}
        ps = {k: p for k, p in self.params(in_shapes).items() if p.trainable}
        if ps:
            terms = ["·".join(map(str, p.shape)) for p in ps.values()]
            f["params"] = (" + ".join(f"{k}" for k in ps) + " = " + " + ".join(terms) +
                           f" = {sum(p.size for p in ps.values()):,}")
        else:
            f["params"] = "no trainable parameters = 0"
        m = int(self.macs(in_shapes))
        f["macs"] = f"MACs = {m:,}" if m else "no multiply-adds = 0"
        return f

    # ---- compute ----
    def build(self, in_shapes):
        """Remember input and output shapes before the first forward."""
        self.in_shapes = [tuple(s) for s in in_shapes]
        self.out_shape = self.compute_output_shape(self.in_shapes)

    def forward(self, *xs, training=False):
        raise NotImplementedError

    def backward(self, dy):
        """Given dL/dy, write parameter gradients into self.g and return dL/dx for each input."""
        raise NotImplementedError

    def get_config(self):
        return dict(self.config)

    # ---- variable-length sequences ----
    def compute_mask(self, in_masks):
        """(B, T) bool mask of this layer's valid output steps from its inputs' masks; None: no mask.

        Default: a sequence (T, F) in and out with the same T passes the masks on (ANDed across inputs);
        a layer that changes or folds the time axis (Flatten, Reshape, pooling) ends them. Sequence
        layers (recurrent, attention) read self.in_masks in forward and override this when needed."""
        ms = [m for m in in_masks if m is not None]
        t = self.out_shape[0] if len(self.out_shape) == 2 else None
        if not ms or t is None or any(len(s) != 2 or s[0] != t for s in self.in_shapes):
            return None
        return np.logical_and.reduce(ms) if len(ms) > 1 else ms[0]

    @classmethod
    def samples(cls):
        """(config, input shapes) cases used by the registry-wide gradient check."""
        return [({}, [(3, 4)])]

    def _expect_rank(self, shape, ranks, what, fix=None):
        """Raise a ShapeError unless len(shape) is in ranks; fix is a Fix offered to the user."""
        if len(shape) not in ranks:
            raise ShapeError(f"{self.where} needs {what} but got {fmt(shape)}" +
                             (f": {fix.text}" if fix else ""), fix=fix)
