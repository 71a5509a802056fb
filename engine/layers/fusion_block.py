"""Consecutive post-norm sublayers (fusion_sublayer.SublayerAddNorm), e.g. a transformer block's attention and
feed-forward sublayers, and a TimePool(mean) → Dense head after them, as ONE batch-parallel loop forward and one
backward.

Every stage works sample by sample (the attention within a sample, the rest row by row), so each chunk of samples
runs through all of them while its rows are in cache: forward the attention sublayer, the feed-forward one, the
pool and the head; backward the reverse. Only the weight gradients are summed over chunks, in chunk order (any
thread count gives the same sums). On the 2-core VM each loop costs ~34 µs of thread wake-ups: workload e had two
loops each way and a serial pool and head, now one loop each way. A group of engine/layers/fusion.py (found by
fusion_sublayer.find): used only where the inner outputs feed nothing else.
"""
import numpy as np

from .. import kernels as k
from .. import parallel
from .conv_kernels import chunk_sum
from .sequence import _spread, _weighted_sum


class MeanPool:
    """TimePool(mode="mean") as a chain stage: y[b] = Σ_t w[b, t] x[b, t], w = 1/T_b on valid steps."""

    def __init__(self, pool):
        self.pool, self.nodes = pool, (pool.name,)

    @staticmethod
    def count(x):
        return 1

    def forward_parts(self, x, training=False, samples=None):
        p = self.pool
        b, t, f = x.shape
        m = p.in_masks[0] if p.in_masks and p.in_masks[0] is not None else np.ones((b, t), bool)
        w = m / np.maximum(m.sum(axis=1, keepdims=True), 1).astype(x.dtype)       # (B, T) as TimePool.forward
        y = np.empty((b, f), x.dtype)                                               # (B, F)
        p.m, p.shape, p.w = m, x.shape, w                                           # as if it ran
        self.x, self.chunks = x, samples

        def run(ab):
            _weighted_sum(x[ab[0]:ab[1]], w[ab[0]:ab[1]], y[ab[0]:ab[1]])
        return y, run, samples

    def backward_parts(self, dy):
        w = self.pool.w
        dy = np.ascontiguousarray(dy, dtype=w.dtype)                                # (B, F)
        dx = self.du = np.empty(self.pool.shape, w.dtype)                           # (B, T, F)

        def run(i, o):
            a, b = self.chunks[i]
            _spread(w[a:b], dy[a:b], dx[a:b])
        return 0, run, lambda tot: (dx,)


class Head:
    """Dense on (F,) samples as a chain stage (the classifier after MeanPool)."""

    def __init__(self, dense):
        self.dense, self.nodes = dense, (dense.name,)

    @staticmethod
    def count(x):
        return 1

    def forward_parts(self, x, training=False, samples=None):
        d = self.dense
        W = d.p["W"]
        b = d.p["b"] if "b" in d.p else W[0, :0]
        xs = d.x = np.ascontiguousarray(x, dtype=W.dtype)                           # (B, F), as Dense keeps
        y = np.empty((len(xs), len(W)), W.dtype)                                    # (B, U)
        self.chunks = samples

        def run(ab):
            k.dense_fwd(xs[ab[0]:ab[1]], W, b, y[ab[0]:ab[1]])
        return y, run, samples

    def backward_parts(self, dy):
        d = self.dense
        W, xs = d.p["W"], d.x
        u, f = W.shape
        db = d.g["b"] if "b" in d.g else W[0, :0]
        dy = np.ascontiguousarray(dy, dtype=W.dtype)                                # (B, U)
        dx = self.du = np.empty_like(xs)                                            # (B, F)

        def run(i, o):
            a, b = self.chunks[i]
            k.dense_bwd(xs[a:b], dy[a:b], W, o[:u * f].reshape(u, f), o[u * f:], dx[a:b], 1)

        def finish(tot):
            d.g["W"][...] = tot[:u * f].reshape(u, f)
            db[...] = tot[u * f:]
            return (dx,)
        return u * f + db.size, run, finish


class SublayerChain:
    """Stages s₁ → s₂ → …, each reading only the previous one's output: SublayerAddNorm groups, then optionally
    MeanPool and Head."""

    def __init__(self, stages):
        self.stages = stages
        self.nodes = tuple(v for s in stages for v in s.nodes)

    def _chunks(self, u):
        """Runs of samples: as many as the sublayer that alone would split the batch most (kept per shape)."""
        plan = self.__dict__.setdefault("_plan", {})
        if u.shape not in plan:
            B = len(u)
            step = -(-B // max(1, min(B, max(s.count(u) for s in self.stages))))  # as parallel.chunks splits
            plan[u.shape] = [(a, min(a + step, B)) for a in range(0, B, step)] if B else []
        return plan[u.shape]

    def forward(self, u, training=False):
        self.chunks = chunks = self._chunks(u)
        runs = []
        for s in self.stages:                     # each stage's set-up, its output the next one's input
            u, run, own = s.forward_parts(u, training, chunks)
            runs.append((run, own))               # own: the chunks in the stage's units (samples or rows)

        def run(i):                               # chunk i through every stage
            for r, own in runs:
                r(own[i])

        parallel.run(run, range(len(chunks)))
        return u

    def backward(self, dy):
        parts = []
        for s in reversed(self.stages):           # each stage's dL/d(input) is the dy of the one before
            parts.append(s.backward_parts(dy))
            dy = s.du
        offs = [0]
        for p in parts:
            offs.append(offs[-1] + p[0])

        def run(i, o):                            # chunk i through every stage, last first
            for (_, r, _), a, b in zip(parts, offs[:-1], offs[1:]):
                r(i, o[a:b])

        tot = chunk_sum(self, len(self.chunks), offs[-1], self.stages[0].ln.xhat.dtype, run)
        for (_, _, fin), a, b in zip(parts, offs[:-1], offs[1:]):
            out = fin(tot[a:b])
        return out
