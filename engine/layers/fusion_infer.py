"""Evaluation chains: a run of layers that are each batch-independent in evaluation (BatchNorm uses its running
statistics, Dropout passes values on) runs as ONE batch-parallel loop, each chunk of samples going through the
whole run while its values are in cache (one wake-up of the worker threads instead of one per layer or group).

Each step is a layer's own evaluation kernel on a chunk (fusion_infer_steps.py says which layers offer one);
Conv2D → BatchNorm → ReLU → MaxPool2D 2×2 is one kernel, the pool reading the convolution's GEMM rows. Chunks
depend on the batch only, so any thread count gives the same bits. The Model uses chains only in an evaluation
forward without `every` or `given` (inner outputs are not kept); a chain whose inputs carry masks runs its layers
one by one, and backward after a chain's forward (the gradient view) first runs them again one by one.
"""
import threading
from math import prod

import numpy as np

from .. import parallel
from .fusion_infer_steps import single, steps as steps_of

TARGET = 1 << 20        # bytes of one chunk's step outputs: they stay in the core's cache
WORK = 6_000_000        # multiply-adds per chunk (~0.3 ms on one core): each chunk costs ~25 µs of Python and
                        # kernel calls, too few chunks leave one of two threads idle at the end (c-infer: 4 × 16)


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
        if n == stop or len(model.srcs[n]) != 1 or single(model.layers[n]) is None:
            return False
        g = owner.get(n)
        return g is None or all(v != stop and single(model.layers[v]) is not None for v in g.nodes)

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
        steps = steps_of([model.layers[v] for v in chain])
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
