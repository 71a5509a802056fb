"""Input and Dense layers."""
from math import prod

import numpy as np

from .. import fused as F
from .. import kernels as k
from .. import parallel
from ..errors import ShapeError
from ..hparams import HP
from ..initializers import INITS
from .base import FLATTEN_FIX, Layer, Param, fmt, register
from .conv_kernels import chunk_sum, scratch


@register
class Input(Layer):
    category = "input"
    doc = "Where data enters the model; shape excludes the batch axis."
    hparams = (HP("shape", "ints", (2,), min=1, max=1 << 20, doc="Sample shape, e.g. 784 or 1,28,28"),
               HP("standardize", "bool", False,
                  doc="Scale to zero mean, unit variance with training-set statistics (kept with the weights)"),
               HP("feed", "choice", "source", choices=("source", "target"),
                  doc="What this Input receives: the data's inputs (source) or, in an encoder–decoder, the "
                      "target tokens shifted right by one step, starting with <start> (target: teacher forcing)"))
    n_inputs = 0

    def compute_output_shape(self, in_shapes):
        return tuple(self.config["shape"])

    def params(self, in_shapes):
        s = tuple(self.config["shape"])
        if not self.config["standardize"]:
            return {}
        return {"mean": Param(s, "zeros", trainable=False), "std": Param(s, "ones", trainable=False)}

    def adapt(self, x):
        """Set the standardisation statistics from training inputs x (N, *shape)."""
        if not self.p:
            return
        if isinstance(x, np.ndarray) and x.nbytes <= 1 << 27:
            mean, sd = x.mean(axis=0), x.std(axis=0)
        elif hasattr(x, "moments"):              # a table's rows: from its cached totals where it can
            s, ss = x.moments()
            mean = s / max(len(x), 1)
            sd = np.sqrt(np.maximum(ss / max(len(x), 1) - mean * mean, 0.0))
        else:                                    # a memory-mapped table: a block of rows at a time
            s = ss = 0.0
            for i in range(0, len(x), 1 << 16):
                b = np.asarray(x[i:i + (1 << 16)], np.float64)                 # (rows, *shape)
                s, ss = s + b.sum(axis=0), ss + (b * b).sum(axis=0)
            mean = s / max(len(x), 1)
            sd = np.sqrt(np.maximum(ss / max(len(x), 1) - mean * mean, 0.0))
        self.p["mean"][...] = mean
        self.p["std"][...] = np.where(sd < 1e-8, 1.0, sd)

    def forward(self, x, training=False):
        if tuple(x.shape[1:]) != self.out_shape:
            raise ShapeError(f"{self.where} expects samples of shape {fmt(self.out_shape)} "
                             f"but the data has {fmt(x.shape[1:])}")
        return (x - self.p["mean"]) / self.p["std"] if self.p else x

    def backward(self, dy):
        return ()

    def fused(self, b):
        b.row(F.INPUT, o=b.out(), n1=b.size(), grad_of=None)          # the batch, standardised first as forward does

    def to_onnx(self, ctx, ins):
        x, n = ins[0], self.name                                       # the graph input, named after the layer
        if not self.p:
            return x
        centred = ctx.op("Sub", [x, ctx.const(f"{n}/mean", self.p["mean"])], f"{n}/centred")
        return ctx.op("Div", [centred, ctx.const(f"{n}/std", self.p["std"])], f"{n}/standardized")

    def to_torch(self):
        from ..torch_export.emitters import Emitted, _args
        if not self.config["standardize"]:
            return Emitted(None, call="{x0}")
        return Emitted(f"Standardize({_args(*self.out_shape)})", {"mean": "mean", "std": "std"},
                       helpers=("Standardize",))

    def torch_reference(self, xs, p, torch):
        return (xs[0] - p["mean"]) / p["std"] if p else xs[0]

    @classmethod
    def samples(cls):
        return []


