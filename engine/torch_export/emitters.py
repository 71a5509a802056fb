"""What a layer's to_torch() returns (Emitted: which nn.Module mirrors it and how its weights map) and the helper
classes model.py may need besides the ones a layer ships in Emitted.sources."""
from dataclasses import dataclass, field


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
    sources: helper class name -> its source, for helper classes a layer ships beside itself (not in HELPERS);
            name them in helpers too.
    """

    module: str | None
    params: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    helpers: tuple = ()
    call: str = "{self}({args})"
    uses_mask: bool = False
    sources: dict = field(default_factory=dict)


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
}


def _pair(v):
    """(3, 3) -> "3", (3, 2) -> "(3, 2)", (2,) -> "2": the form a person writes."""
    return str(v[0]) if len(set(v)) == 1 else f"({', '.join(map(str, v))})"


def _args(*xs):
    return ", ".join(str(x) for x in xs)
