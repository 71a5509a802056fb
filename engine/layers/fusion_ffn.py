"""Dense → ReLU → Dense (a transformer's feed-forward sublayer) as one batch-parallel loop forward and one backward.

Each row chunk runs both GEMMs and the ReLU while its hidden rows are in cache, and the backward both layers'
gradients, so the pair costs one wake-up of the worker threads each way instead of two. The math is the layers'
own kernels (engine/kernels.py); weight gradients are summed over chunks in chunk order (any thread count gives
the same result). A group of engine/layers/fusion.py: the Model uses it only where nothing else reads the first
Dense or the ReLU.
"""
import numpy as np

from .. import parallel
from .._jit import njit
from ..kernels import dense_bwd, dense_fwd, relu_bwd, relu_fwd
from .conv_kernels import chunk_sum, scratch


class DenseReLUDense:
    """Dense → ReLU → Dense on (F,) or (T, F) inputs."""
    TYPES = ("Dense", "ReLU", "Dense")

    def __init__(self, d1, relu, d2):
        self.d1, self.relu, self.d2 = d1, relu, d2
        self.nodes = (d1.name, relu.name, d2.name)

    @staticmethod
    def fits(d1, relu, d2):
        return d1.p["W"].dtype == d2.p["W"].dtype

    def _chunks(self, m):
        """The row runs of whichever Dense would split the batch more (the same runs forward and backward)."""
        (u1, f), u2 = self.d1.p["W"].shape, self.d2.p["W"].shape[0]
        a, b = self.d1._chunks(m, f, u1), self.d2._chunks(m, u1, u2)
        return a if len(a) >= len(b) else b

    def forward(self, x, training=False, epilogue=None):
        """y; epilogue(r0, r1, y2) runs on rows r0 … r1−1 of y2 = y as (M, U2) right after their chunk (as
        MultiHeadSelfAttention.forward's)."""
        y, run, chunks = self.forward_parts(x, epilogue)
        parallel.run(run, chunks)
        return y

    def forward_parts(self, x, epilogue=None, chunks=None):
        """(y, run, chunks) as MultiHeadSelfAttention.forward_parts; chunks: row runs of x as (M, F)."""
        W1, W2 = self.d1.p["W"], self.d2.p["W"]
        b1 = self.d1.p["b"] if "b" in self.d1.p else W1[0, :0]
        b2 = self.d2.p["b"] if "b" in self.d2.p else W2[0, :0]
        xs = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=W1.dtype)     # (M, F)
        h = np.empty((len(xs), len(W1)), W1.dtype)                                # (M, U1) the ReLU's output
        y = np.empty((len(xs), len(W2)), W1.dtype)                                # (M, U2)

        def run(r):
            a, b = r
            rows_fwd(xs, W1, b1, h, W2, b2, y, a, b)
            if epilogue is not None:
                epilogue(a, b, y)

        self.chunks = self._chunks(len(xs)) if chunks is None else chunks
        self.d1.x, self.d2.x, self.relu.y = xs, h, h.reshape(x.shape[:-1] + (h.shape[-1],))   # as if each ran
        return y.reshape(x.shape[:-1] + (y.shape[-1],)), run, self.chunks

    def backward(self, dy, prologue=None, add_to=None):
        """(dx,); prologue(i, r0, r1) first writes rows r0 … r1−1 of dy in chunk i's loop, and dx is added to
        add_to when given (as MultiHeadSelfAttention.backward's)."""
        size, run, finish = self.backward_parts(dy, prologue, add_to)
        return finish(chunk_sum(self, len(self.chunks), size, self.d1.p["W"].dtype, run))

    def backward_parts(self, dy, prologue=None, add_to=None):
        """(size, run, finish) as MultiHeadSelfAttention.backward_parts."""
        d1, d2 = self.d1, self.d2
        W1, W2, xs, h = d1.p["W"], d2.p["W"], d1.x, d2.x
        (u1, f), u2 = W1.shape, len(W2)
        dy2 = np.ascontiguousarray(dy.reshape(-1, u2), dtype=W1.dtype)            # (M, U2)
        dh = scratch(self, "dh", h.shape, W1.dtype)                               # (M, U1) dL/dh, then through the ReLU
        need = d1.need_dx
        dx = np.empty((0, 0), xs.dtype) if not need else np.empty_like(xs) if add_to is None else \
            add_to.reshape(xs.shape)                                              # (M, F)
        db1 = d1.g["b"] if "b" in d1.g else W1[0, :0]
        db2 = d2.g["b"] if "b" in d2.g else W2[0, :0]
        n2, n1 = u2 * u1 + db2.size, u1 * f + db1.size                           # [dW2, db2 | dW1, db1] per chunk
        chunks = self.chunks

        flag = 0 if not need else 1 if add_to is None else 2

        def run(i, o):
            a, b = chunks[i]
            if prologue is not None:
                prologue(i, a, b)
            rows_bwd(xs, h, dy2, W1, W2, dh, dx, flag, o, n2, a, b)

        def finish(tot):
            if tot is None:                                                       # written already (fusion_block)
                return (dx.reshape(dy.shape[:-1] + (f,)) if need else None,)
            d2.g["W"][...] = tot[:u2 * u1].reshape(u2, u1)
            db2[...] = tot[u2 * u1:n2]
            d1.g["W"][...] = tot[n2:n2 + u1 * f].reshape(u1, f)
            db1[...] = tot[n2 + u1 * f:]
            return (dx.reshape(dy.shape[:-1] + (f,)) if need else None,)

        return n2 + n1, run, finish

    def grads(self):
        """The gradient arrays in the order backward_parts lays out a chunk's share."""
        return [d.g[k] for d in (self.d2, self.d1) for k in ("W", "b") if k in d.g]


@njit(cache=True, nogil=True, error_model="numpy")
def rows_fwd(xs, W1, b1, h, W2, b2, y, a, b):
    """Rows a … b−1: h = ReLU(x W₁ᵀ + b₁) (M, U1), y = h W₂ᵀ + b₂ (M, U2): one kernel call per chunk."""
    dense_fwd(xs[a:b], W1, b1, h[a:b])
    relu_fwd(h[a:b].reshape(-1), h[a:b].reshape(-1))
    dense_fwd(h[a:b], W2, b2, y[a:b])


@njit(cache=True, nogil=True, error_model="numpy")
def rows_bwd(xs, h, dy2, W1, W2, dh, dx, flag, o, n2, a, b):
    """Rows a … b−1 of the backward: the chunk's share o = [dW₂ | db₂ | dW₁ | db₁] (the second Dense's n2 values
    first), dh through the ReLU, dx = dh W₁ (flag as kernels.dense_dx)."""
    (u1, f), u2 = W1.shape, W2.shape[0]
    dense_bwd(h[a:b], dy2[a:b], W2, o[:u2 * u1].reshape(u2, u1), o[u2 * u1:n2], dh[a:b], 1)
    relu_bwd(h[a:b].reshape(-1), dh[a:b].reshape(-1), dh[a:b].reshape(-1), 1)
    dense_bwd(xs[a:b], dh[a:b], W1, o[n2:n2 + u1 * f].reshape(u1, f), o[n2 + u1 * f:], dx[a:b], flag)
