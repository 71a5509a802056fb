"""The steps of evaluation chains (fusion_infer.py): each is a layer's own evaluation kernel (or one kernel for a
few adjacent layers) run on one chunk of the batch.

Kernels: Conv2D's conv_kernels.conv_fwd and conv_shift.shift_fwd, norm_kernels.bn_relu_maxpool / affine /
bn_eval_coefs, conv_kernels.maxpool_fwd / avgpool_fwd, engine/kernels.py's dense_fwd, the activations' own
forward kernels and softmax_rows; Conv2D → (BatchNorm) → ReLU → MaxPool2D 2×2 is fusion_infer_kernels'
conv_relu_maxpool. `single(layer)` says which layers offer a step, `steps(layers)` groups a run of them.
"""
from math import prod

import numpy as np

from .. import kernels as kn
from . import conv_kernels as ck
from . import conv_shift
from . import fusion_infer_kernels as fk
from . import norm_kernels as nk
from .activations import Softmax, _Stored
from .fusion import BNReLUPool


class _Step:
    """One or more adjacent layers as one kernel call per chunk; out: output shape of a sample."""
    view = False          # the output is a view of the input (no kernel)
    extra = 0             # bytes of per-sample work arrays besides the output

    def __init__(self, *layers):
        self.layers, self.out = layers, layers[-1].out_shape

    def prepare(self):
        """Per forward, before the loop: coefficients from the current weights."""

    def bind(self, n, buf):
        """f(x, y): y = the step's output for a chunk x of n samples, in this thread's scratch arrays
        buf(self.key, name, shape, dtype, zero) (made once per thread and chunk size)."""
        return lambda x, y: self.run(x, y)

    def run(self, x, y):
        raise NotImplementedError


class _View(_Step):
    """Flatten, Reshape, and Dropout (identity in evaluation)."""
    view = True


