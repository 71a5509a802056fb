"""Sequence helpers: Embedding (token ids → vectors) and TimePool (a sequence → one vector over valid steps)."""
import numpy as np
from .._jit import njit

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, Param, fmt, register


@register
class Embedding(Layer):
    category = "core"
    fused = None          # not in the fused kernel: the per-layer path runs it
    reads_lengths = True
    doc = "Token ids (T,) → vectors (T, dim): row E[id] of a learned table; id 0 (padding) → the zero vector"
    hparams = (HP("vocab", "int", 1000, min=2, max=1 << 22, doc="Vocabulary size V (ids 0 … V−1; 0 is padding)"),
               HP("dim", "int", 16, min=1, max=1 << 14, doc="Vector size d"))

    def compute_output_shape(self, in_shapes):
        (s,) = in_shapes
        self._expect_rank(s, (1,), "token ids (steps,)")
        return (s[0], self.config["dim"])

    def params(self, in_shapes):
        return {"E": Param((self.config["vocab"], self.config["dim"]), "glorot_uniform", decay=True)}   # (V, d)

    def formulas(self, in_shapes):
        v, d = self.config["vocab"], self.config["dim"]
        return {"shape": f"(T,) → (T, d) = {fmt(self.compute_output_shape(in_shapes))}",
                "params": f"V·d = {v}·{d} = {v * d:,}", "macs": "0 (a table look-up)"}

    def compute_mask(self, in_masks):
        return in_masks[0]

    def forward(self, x, training=False):
        ids = np.rint(x).astype(np.int64)                            # (B, T)
        v = self.config["vocab"]
        if ids.size and ids.min() < 0:
            b, t = np.argwhere(ids < 0)[0]
            raise ShapeError(f"{self.where}: token ids must lie in 0…{v - 1} (0 is padding), found {ids[b, t]} "
                             f"at batch row {b}, step {t}; negative ids are an error in the data")
        if ids.size and ids.max() >= v:
            b, t = np.argwhere(ids >= v)[0]
            raise ShapeError(f"{self.where}: token ids must lie in 0…{v - 1}, found {ids[b, t]} at batch row {b}, "
                             f"step {t}; raise its vocab to at least {ids.max() + 1}")
        self.ids = ids
        y = self.p["E"][ids]                                         # (B, T, d)
        y[ids == 0] = 0
        return y

    def backward(self, dy):
        dE = self.g["E"]
        dE[...] = 0
        keep = self.ids != 0                                          # padding id 0 gets no gradient
        np.add.at(dE, self.ids[keep], dy[keep])
        return (np.zeros(self.ids.shape, dy.dtype) if self.need_dx else None,)   # ids have no gradient

    def to_onnx(self, ctx, ins):
        n, E = self.name, self.p["E"].copy()
        E[0] = 0                                                                              # padding id → 0
        ids = ctx.op("Cast", ins, f"{n}/ids", to=7)                                           # float → int64
        return ctx.op("Gather", [ctx.const(f"{n}/E", E), ids], n, axis=0)                   # (B, T, d)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        c = self.config
        return Emitted(f"nn.Embedding({c['vocab']}, {c['dim']}, padding_idx=0)", {"E": ("weight", _zero_row0, None)},
                       call="{self}({x0}.long())")

    def torch_reference(self, xs, p, torch):
        return torch.nn.functional.embedding(xs[0].long(), p["E"], padding_idx=0) * (xs[0] != 0)[..., None]

    @classmethod
    def samples(cls):
        return [({"vocab": 7, "dim": 3}, [(5,)], {"ints": 7})]


def _zero_row0(E):
    """E with row 0 zeroed: our id 0 gives the zero vector whatever E[0] holds."""
    E = np.array(E, copy=True)
    E[0] = 0
    return E


def mean_weights(m, dtype):
    """(B, T) weights of a mean over each sequence's valid steps: m / max(Σ_t m, 1), 1/T_b on valid steps, else 0."""
    return m / np.maximum(m.sum(axis=1, keepdims=True), 1).astype(dtype)


@njit(cache=True, nogil=True, error_model="numpy")
def _weighted_sum(x, w, y):
    """y[b] = Σ_t w[b, t] x[b, t] for x (B, T, F), w (B, T), y (B, F)."""
    B, T, F = x.shape
    for b in range(B):
        y[b] = 0
        for t in range(T):
            wt = w[b, t]
            for f in range(F):
                y[b, f] += wt * x[b, t, f]


@njit(cache=True, nogil=True, error_model="numpy")
def _spread(w, dy, dx):
    """dx[b, t] = w[b, t] dy[b] for dy (B, F), w (B, T), dx (B, T, F): _weighted_sum's gradient."""
    B, T, F = dx.shape
    for b in range(B):
        for t in range(T):
            wt = w[b, t]
            for f in range(F):
                dx[b, t, f] = wt * dy[b, f]


