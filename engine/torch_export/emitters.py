"""PyTorch emitters: one small function per layer type saying which nn.Module mirrors it and how its weights map."""
from dataclasses import dataclass, field

import numpy as np

EMITTERS = {}      # layer type -> fn(layer) -> Emitted


def emits(*types):
    """Decorator: register fn as the PyTorch emitter of the given layer types."""
    def deco(fn):
        for t in types:
            EMITTERS[t] = fn
        return fn
    return deco


@dataclass
class Emitted:
    """How one node appears in model.py and in its state_dict.

    module: constructor expression of the node's attribute, e.g. "nn.Linear(64, 256)" (None: no attribute).
    params: our parameter name -> torch name under the attribute ("W" -> "weight"); a tuple
            (torch name, to_torch, from_torch) when the tensor must be rearranged.
    extra:  torch-only state under the attribute with its value (BatchNorm's num_batches_tracked).
    helpers: names of helper classes in HELPERS that model.py must define.
    call:   forward expression; {self} is the attribute, {args} the inputs joined with ", ", {x0}, {x1}... each
            input, {mask} the (B, T) bool mask of valid steps reaching the node ("mask", or "None" where no mask
            reaches it).
    uses_mask: the call reads {mask}; forward then takes mask=None (variable-length sequences).
    """

    module: str | None
    params: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    helpers: tuple = ()
    call: str = "{self}({args})"
    uses_mask: bool = False


# Small modules model.py defines when the graph needs them (torch.nn has no ready-made equivalent).
HELPERS = {
    "Standardize": '''class Standardize(nn.Module):
    """(x − mean) / std with the training set's statistics (buffers, not trained)."""

    def __init__(self, *shape):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def forward(self, x):
        return (x - self.mean) / self.std
''',
    "Add": '''class Add(nn.Module):
    """Elementwise sum of two or more inputs of the same shape."""

    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y
''',
    "Concatenate": '''class Concatenate(nn.Module):
    """Joins the inputs along dim (dim 0 is the batch)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)
''',
    "Reshape": '''class Reshape(nn.Module):
    """Reshapes each sample to shape (the batch axis stays)."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(len(x), *self.shape)
''',
}


def _pair(v):
    """(3, 3) -> "3", (3, 2) -> "(3, 2)": the form a person writes."""
    return str(v[0]) if v[0] == v[1] else f"({v[0]}, {v[1]})"


def _args(*xs):
    return ", ".join(str(x) for x in xs)


# ---- per-layer emitters ----
@emits("Input")
def _input(layer):
    if not layer.config["standardize"]:
        return Emitted(None, call="{x0}")
    return Emitted(f"Standardize({_args(*layer.out_shape)})", {"mean": "mean", "std": "std"},
                   helpers=("Standardize",))


@emits("Dense")
def _dense(layer):
    f, u = layer.in_shapes[0][-1], layer.config["units"]
    bias = "" if layer.config["use_bias"] else ", bias=False"
    return Emitted(f"nn.Linear({f}, {u}{bias})", {"W": "weight", "b": "bias"})   # W is (out, in) in both


emits("ReLU")(lambda layer: Emitted("nn.ReLU()"))
emits("Sigmoid")(lambda layer: Emitted("nn.Sigmoid()"))
emits("Tanh")(lambda layer: Emitted("nn.Tanh()"))
emits("Softmax")(lambda layer: Emitted("nn.Softmax(dim=-1)"))
emits("Dropout")(lambda layer: Emitted(f"nn.Dropout({layer.config['rate']})"))   # inverted, as ours
emits("Flatten")(lambda layer: Emitted("nn.Flatten()"))
emits("Add")(lambda layer: Emitted("Add()", helpers=("Add",)))


@emits("Concatenate")
def _concat(layer):
    return Emitted(f"Concatenate(dim={layer._axis(len(layer.in_shapes[0])) + 1})", helpers=("Concatenate",))


@emits("Reshape")
def _reshape(layer):
    return Emitted(f"Reshape({_args(*layer.out_shape)})", helpers=("Reshape",))


@emits("Conv2D")
def _conv(layer):
    c, o = layer.in_shapes[0][0], layer.config["filters"]
    parts = [f"{c}, {o}", f"kernel_size={_pair(layer.k)}"]
    if layer.s != (1, 1):
        parts.append(f"stride={_pair(layer.s)}")
    pads = layer.padding()
    if pads != (0, 0):
        parts.append(f"padding={_pair(pads)}")
    if not layer.config["use_bias"]:
        parts.append("bias=False")
    return Emitted(f"nn.Conv2d({', '.join(parts)})", {"W": "weight", "b": "bias"})   # (C_out, C_in, K_h, K_w)


@emits("MaxPool2D", "AveragePool2D")
def _pool(layer):
    cls = "nn.MaxPool2d" if layer.type == "MaxPool2D" else "nn.AvgPool2d"      # no padding, floor: as ours
    return Emitted(f"{cls}(kernel_size={_pair(layer.k)}, stride={_pair(layer.s)})")


@emits("GlobalAveragePool")
def _gap(layer):
    return Emitted("nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())")           # (B, C, H, W) → (B, C)


@emits("BatchNorm")
def _batchnorm(layer):
    s = layer.in_shapes[0]
    cls = "nn.BatchNorm2d" if len(s) == 3 else "nn.BatchNorm1d"                     # channels are axis 1 in both
    c = layer.config
    opts = "".join(f", {k}={c[k]}" for k, d in (("eps", 1e-5), ("momentum", 0.1)) if c[k] != d)
    return Emitted(f"{cls}({s[0]}{opts})",
                   {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"},
                   extra={"num_batches_tracked": np.array(0, np.int64)})            # unused: momentum is set
