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


HELPERS["SequenceBatchNorm"] = '''class SequenceBatchNorm(nn.Module):
    """BatchNorm per feature of (B, T, F) sequences, its statistics over the valid steps only (mask (B, T));
    padded steps output 0. The nn.BatchNorm1d inside becomes a SyncBatchNorm under convert_sync_batchnorm."""

    def __init__(self, features, **kw):
        super().__init__()
        self.bn = nn.BatchNorm1d(features, **kw)

    def forward(self, x, mask=None):
        if mask is None:
            return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)           # (B·T, F)
        y = x.new_zeros(x.shape)                                                  # (B, T, F)
        y[mask] = self.bn(x[mask])                                                # (N_valid, F)
        return y
'''


@emits("BatchNorm")
def _batchnorm(layer):
    s = layer.in_shapes[0]
    c = layer.config
    opts = "".join(f", {k}={c[k]}" for k, d in (("eps", 1e-5), ("momentum", 0.1)) if c[k] != d)
    names = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}
    count = {"num_batches_tracked": np.array(0, np.int64)}                          # unused: momentum is set
    if len(s) == 2:                                                                 # (T, F): per feature F
        return Emitted(f"SequenceBatchNorm({s[-1]}{opts})", {k: f"bn.{v}" for k, v in names.items()},
                       extra={f"bn.{k}": v for k, v in count.items()}, helpers=("SequenceBatchNorm",),
                       call="{self}({x0}, {mask})", uses_mask=True)
    cls = "nn.BatchNorm2d" if len(s) == 3 else "nn.BatchNorm1d"                     # channels are axis 1 in both
    return Emitted(f"{cls}({s[0]}{opts})", names, extra=count)


# ---- sequences: recurrent, embedding, pooling over time, attention, position ----
HELPERS["RNN"] = '''class RNN(nn.Module):
    """h_t = f(W h_{t−1} + U x_t + b): (B, T, D) → (B, T, H), or (B, H) the state at each sequence's last
    valid step; padded steps (mask False) keep the state and output 0."""

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", return_sequences=False, learn_h0=False):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, nonlinearity=nonlinearity, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(hidden_size)) if learn_h0 else None
        self.return_sequences = return_sequences

    def forward(self, x, mask=None):
        B, T, _ = x.shape
        h0 = None if self.h0 is None else self.h0.expand(1, B, -1).contiguous()      # (1, B, H)
        if mask is None:
            y, h = self.rnn(x, h0)
        else:
            lengths = mask.sum(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            y, h = self.rnn(packed, h0)
            y = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)[0]   # (B, T, H)
        return y if self.return_sequences else h[0]
'''

HELPERS["TimePool"] = '''class TimePool(nn.Module):
    """(B, T, F) → (B, F): mean, max or last value over each sequence's valid steps."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x, mask=None):
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        m = mask[..., None]                                                       # (B, T, 1)
        if self.mode == "mean":
            return (x * m).sum(1) / m.sum(1)
        if self.mode == "max":
            return x.masked_fill(~m, float("-inf")).amax(1)
        last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)                    # (B,) last valid step
        return x[torch.arange(len(x)), last]
'''

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

HELPERS["PositionalEncoding"] = '''class PositionalEncoding(nn.Module):
    """y_t = x_t + PE_t, PE[t, 2i] = sin(t/10000^(2i/d)), PE[t, 2i+1] = cos(t/10000^(2i/d)); fixed, no weights."""

    def __init__(self, steps, d):
        super().__init__()
        t = torch.arange(steps, dtype=torch.float64)[:, None]                      # (T, 1)
        i = torch.arange(d)
        a = t * 10000.0 ** (-(i // 2 * 2) / d)                                     # (T, d)
        self.register_buffer("pe", torch.where(i % 2 == 0, torch.sin(a), torch.cos(a)).float(), persistent=False)

    def forward(self, x):
        return x + self.pe[: x.shape[1]]
'''

HELPERS["PositionEmbedding"] = '''class PositionEmbedding(nn.Module):
    """y_t = x_t + P_t with a learned P of shape (max_len, d)."""

    def __init__(self, max_len, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_len, d))

    def forward(self, x):
        return x + self.weight[: x.shape[1]]
'''


def _zero_row0(E):
    E = np.array(E, copy=True)
    E[0] = 0                                                    # our id 0 gives the zero vector whatever E[0] holds
    return E


@emits("RNN")
def _rnn(layer):
    c, d = layer.config, layer.in_shapes[0][-1]
    opts = "".join([f", nonlinearity={c['activation']!r}" if c["activation"] != "tanh" else "",
                    ", return_sequences=True" if c["return_sequences"] else "",
                    ", learn_h0=True" if c["learn_h0"] else ""])
    bias = (("rnn.bias_ih_l0", "rnn.bias_hh_l0"), lambda b: (b, np.zeros_like(b)), lambda bi, bh: bi + bh)
    return Emitted(f"RNN({d}, {c['units']}{opts})",
                   {"U": "rnn.weight_ih_l0", "W": "rnn.weight_hh_l0", "b": bias, "h0": "h0"},
                   helpers=("RNN",), call="{self}({x0}, {mask})", uses_mask=True)


@emits("Embedding")
def _embedding(layer):
    c = layer.config
    return Emitted(f"nn.Embedding({c['vocab']}, {c['dim']}, padding_idx=0)", {"E": ("weight", _zero_row0, None)},
                   call="{self}({x0}.long())")


@emits("TimePool")
def _timepool(layer):
    return Emitted(f"TimePool({layer.config['mode']!r})", helpers=("TimePool",), call="{self}({x0}, {mask})",
                   uses_mask=True)


@emits("MultiHeadSelfAttention")
def _mhsa(layer):
    d = layer.in_shapes[0][-1]
    c = layer.config
    causal = ", causal=True" if c["causal"] else ""
    names = {f"W{n}": f"{n}.weight" for n in "qkv"} | {f"b{n}": f"{n}.bias" for n in "qkv"}
    return Emitted(f"MultiHeadSelfAttention({d}, heads={c['heads']}, d_k={layer._dk(d)}{causal})",
                   names | {"Wo": "out.weight", "bo": "out.bias"}, helpers=("MultiHeadSelfAttention",),
                   call="{self}({x0}, {mask})", uses_mask=True)


@emits("LayerNorm")
def _layernorm(layer):
    eps = layer.config["eps"]
    return Emitted(f"nn.LayerNorm({layer.in_shapes[0][-1]}{'' if eps == 1e-5 else f', eps={eps}'})",
                   {"gamma": "weight", "beta": "bias"})


emits("GELU")(lambda layer: Emitted("nn.GELU()"))                                   # exact erf form, as ours


@emits("PositionalEncoding")
def _posenc(layer):
    return Emitted(f"PositionalEncoding({layer.in_shapes[0][0]}, {layer.in_shapes[0][1]})",
                   helpers=("PositionalEncoding",))


@emits("PositionEmbedding")
def _posemb(layer):
    return Emitted(f"PositionEmbedding({layer.config['max_len']}, {layer.in_shapes[0][1]})", {"P": "weight"},
                   helpers=("PositionEmbedding",))