@register
class Dense(Layer):
    category = "core"
    doc = "Fully connected layer y = W x + b on the last axis: (F,) → (units,), (T, F) → (T, units)."
    hparams = (
        HP("units", "int", 16, min=1, max=1 << 20, doc="Number of output features"),
        HP("use_bias", "bool", True, doc="Add a learned bias b"),
        HP("init", "choice", "glorot_uniform", choices=INITS, doc="Weight initialisation: Glorot variance 2/(n_in + n_out), He variance 2/n_in"),
        HP("bias_init", "float", 0.0, min=-10.0, max=10.0,
           doc="Initial bias; a small positive value keeps ReLU units alive at the start"),
    )

    def compute_output_shape(self, in_shapes):
        (s,) = in_shapes
        self._expect_rank(s, (1, 2), "a 1-D input (features) or a 2-D sequence (steps, features)",
                          fix=FLATTEN_FIX)
        return s[:-1] + (self.config["units"],)

    def params(self, in_shapes):
        f, u = in_shapes[0][-1], self.config["units"]
        ps = {"W": Param((u, f), self.config["init"], decay=True)}   # (out, in) as spec §1
        if self.config["use_bias"]:
            ps["b"] = Param((u,), self.config["bias_init"])
        return ps

    def macs(self, in_shapes):
        s = in_shapes[0]
        return prod(s[:-1]) * s[-1] * self.config["units"]

    def formulas(self, in_shapes):
        s, u = in_shapes[0], self.config["units"]
        f, t = s[-1], prod(s[:-1])
        bias = self.config["use_bias"]
        out = {"shape": f"{fmt(s)} → (…, units) = {fmt(self.compute_output_shape(in_shapes))}",
               "params": (f"F_in·units + units = {f}·{u} + {u} = {f * u + u:,}" if bias
                          else f"F_in·units = {f}·{u} = {f * u:,}")}
        out["macs"] = (f"T·F_in·units = {t}·{f}·{u} = {t * f * u:,}" if len(s) == 2 else f"F_in·units = {f}·{u} = {f * u:,}")
        return out

    CHUNK = 1 << 22       # multiply-adds per chunk of rows for engine.parallel (≈ 0.15 ms on one core)

    def _chunks(self, m, f, u):
        """Row runs of about CHUNK multiply-adds each; one run when the GEMM is too small for two."""
        if m * f * u < 2 * self.CHUNK:
            return [(0, m)]
        return parallel.chunks(m, f * u, target=self.CHUNK)

    def forward(self, x, training=False, relu=False):
        """y = x Wᵀ + b, or max(0, x Wᵀ + b) on each chunk while it is in cache (fusion.DenseReLU)."""
        W = self.p["W"]
        self.x = xs = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=W.dtype)   # (M, F)
        y = np.empty((len(xs), W.shape[0]), W.dtype)                                  # (M, U)
        b = self.p["b"] if "b" in self.p else W[0, :0]

        def run(r):
            yr = y[r[0]:r[1]]
            k.dense_fwd(xs[r[0]:r[1]], W, b, yr)
            if relu:
                k.relu_fwd(yr.reshape(-1), yr.reshape(-1))

        parallel.run(run, self._chunks(*xs.shape, len(W)))
        return y.reshape(x.shape[:-1] + (y.shape[-1],))

    def backward(self, dy, relu_y=None):
        """dW, db, dx from dy; with relu_y (the output of a ReLU right after this layer, fusion.DenseReLU) from
        dy ⊙ (relu_y > 0), formed chunk by chunk."""
        W, g, xs = self.p["W"], self.g, self.x
        u, f = W.shape
        dy2 = np.ascontiguousarray(dy.reshape(-1, u), dtype=W.dtype)                # (M, U)
        dx = np.empty_like(xs) if self.need_dx else np.empty((0, 0), xs.dtype)          # (M, F); xs may be read-only
        db = g["b"] if "b" in g else W[0, :0]
        ry = None if relu_y is None else np.ascontiguousarray(relu_y).reshape(dy2.shape)
        dh = dy2 if ry is None else scratch(self, "dh", dy2.shape, W.dtype)       # (M, U) dL/d(x Wᵀ + b)
        chunks = self._chunks(*xs.shape, u)

        def run(i, o):                                                     # rows a … b−1: their dx and
            a, b = chunks[i]                                               # their share o of dW, db
            if ry is not None:
                k.relu_bwd(ry[a:b].reshape(-1), dy2[a:b].reshape(-1), dh[a:b].reshape(-1), 1)
            k.dense_bwd(xs[a:b], dh[a:b], W, o[:u * f].reshape(u, f), o[u * f:], dx[a:b], 1 if self.need_dx else 0)

        tot = chunk_sum(self, len(chunks), u * f + db.size, W.dtype, run)
        g["W"][...] = tot[:u * f].reshape(u, f)
        db[...] = tot[u * f:]
        if not self.need_dx:
            return (None,)
        return (dx.reshape(dy.shape[:-1] + (dx.shape[-1],)),)

    def fused(self, b):
        f, u = self.in_shapes[0][-1], self.config["units"]
        b.row(F.DENSE, a=b.src(), o=b.out(), n1=b.size() // u, n2=f, n3=u, p1=b.param("W"), p2=b.param("b"))

    def to_onnx(self, ctx, ins):
        W, n, bias = self.p["W"], self.name, "b" in self.p                     # W: (U, F)
        if len(self.in_shapes[0]) == 1:                                        # (B, F) → Gemm with W transposed
            args = [ins[0], ctx.const(f"{n}/W", W)] + ([ctx.const(f"{n}/b", self.p["b"])] if bias else [])
            return ctx.op("Gemm", args, n, transB=1)
        y = ctx.op("MatMul", [ins[0], ctx.const(f"{n}/W_t", W.T)],              # (B, T, F) @ (F, U) → (B, T, U)
                   f"{n}/matmul" if bias else n)
        return ctx.op("Add", [y, ctx.const(f"{n}/b", self.p["b"])], n) if bias else y

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        f, u = self.in_shapes[0][-1], self.config["units"]
        bias = "" if self.config["use_bias"] else ", bias=False"
        return Emitted(f"nn.Linear({f}, {u}{bias})", {"W": "weight", "b": "bias"})   # W is (out, in) in both

    def torch_reference(self, xs, p, torch):
        return torch.nn.functional.linear(xs[0], p["W"], p.get("b"))

    @classmethod
    def samples(cls):
        return [({"units": 3}, [(4,)]), ({"units": 2, "use_bias": False}, [(5, 3)])]
