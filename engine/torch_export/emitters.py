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


# ---- central emitters still to move into their layers: attention, positions ----
HELPERS["MultiHeadSelfAttention"] = '''class MultiHeadSelfAttention(nn.Module):
    """α_{t→s} = softmax_s(q_t·k_s/√d_k) over the allowed keys (valid, and s ≤ t if causal), z_t = Σ_s α_{t→s} v_s
    per head, heads concatenated, then W_O; padded steps output 0."""

    def __init__(self, d_model, heads, d_k, causal=False):
        super().__init__()
        self.heads, self.d_k, self.causal = heads, d_k, causal
        self.q = nn.Linear(d_model, heads * d_k)
        self.k = nn.Linear(d_model, heads * d_k)
        self.v = nn.Linear(d_model, heads * d_k)
        self.out = nn.Linear(heads * d_k, d_model)

    def forward(self, x, mask=None):
        B, T, _ = x.shape
        q, k, v = (f(x).view(B, T, self.heads, self.d_k).transpose(1, 2) for f in (self.q, self.k, self.v))
        s = q @ k.transpose(-2, -1) / self.d_k ** 0.5                              # (B, h, T, T)
        allowed = torch.ones(T, T, dtype=torch.bool, device=x.device)
        if self.causal:
            allowed = allowed.tril()
        if mask is not None:
            allowed = allowed & mask[:, None, None, :] & mask[:, None, :, None]    # (B, 1, T, T)
        none = ~allowed.any(-1, keepdim=True)                                     # rows without a key: 0
        a = torch.softmax(s.masked_fill(~allowed, float("-inf")).masked_fill(none, 0.0), -1).masked_fill(none, 0.0)
        z = (a @ v).transpose(1, 2).reshape(B, T, -1)                             # (B, T, h·d_k)
        y = self.out(z)                                                           # (B, T, d_model)
        return y if mask is None else y * mask[..., None]
'''

@emits("MultiHeadSelfAttention")
def _mhsa(layer):
    d = layer.in_shapes[0][-1]
    c = layer.config
    causal = ", causal=True" if c["causal"] else ""
    names = {f"W{n}": f"{n}.weight" for n in "qkv"} | {f"b{n}": f"{n}.bias" for n in "qkv"}
    return Emitted(f"MultiHeadSelfAttention({d}, heads={c['heads']}, d_k={layer._dk(d)}{causal})",
                   names | {"Wo": "out.weight", "bo": "out.bias"}, helpers=("MultiHeadSelfAttention",),
                   call="{self}({x0}, {mask})", uses_mask=True)
