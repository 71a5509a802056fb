"""Reduce: mean, sum, max, min, product, L1/L2 norm, log-sum-exp, log of the sum or sum of squares over some of a
sample's axes (never the batch axis), as ONNX's ReduceX operators.

Variable-length sequences (T, F): a reduction over the features keeps the steps (with keepdims the mask passes on);
a reduction over the steps, or to a (T,) that is no longer a sequence, refuses a batch with padded steps in one line
(TimePool averages or takes the maximum over the valid steps only)."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register

OPS = {  # op -> (ONNX operator, y, dy/dx)
    "mean": ("ReduceMean", "(1/n) Σ x", "1/n"),
    "sum": ("ReduceSum", "Σ x", "1"),
    "max": ("ReduceMax", "max x", "1 at the largest value (shared equally among ties), else 0"),
    "min": ("ReduceMin", "min x", "1 at the smallest value (shared equally among ties), else 0"),
    "prod": ("ReduceProd", "Π x", "the product of the other values"),
    "l1": ("ReduceL1", "Σ |x|", "sign(x)"),
    "l2": ("ReduceL2", "√(Σ x²)", "x / y"),
    "logsumexp": ("ReduceLogSumExp", "ln Σ eˣ", "eˣ / Σ eˣ (softmax)"),
    "logsum": ("ReduceLogSum", "ln Σ x", "1 / Σ x"),
    "sumsquare": ("ReduceSumSquare", "Σ x²", "2x"),
}

TORCH = '''class Reduce(nn.Module):
    """One number per kept position from the values along dims (dim 0 is the batch): op as ONNX's ReduceX."""

    def __init__(self, op, dims, keepdim):
        super().__init__()
        self.op, self.dims, self.keepdim = op, dims, keepdim

    def forward(self, x):
        d, k, op = self.dims, self.keepdim, self.op
        if op == "mean":
            y = x.mean(d, keepdim=k)
        elif op == "sum":
            y = x.sum(d, keepdim=k)
        elif op == "max":
            y = torch.amax(x, d, keepdim=k)
        elif op == "min":
            y = torch.amin(x, d, keepdim=k)
        elif op == "prod":
            y = x
            for i in sorted(d, reverse=True):
                y = torch.prod(y, i, keepdim=k)
        elif op in ("l1", "l2"):
            y = torch.linalg.vector_norm(x, 1 if op == "l1" else 2, d, keepdim=k)
        elif op == "logsumexp":
            y = torch.logsumexp(x, d, keepdim=k)
        elif op == "logsum":
            y = torch.log(x.sum(d, keepdim=k))
        else:
            y = (x * x).sum(d, keepdim=k)
        return y[:, None] if y.dim() == 1 else y          # every axis but the batch reduced: (B, 1)