class _Conv(_Step):
    """Conv2D, groups 1 and dilation 1: Conv2D's kernels (im2col + one GEMM, or one GEMM per tap)."""

    def __init__(self, conv):
        super().__init__(conv)
        C, H, W = conv.in_shapes[0]
        (ph, pw), (O, HO, WO) = conv.pads, conv.out_shape
        if conv.shift:
            self.S, self.Hq, self.Wq, self.L = conv_shift.geometry(conv, H, W)
            self.extra = self.S * C * self.Hq * self.Wq
        else:
            self.xp = (C, H + 2 * ph, W + 2 * pw)                          # the padded sample
            self.wrow, self.L = conv._layout((1,) + self.xp)
            self.R = C * prod(conv.k)
            self.sub = max(1, conv.SUB // (self.R * self.L * conv.p["W"].itemsize))   # samples per GEMM, as Conv2D's
            self.extra = prod(self.xp) if ph or pw else 0

    def prepare(self):
        c = self.layers[0]
        O, W = c.config["filters"], c.p["W"]
        self.b = c.p["b"] if "b" in c.p else np.zeros(O, W.dtype)
        if c.shift:
            self.Wk = np.ascontiguousarray(W.transpose(2, 3, 0, 1).reshape(prod(c.k), O, -1))   # (taps, C_out, C_in)
        else:
            self.W2 = W.reshape(O, -1)                                     # (C_out, C_in·K_h·K_w), a view

    def bind(self, n, buf):
        c, dt, pool = self.layers[0], self.dtype, len(self.layers) > 1
        (ph, pw), (kh, kw), (sh, sw), O = c.pads, c.k, c.s, c.config["filters"]
        if c.shift:
            P = buf(self.key, "P", (n, self.S) + c.in_shapes[0][:1] + (self.Hq, self.Wq), dt)  # (n, S, C, Hq, Wq)
            y2 = buf(self.key, "y2", (O, self.L), dt)
            return lambda x, y: conv_shift.shift_fwd(x, P, self.Wk, self.b, y, y2, kh, kw, sh, sw, ph, pw, self.L)
        xp = buf(self.key, "xp", (n,) + self.xp, dt, True) if ph or pw else None   # the border stays zero
        m = min(self.sub, n) * self.L
        col, cy = buf(self.key, "col", (self.R * m,), dt), buf(self.key, "cy", (O * m,), dt)
        geo = (kh, kw, sh, sw, ph, pw, self.wrow, self.L, self.sub)
        return lambda x, y: (fk.conv_relu_maxpool if pool else ck.conv_fwd)(
            x, x if xp is None else xp, self.W2, self.b, y, col, cy, *geo)


class _ConvReLUPool(_Conv):
    """Conv2D (im2col path) → BatchNorm (optional) → ReLU → MaxPool2D 2×2/2: the pool reads the GEMM's rows, the
    BatchNorm's running-statistics affine folded into W and b (scale·(W ⋆ x + b) + shift)."""

    def __init__(self, conv, *rest):
        _Conv.__init__(self, conv)
        self.layers, self.out = (conv,) + rest, rest[-1].out_shape

    @staticmethod
    def fits(conv, *rest):
        types = tuple(type(v).__name__ for v in rest)
        return types in (("BatchNorm", "ReLU", "MaxPool2D"), ("ReLU", "MaxPool2D")) and \
            type(conv).__name__ == "Conv2D" and conv.fast and not conv.shift and rest[-1].k == (2, 2) and \
            rest[-1].s == (2, 2) and rest[-1].plain() and (len(rest) == 2 or len(rest[0].in_shapes[0]) == 3)

    def prepare(self):
        super().prepare()
        if len(self.layers) == 4:                                          # with a BatchNorm
            p, W2 = self.layers[1].p, self.W2
            Wf, bf = ck.scratch(self, "W", W2.shape, W2.dtype), ck.scratch(self, "b", self.b.shape, W2.dtype)
            fk.fold_bn(W2, self.b, p["gamma"], p["beta"], p["running_mean"], p["running_var"],
                       self.layers[1].config["eps"], Wf, bf)
            self.W2, self.b = Wf, bf


class _BNReLUPool(_Step):
    """BatchNorm → ReLU → MaxPool2D 2×2/2 (fusion.BNReLUPool's condition): one kernel."""

    def __init__(self, bn, relu, pool):
        super().__init__(bn, relu, pool)
        self.bn = _BatchNorm(bn)
        self.arg = np.zeros((1, 1, 1, 1), np.uint8)                      # not read without keep

    def prepare(self):
        self.bn.prepare()

    def run(self, x, y):
        nk.bn_relu_maxpool(x, self.bn.scale, self.bn.shift, y, self.arg, y, False)     # (no xm: evaluation)


class _BatchNorm(_Step):
    """BatchNorm with its running statistics: y = x·scale + shift per channel (BatchNorm's own coefficients)."""

    def prepare(self):
        bn = self.layers[0]
        p, C = bn.p, len(bn.p["gamma"])
        self.scale, self.shift = np.empty(C, p["gamma"].dtype), np.empty(C, p["gamma"].dtype)
        nk.bn_eval_coefs(p["gamma"], p["beta"], p["running_mean"], p["running_var"], bn.config["eps"],
                         self.scale, self.shift, np.empty(C), np.empty(C))

    def run(self, x, y):
        C = len(self.scale)
        rows = (-1, C, 1) if len(self.out) == 2 else (len(x), C, -1)     # (T, F) per feature; (C, …) per channel
        nk.affine(x.reshape(rows), self.scale, self.shift, y.reshape(rows))


class _Elementwise(_Step):
    """ReLU, Sigmoid, Tanh: the layer's own forward kernel on the flat chunk (in place when allowed)."""
    inplace = True

    def run(self, x, y):
        type(self.layers[0]).fwd(x.reshape(-1), y.reshape(-1))


class _MaxPool(_Step):
    """MaxPool2D without padding, dilation or ceil windows."""

    def __init__(self, pool):
        super().__init__(pool)
        self.arg = np.zeros((1, 1, 1, 1), np.uint16)                     # not read without keep

    def run(self, x, y):
        p = self.layers[0]
        ck.maxpool_fwd(x, y, self.arg, *p.k, *p.s, False)


class _AvgPool(_Step):
    """AveragePool2D without padding, dilation or ceil windows."""

    def run(self, x, y):
        p = self.layers[0]
        ck.avgpool_fwd(x, y, *p.k, *p.s)


class _Dense(_Step):
    """Dense on (F,) or (T, F): y = x Wᵀ + b on the chunk's rows."""

    def prepare(self):
        d = self.layers[0]
        self.W = d.p["W"]
        self.b = d.p["b"] if "b" in d.p else self.W[0, :0]

    def run(self, x, y):
        kn.dense_fwd(x.reshape(-1, self.W.shape[1]), self.W, self.b, y.reshape(-1, len(self.W)))   # (M, F) → (M, U)


class _Softmax(_Step):
    """Softmax over the last axis."""

    def run(self, x, y):
        c = self.out[-1]
        kn.softmax_rows(x.reshape(-1, c), y.reshape(-1, c))                # (rows, C)


def single(layer):
    """The step running `layer` alone in evaluation, or None when it has none."""
    t = type(layer).__name__
    if t in ("Flatten", "Reshape", "Dropout"):
        return _View(layer)
    if t == "Conv2D" and layer.fast:
        return _Conv(layer)
    if t == "BatchNorm":
        return _BatchNorm(layer)
    if isinstance(layer, _Stored):
        return _Elementwise(layer)
    if t in ("MaxPool2D", "AveragePool2D") and layer.fast:
        return (_MaxPool if t == "MaxPool2D" else _AvgPool)(layer)
    if t == "Dense":
        return _Dense(layer)
    if isinstance(layer, Softmax) and layer._dim() == -1:
        return _Softmax(layer)
    return None


def steps(layers):
    """The steps of a run of layers (BatchNorm → ReLU → MaxPool 2×2/2 as one), or None when one has none."""
    out, i = [], 0
    while i < len(layers):
        for k in (4, 3):
            if len(layers) - i >= k and _ConvReLUPool.fits(*layers[i:i + k]):
                break
        else:
            k = 0
        if k:
            out.append(_ConvReLUPool(*layers[i:i + k]))
            i += k
            continue
        three = layers[i:i + 3]
        if tuple(type(v).__name__ for v in three) == BNReLUPool.TYPES and BNReLUPool.fits(*three):
            out.append(_BNReLUPool(*three))
            i += 3
            continue
        s = single(layers[i])
        if s is None:
            return None
        out.append(s)
        i += 1
    return out
