"""Evaluation chains: a run of layers that are each batch-independent in evaluation (BatchNorm uses its running
statistics, Dropout passes values on) runs as ONE batch-parallel loop, each chunk of samples going through the
whole run while its values are in cache (one wake-up of the worker threads instead of one per layer or group).

Each step is a layer's own evaluation kernel on a chunk (engine/layers/conv_kernels.py, conv_shift.py,
norm_kernels.py, engine/kernels.py; STEPS says which layer types offer one); BatchNorm → ReLU → MaxPool2D 2×2 is
fusion.BNReLUPool's kernel. Chunks depend on the batch only, so any thread count gives the same bits. The Model
uses chains only in an evaluation forward without `every` or `given` (inner outputs are not kept); a chain whose
inputs carry masks runs its layers one by one, and backward after a chain's forward (the gradient view) first
runs them again one by one.
"""
import threading
from math import prod

import numpy as np

from .. import kernels as kn
from .. import parallel
from . import conv_kernels as ck
from . import conv_shift
from . import fusion_infer_kernels as fk
from . import norm_kernels as nk
from .activations import Softmax, _Stored
from .fusion import BNReLUPool

TARGET = 1 << 20        # bytes of one chunk's step outputs: they stay in the core's cache
WORK = 6_000_000        # multiply-adds per chunk (~0.3 ms on one core): each chunk costs ~25 µs of Python and
                        # kernel calls, too few chunks leave one of two threads idle at the end (c-infer: 4 × 16)


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
        nk.bn_relu_maxpool(x, self.bn.scale, self.bn.shift, y, self.arg, False)


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


def _single(layer):
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


def _steps(layers):
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
        s = _single(layers[i])
        if s is None:
            return None
        out.append(s)
        i += 1
    return out