'''


@register
class Reduce(Layer):
    category = "pooling"
    fused = None          # runs on the per-layer path
    doc = ("A global pool over any of the sample's `axes` (the batch axis excluded), one number per kept position: "
           "mean, sum, max, min, prod, L1 = Σ|x|, L2 = √(Σx²), logsumexp = ln Σeˣ, logsum = ln Σx, sumsquare = Σx²; "
           "keepdims keeps the reduced axes as 1s.")
    hparams = (HP("op", "choice", "mean", choices=tuple(OPS), doc="How the values along the axes are combined"),
               HP("axes", "ints", (-1,), min=-8, max=7, doc="The sample's axes reduced (−1: the last), e.g. 0 or 1,2"),
               HP("keepdims", "bool", False, doc="Keep the reduced axes with size 1"))

    def _axes(self, rank):
        """The reduced axes of the sample (0-based, sorted, distinct)."""
        ax = self.config["axes"]
        if not ax or any(not -rank <= a < rank for a in ax):
            raise ShapeError(f"{self.where} reduces axes {list(ax)} but its input has {rank} axes (0…{rank - 1} "
                             f"or −1…−{rank}; the batch axis is never reduced)")
        out = sorted({a % rank for a in ax})
        if len(out) != len(ax):
            raise ShapeError(f"{self.where} names an axis twice in axes {list(ax)}")
        return out

    def compute_output_shape(self, in_shapes):
        s = tuple(in_shapes[0])
        ax = self._axes(len(s))
        if self.config["keepdims"]:
            return tuple(1 if i in ax else n for i, n in enumerate(s))
        return tuple(n for i, n in enumerate(s) if i not in ax) or (1,)      # every axis reduced: (1,)

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0])) if self.config["op"] in ("l2", "sumsquare") else 0

    def formulas(self, in_shapes):
        s = tuple(in_shapes[0])
        ax, out = self._axes(len(s)), self.compute_output_shape(in_shapes)
        n = int(np.prod([s[i] for i in ax]))
        _, y, d = OPS[self.config["op"]]
        f = super().formulas(in_shapes)
        f["shape"] = (f"y = {y} over axes {', '.join(map(str, ax))} (n = {n} values each), dy/dx = {d}; "
                      f"{fmt(s)} → {fmt(out)}")
        if self.config["op"] in ("l2", "sumsquare"):
            f["macs"] = f"one x·x per input value = {int(np.prod(s)):,}"
        return f

    def _check_mask(self):
        m = self.in_masks[0] if self.in_masks else None
        if m is None or len(self.in_shapes[0]) != 2 or m.all():
            return
        if 0 in self._axes(2):
            raise ShapeError(f"{self.where} reduces over the steps of a variable-length (T, F) sequence, so padded "
                             "steps would change the result: use TimePool (valid steps only) or reduce the features")
        if len(self.out_shape) != 2:
            raise ShapeError(f"{self.where} turns a variable-length (T, F) sequence into {fmt(self.out_shape)}, where "
                             "padded steps would count as values: set keepdims to keep (T, 1)")

    def forward(self, x, training=False):
        self._check_mask()
        op, ax = self.config["op"], tuple(a + 1 for a in self._axes(x.ndim - 1))
        self.x, self.ax = x, ax
        if op in ("mean", "sum", "max", "min", "prod"):
            fn = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod}[op]
            y = fn(x, ax, keepdims=True)
        elif op == "l1":
            y = np.abs(x).sum(ax, keepdims=True)
        elif op in ("l2", "sumsquare"):
            y = (x * x).sum(ax, keepdims=True)
            y = np.sqrt(y) if op == "l2" else y
        elif op == "logsumexp":
            m = np.max(x, ax, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            y = m + np.log(np.exp(x - m).sum(ax, keepdims=True))
        else:
            y = np.log(x.sum(ax, keepdims=True))
        self.y = y                                                      # (B, …) with the reduced axes as 1s
        return y.reshape((len(x),) + tuple(self.out_shape))

    def backward(self, dy):
        x, y, ax, op = self.x, self.y, self.ax, self.config["op"]
        d = np.reshape(dy, y.shape)                                    # (B, …) with the reduced axes as 1s
        if op == "mean":
            g = d / int(np.prod([x.shape[a] for a in ax]))
        elif op == "sum":
            g = d
        elif op in ("max", "min"):
            hit = x == y                                                # ties share the gradient, as torch.amax
            g = hit * (d / hit.sum(ax, keepdims=True))
        elif op == "prod":
            g = d * _others(x, ax)
        elif op == "l1":
            g = d * np.sign(x)
        elif op == "l2":
            g = d * np.divide(x, y, out=np.zeros(x.shape, np.result_type(x, y)), where=y != 0)
        elif op == "sumsquare":
            g = d * 2 * x
        elif op == "logsumexp":
            g = d * np.exp(x - y)
        else:
            g = d / np.exp(y)
        return (np.ascontiguousarray(np.broadcast_to(g, x.shape), dtype=x.dtype),)

    def _torch_dims(self):
        return tuple(a + 1 for a in self._axes(len(self.in_shapes[0])))

    def to_onnx(self, ctx, ins):
        from ..onnx_export import OPSET
        n, dims, keep = self.name, list(self._torch_dims()), self.config["keepdims"]
        flat = not keep and len(dims) == len(self.in_shapes[0])        # (B,) in ONNX, our (1,): keep, then Flatten
        op = OPS[self.config["op"]][0]
        out = f"{n}/kept" if flat else n
        if op == "ReduceSum" or OPSET >= 18:                           # axes an input (ReduceSum from opset 13)
            y = ctx.op(op, [ins[0], ctx.const(f"{n}/axes", dims, np.int64)], out, keepdims=int(keep or flat))
        else:
            y = ctx.op(op, ins, out, axes=dims, keepdims=int(keep or flat))
        return ctx.op("Flatten", [y], n, axis=1) if flat else y

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"Reduce({self.config['op']!r}, {self._torch_dims()!r}, {self.config['keepdims']!r})",
                       helpers=("Reduce",), sources={"Reduce": TORCH})

    def torch_reference(self, xs, p, torch):
        scope = {"nn": torch.nn, "torch": torch}
        exec(TORCH, scope)
        return scope["Reduce"](self.config["op"], self._torch_dims(), self.config["keepdims"])(xs[0])

    @classmethod
    def samples(cls):
        out = [({"op": op, "axes": ax, "keepdims": k}, [s], {"domain": (0.2, 2.0)} if op == "logsum" else {})
               for op, ax, k, s in [("mean", (-1,), False, (2, 3)), ("sum", (0, 2), True, (2, 3, 2)),
                                    ("max", (1,), False, (3, 4)), ("min", (0, 1), False, (2, 3)),
                                    ("prod", (0,), True, (3, 2)), ("l1", (1, 2), False, (2, 3, 2)),
                                    ("l2", (0,), False, (4,)), ("logsumexp", (-1, 0), True, (2, 3)),
                                    ("logsum", (1,), False, (2, 3)), ("sumsquare", (2,), False, (2, 2, 3))]]
        masked = [({"op": op, "axes": (-1,), "keepdims": True}, [(4, 3)], {"mask": True}) for op in ("mean", "max")]
        return out + masked + [({"op": "sum", "axes": (0,)}, [(5,)])]            # every axis: (1,)


def _others(x, ax):
    """Π of the other values along the axes ax, for every value (exact where x holds zeros)."""
    keep = [a for a in range(x.ndim) if a not in ax]
    t = np.transpose(x, keep + list(ax))
    t2 = t.reshape(t.shape[:len(keep)] + (-1,))                    # (…kept, n)
    one = np.ones(t2.shape[:-1] + (1,), x.dtype)
    before = np.cumprod(np.concatenate([one, t2[..., :-1]], -1), -1)               # Π of the values before
    after = np.cumprod(np.concatenate([one, t2[..., :0:-1]], -1), -1)[..., ::-1]   # Π of the values after
    o = (before * after).reshape(t.shape)
    return np.transpose(o, np.argsort(keep + list(ax)))
