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
from .._jit import njit
from .conv_kernels import chunk_sum, scratch
from .sequence import _spread, _weighted_sum, mean_weights


class MeanPool:
    """TimePool(mode="mean") as a chain stage: y[b] = Σ_t w[b, t] x[b, t], w = 1/T_b on valid steps."""

    def __init__(self, pool):
        self.pool, self.nodes = pool, (pool.name,)

    @staticmethod
    def count(x):
        return 1

    def forward_parts(self, x, training=False, samples=None, keep=True):
        p = self.pool
        b, t, f = x.shape
        m = p.in_masks[0] if p.in_masks else None
        if m is not None:
            w = mean_weights(m, x.dtype)                                            # (B, T) as TimePool.forward
        else:                                                                   # every step: kept per shape
            m, w = self.__dict__.get("_all", (None, None))
            if w is None or w.shape != (b, t) or w.dtype != x.dtype:
                m = np.ones((b, t), bool)
                w = mean_weights(m, x.dtype)
                self._all = m, w
        y = np.empty((b, f), x.dtype) if keep else scratch(self, "y", (b, f), x.dtype)   # (B, F)
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

    @staticmethod
    def grads():
        return []


class Head:
    """Dense on (F,) samples as a chain stage (the classifier after MeanPool)."""

    def __init__(self, dense):
        self.dense, self.nodes = dense, (dense.name,)

    @staticmethod
    def count(x):
        return 1

    def forward_parts(self, x, training=False, samples=None, keep=True):
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
            if tot is not None:
                d.g["W"][...] = tot[:u * f].reshape(u, f)
                db[...] = tot[u * f:]
            return (dx,)
        return u * f + db.size, run, finish

    def grads(self):
        return [self.dense.g[k] for k in ("W", "b") if k in self.dense.g]


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
            u, run, own = s.forward_parts(u, training, chunks, keep=s is self.stages[-1])
            runs.append((run, own))               # own: the chunks in the stage's units (samples or rows)

        def run(i):                               # chunk i through every stage
            for r, own in runs:
                r(own[i])

        parallel.run(run, range(len(chunks)))
        return u

    def _runs(self, grads):
        """(grad, runs): the buffer every gradient array is a view of and (buffer offset, offset in a chunk's share,
        length) of each run of them, or (None, None) when they are not all contiguous views of one buffer."""
        root, runs, at = None, [], 0
        for v in grads:
            base = v.base if v.base is not None else v
            if (root is not None and base is not root) or not v.flags.c_contiguous or base.ndim != 1:
                return None, None
            root = base
            o = (v.ctypes.data - base.ctypes.data) // v.itemsize
            if runs and runs[-1][0] + runs[-1][2] == o:
                runs[-1][2] += v.size
            else:
                runs.append([o, at, v.size])
            at += v.size
        return root, np.array(runs, np.int64).reshape(-1, 3)

    def backward(self, dy):
        parts = []
        for s in reversed(self.stages):           # each stage's dL/d(input) is the dy of the one before
            parts.append(s.backward_parts(dy))
            dy = s.du
        offs = [0]
        for p in parts:
            offs.append(offs[-1] + p[0])
        n = len(self.chunks)

        def run(i, o):                            # chunk i through every stage, last first
            for (_, r, _), a, b in zip(parts, offs[:-1], offs[1:]):
                r(i, o[a:b])

        if "_grad" not in self.__dict__:          # the weight gradients' places in the model's buffer, once
            self._grad, self._where = self._runs([v for s in reversed(self.stages) for v in s.grads()])
        dt = self.stages[0].ln.xhat.dtype
        if n and self._grad is not None and self._grad.dtype == dt:
            share = scratch(self, "parts", (n, offs[-1]), dt)
            parallel.run(lambda i: run(i, share[i]), range(n))
            sum_runs(share, self._grad, self._where)  # Σ over chunks in chunk order, straight into the gradients
            tots = [None] * len(parts)
        else:
            tot = chunk_sum(self, n, offs[-1], dt, run) if n else np.zeros(offs[-1], dt)
            tots = [tot[a:b] for a, b in zip(offs[:-1], offs[1:])]
        for (_, _, fin), t in zip(parts, tots):
            out = fin(t)
        return out


@njit(cache=True, nogil=True, error_model="numpy")
def sum_runs(parts, out, runs):
    """out[o + j] = Σ_i parts[i, p + j] (added in chunk order i, as conv_kernels.sum_parts) for each run (o, p, n)."""
    for r in range(runs.shape[0]):
        o, p, n = runs[r, 0], runs[r, 1], runs[r, 2]
        dst = out[o:o + n]
        src = parts[0, p:p + n]
        for j in range(n):
            dst[j] = src[j]
        for i in range(1, parts.shape[0]):
            src = parts[i, p:p + n]
            for j in range(n):
                dst[j] += src[j]