class Chain:
    """Layers run per batch chunk in one parallel loop (evaluation); units: the layers or fusion groups that run
    them one by one (masks, backward)."""

    def __init__(self, model, nodes, steps, units):
        self.nodes, self.steps, self.units = tuple(nodes), steps, units
        self.layers = [model.layers[v] for v in nodes]
        self.dtype = model.dtype
        self.per_sample = sum(prod(s.out) * (not s.view) + s.extra for s in steps) * self.dtype.itemsize
        self.macs = sum(v.macs(v.in_shapes) for v in self.layers)
        self.local = threading.local()
        self.x, self.replay, self._chunks = None, False, {}
        # where each step writes: 0 / 1 (two buffers in turn), 2 the chain's output, -1 a view of its input
        self.dst, cur = [], -1
        last = max(i for i, s in enumerate(steps) if not s.view)
        for i, s in enumerate(steps):
            s.key, s.dtype = i, self.dtype                                  # its buffers' key, its dtype
            if s.view:
                self.dst.append(-1)
            elif i == last:
                self.dst.append(2)
            elif getattr(s, "inplace", False) and cur in (0, 1):
                self.dst.append(cur)
            else:
                cur = 1 - cur if cur in (0, 1) else 0
                self.dst.append(cur)
        self.size = max([prod(s.out) for s, d in zip(steps, self.dst) if d in (0, 1)] or [0])
        self.tail = steps[last + 1:]                                       # views after the last kernel

    def chunks(self, n):
        """Batch runs of at most about TARGET bytes and WORK multiply-adds each, an even number of them where n
        allows (two threads share them evenly), their sizes differing by at most one."""
        parts = self._chunks.get((n, TARGET))
        if parts is None:
            k = max(len(parallel.chunks(n, self.per_sample, TARGET)), len(parallel.chunks(n, self.macs, WORK)))
            k = min(n, k + k % 2) if k > 1 else 1
            parts = self._chunks[(n, TARGET)] = [(i * n // k, (i + 1) * n // k) for i in range(k)]
        return parts

    def forward(self, x, training=False):
        if training or any(m is not None for v in self.layers for m in v.in_masks):
            self.replay = False
            return self._units(x, training)
        self.x, self.replay = x, True
        x = np.require(x, self.dtype, ("C", "W"))                             # as Conv2D reads it
        for s in self.steps:
            s.prepare()
        n = len(x)
        last = next(s for s, d in zip(self.steps, self.dst) if d == 2)
        y = np.empty((n,) + last.out, self.dtype)
        parallel.run(lambda p: self._part(x[p[0]:p[1]], y[p[0]:p[1]]), self.chunks(n))
        for s in self.tail:
            y = y.reshape((n,) + s.out)
        return y

    def _part(self, x, y):
        """The steps on one chunk, in this thread's buffers."""
        n = len(x)
        calls = self.local.__dict__.get(n) or self._bind(n)
        for f, out in calls:
            if f is None:                                                  # a view
                x = x.reshape(out)
                continue
            out = y if out is None else out
            f(x, out)
            x = out

    def _bind(self, n):
        """[(f(x, y) or None for a view, the output array or None for the chain's, or a view's shape)] for chunks
        of n samples on this thread."""
        pair = self.buf(-1, "pair", (2, n * self.size), self.dtype) if self.size else None
        calls = []
        for s, d in zip(self.steps, self.dst):
            shape = (n,) + s.out
            calls.append((None, shape) if d == -1 else
                         (s.bind(n, self.buf), None if d == 2 else pair[d, :prod(shape)].reshape(shape)))
        self.local.__dict__[n] = calls
        return calls

    def buf(self, step, key, shape, dtype, zero=False):
        """A (shape) view of this thread's buffer (step, key), grown when too small (zeroed when new if zero):
        a sample's values sit at the same place for any chunk size, so a zero border stays zero."""
        bufs, size = self.local.__dict__, prod(shape)
        a = bufs.get((step, key))
        if a is None or a.size < size or a.dtype != dtype:
            for k in [k for k in bufs if isinstance(k, int)]:                # calls bound to the old buffers
                del bufs[k]
            a = bufs[(step, key)] = (np.zeros if zero else np.empty)(size, dtype)
        return a[:size].reshape(shape)

    def _units(self, x, training=False):
        """The layers one by one (each fusion group as it runs in training)."""
        for u in self.units:
            x = u.forward(x, training=training)
        return x

    def backward(self, dy):
        if self.replay:                                                    # the layers keep what backward needs
            self._units(self.x)
            self.replay = False
        for u in reversed(self.units):
            (dy,) = u.backward(dy)
            if dy is None:
                break
        return (dy,)


def _users(model):
    users = {}
    for n in model.order:
        for s in model.srcs[n]:
            users.setdefault(s, []).append(n)
    return users


def _plan(model, stop):
    """({first node: group}, inner nodes): chains of at least two kernels, and the training groups outside them."""
    users, groups = _users(model), model.groups
    owner = {v: g for g in groups.values() for v in g.nodes}

    def able(n):                                  # a step exists, and its training group is all such layers
        if n == stop or len(model.srcs[n]) != 1 or _single(model.layers[n]) is None:
            return False
        g = owner.get(n)
        return g is None or all(v != stop and _single(model.layers[v]) is not None for v in g.nodes)

    out, taken = {}, set()
    for n in model.order:
        if n in taken or not able(n):
            continue
        chain = [n]
        while True:
            u = users.get(chain[-1], [])
            if len(u) != 1 or not able(u[0]):
                break
            chain.append(u[0])
        taken.update(chain)
        steps = _steps([model.layers[v] for v in chain])
        while steps and steps[-1].view:                                    # trailing views run as layers
            chain = chain[:-len(steps.pop().layers)]
        if steps is None or sum(not s.view for s in steps) < 2:
            continue
        units, i = [], 0
        while i < len(chain):
            g = groups.get(chain[i])
            units.append(g or model.layers[chain[i]])
            i += len(g.nodes) if g else 1
        out[chain[0]] = Chain(model, chain, steps, units)
    inside = {v for g in out.values() for v in g.nodes}
    out.update({n: g for n, g in groups.items() if not inside.intersection(g.nodes)})
    return out, {v for g in out.values() for v in g.nodes[:-1]}


def plan(model, stop=None):
    """({first node: group}, inner nodes) of an evaluation forward that stops before `stop` (the head when the
    logits are asked for; None: the whole model), made once per Model."""
    plans = model.__dict__.setdefault("_eval_plans", {})
    if stop not in plans:
        plans[stop] = _plan(model, stop)
    return plans[stop]