@register
class TimePool(Layer):
    category = "pooling"
    fused = None          # not in the fused kernel: the per-layer path runs it
    reads_lengths = True
    doc = "(T, F) → (F,): mean, max or last value over each sequence's valid steps"
    hparams = (HP("mode", "choice", "mean", choices=("mean", "max", "last"), doc="How the steps are combined"),)

    def compute_output_shape(self, in_shapes):
        (s,) = in_shapes
        self._expect_rank(s, (2,), "a sequence (steps, features)")
        return (s[1],)

    def formulas(self, in_shapes):
        t, f = in_shapes[0]
        rule = {"mean": "(1/T_i) Σ_{t ≤ T_i} x_t", "max": "max_{t ≤ T_i} x_t", "last": "x_{T_i}"}[self.config["mode"]]
        return {"shape": f"(T, F) → (F,) = ({f},), y = {rule}", "params": "0", "macs": "0"}

    def forward(self, x, training=False):
        b, t, f = x.shape
        m = self.in_masks[0] if self.in_masks and self.in_masks[0] is not None else np.ones((b, t), bool)
        self.m, self.shape = m, x.shape
        mode = self.config["mode"]
        if mode == "mean":
            self.w = mean_weights(m, x.dtype)                          # (B, T): 1/T_i on valid steps, else 0
            y = np.empty((b, f), x.dtype)
            _weighted_sum(np.ascontiguousarray(x), self.w, y)
            return y
        if mode == "max":
            xm = np.where(m[:, :, None], x, -np.inf)
            self.arg = np.argmax(xm, axis=1)                           # (B, F)
            return np.take_along_axis(x, self.arg[:, None, :], axis=1)[:, 0]
        self.arg = t - 1 - np.argmax(m[:, ::-1], axis=1)               # (B,) last valid step
        return x[np.arange(b), self.arg]

    def backward(self, dy):
        b, t, f = self.shape
        mode = self.config["mode"]
        if mode == "mean":
            dx = np.empty(self.shape, self.w.dtype)
            _spread(self.w, np.ascontiguousarray(dy, dtype=dx.dtype), dx)
            return (dx,)
        dx = np.zeros(self.shape, dy.dtype)
        if mode == "max":
            np.put_along_axis(dx, self.arg[:, None, :], dy[:, None, :], axis=1)
        else:
            dx[np.arange(b), self.arg] = dy
        return (dx,)

    def to_onnx(self, ctx, ins):
        n, mode, t = self.name, self.config["mode"], self.in_shapes[0][0]
        ax = ctx.const(f"{n}/axis", [1], np.int64)
        if mode == "max":
            m = ctx.op("Cast", [_step_mask(ctx, n, t)], f"{n}/maskb", to=9)                  # bool
            low = ctx.const(f"{n}/low", np.float32(-3.0e38))
            return ctx.op("ReduceMax", [ctx.op("Where", [m, ins[0], low], f"{n}/masked")], n, axes=[1], keepdims=0)
        if mode == "mean":
            m = _step_mask(ctx, n, t)
            s = ctx.op("ReduceSum", [ctx.op("Mul", [ins[0], m], f"{n}/masked"), ax], f"{n}/sum", keepdims=0)
            cnt = ctx.op("ReduceSum", [m, ax], f"{n}/count", keepdims=0)                      # (B, 1)
            return ctx.op("Div", [s, cnt], n)
        steps = ctx.const(f"{n}/steps", np.arange(t)[None, :], np.int32)                      # last: one-hot
        lg = ctx.op("Sub", [ctx.op("Unsqueeze", [ctx.lengths(), ctx.const(f"{n}/ax1", [1], np.int64)], f"{n}/lengths"),
                            ctx.const(f"{n}/one", np.int32(1), np.int32)], f"{n}/lastidx")
        hot = ctx.op("Cast", [ctx.op("Equal", [steps, lg], f"{n}/is_last")], f"{n}/hot", to=1)
        hot = ctx.op("Unsqueeze", [hot, ctx.const(f"{n}/ax2", [2], np.int64)], f"{n}/hot3")
        return ctx.op("ReduceSum", [ctx.op("Mul", [ins[0], hot], f"{n}/picked"), ax], n, keepdims=0)

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        return Emitted(f"TimePool({self.config['mode']!r})", helpers=("TimePool",), sources={"TimePool": TORCH_TIMEPOOL},
                       call="{self}({x0}, {mask})", uses_mask=True)

    def torch_reference(self, xs, p, torch):
        x, mode = xs[0], self.config["mode"]
        m = torch.tensor(self.m)[..., None]                                                   # (B, T, 1) valid steps
        if mode == "mean":
            return (x * m).sum(1) / m.sum(1)
        if mode == "max":
            return x.masked_fill(~m, float("-inf")).amax(1)
        return x[torch.arange(len(x)), torch.tensor(self.m.sum(1) - 1)]                       # steps are a prefix

    @classmethod
    def samples(cls):
        return [({"mode": m}, [(4, 3)], {"mask": True}) for m in ("mean", "max", "last")]


def _step_mask(ctx, n, t):
    """(B, T, 1) float: 1 at valid steps from the lengths input."""
    m = ctx.op("Cast", [ctx.valid_steps(t)], f"{n}/mask", to=1)                                 # (B, T) float
    return ctx.op("Unsqueeze", [m, ctx.const(f"{n}/ax2", [2], np.int64)], f"{n}/mask3")       # (B, T, 1)


TORCH_TIMEPOOL = '''class TimePool(nn.Module):
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
