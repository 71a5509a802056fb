"""Adjacent layers that the Model runs as one pass over memory: Conv2D → BatchNorm → ReLU → MaxPool2D (2×2,
stride 2), two of those in a row, BatchNorm → ReLU → MaxPool2D, Dense → ReLU and Add → LayerNorm.

A group keeps each layer's math: BatchNorm's statistics and gradients are its own kernels, only the
normalise-ReLU-pool step and its backward are one kernel each; Dense applies the ReLU to each chunk of its
output while it is in cache, LayerNorm adds the residual as it reads its input. Inner activations are not
kept, so the Model uses groups only where nothing else reads them (Model.forward(every=True) runs every
layer alone).
"""
import numpy as np

from .. import kernels, parallel
from . import norm_kernels as k
from .conv_kernels import chunk_sum, scratch
from . import fusion_sublayer
from .fusion_ffn import DenseReLUDense


class BNReLUPool:
    """BatchNorm → ReLU → MaxPool2D 2×2/2 on (C, H, W) inputs as one kernel forward and one backward."""
    TYPES = ("BatchNorm", "ReLU", "MaxPool2D")

    def __init__(self, bn, relu, pool):
        self.bn, self.relu, self.pool = bn, relu, pool
        self.nodes = (bn.name, relu.name, pool.name)

    @staticmethod
    def fits(bn, relu, pool):
        return len(bn.in_shapes[0]) == 3 and pool.k == (2, 2) and pool.s == (2, 2) and pool.plain()

    def forward(self, x, training=False):
        x = np.ascontiguousarray(x)
        self.bn.sel = None
        scale, shift = self.bn.coefs(x.reshape(x.shape[0], x.shape[1], -1), training)   # (B, C, H·W) statistics
        y = self._out(x, scale, shift, training)
        self._pool(x, scale, shift, y, training)
        return y

    def _out(self, x, scale, shift, training):
        """The pooled output's buffer; keeps x's shape and the coefficients for backward."""
        shape = (len(x),) + self.pool.out_shape
        self.xshape, self.coefs = x.shape, (scale, shift)
        return scratch(self, "y", shape, x.dtype) if training else np.empty(shape, x.dtype)

    def _pool(self, x, scale, shift, y, keep):
        """The forward kernel; when keep, also each window's maximum cell (arg) for backward."""
        self.prepare(x, y, keep)
        parallel.run(lambda p: self.pool_rows(x, y, *p), parallel.chunks(len(x), x[0].nbytes + 2 * y[0].nbytes))

    def prepare(self, x, y, keep):
        """The buffers pool_rows writes besides y: arg and xm (x at each window's maximum), kept for backward when
        keep."""
        self.arg = scratch(self, "arg", y.shape, np.uint8)
        self.xm = scratch(self, "xm", y.shape if keep else (0,) * 4, x.dtype)
        self.kept = keep

    def pool_rows(self, x, y, a, e):
        """Samples a … e−1 of the forward kernel (after prepare)."""
        k.bn_relu_maxpool(x[a:e], *self.coefs, y[a:e], self.arg[a:e], self.xm[a:e], self.kept)

    def backward(self, dp):
        """BatchNorm's gradient kernels on dy = dp routed through the pool and ReLU, without forming dy."""
        dx = self.grads(dp)
        if dx is not None:
            parallel.run(self.dx_part, range(len(self.bn.parts)))
        return (dx,)

    def grads(self, dp):
        """dγ, dβ (one loop over the batch chunks); returns dx's buffer, filled by dx_part(i), or None."""
        dp = np.ascontiguousarray(dp)
        self.keep_args()
        parts = self.bn.parts
        sums = self.sums_buffer(len(parts))
        parallel.run(lambda i: self.sums_rows(dp, *parts[i], sums[:, i]), range(len(parts)))
        return self.finish(dp, sums)

    def keep_args(self):
        """After an evaluation-mode forward (no arg): the forward kernel again, keeping it."""
        if not self.kept:
            x = self.bn.x3.reshape(self.xshape)                 # (B, C, H, W)
            self._pool(x, *self.coefs, scratch(self, "y", (len(x),) + self.pool.out_shape, x.dtype), True)

    def sums_buffer(self, n):
        """(2, n, C): Σ dy·(x − m) and Σ dy of each of n batch chunks."""
        return scratch(self, "sums", (2, n, self.xshape[1]), np.float64)

    def sums_rows(self, dp, a, e, out):
        """BatchNorm's gradient sums of samples a … e−1 into out (2, C)."""
        k.relu_maxpool_bn_sums(dp[a:e], self.arg[a:e], self.xm[a:e], self.bn.mean, out[0], out[1])

    def finish(self, dp, sums):
        """dγ, dβ from the chunks' sums; returns dx's buffer, filled by dx_part(i) (self.bn.parts), or None."""
        bn, C = self.bn, self.xshape[1]
        x = bn.x3.reshape(self.xshape)                          # (B, C, H, W)
        coef = scratch(self, "coef", (3, C), np.float64)
        k.bn_grads(sums[0], sums[1], bn.p["gamma"], bn.inv, x[0, 0].size * len(x), bn.training,
                   bn.g["gamma"], bn.g["beta"], coef)
        if not bn.need_dx:
            return None
        dx = scratch(self, "dx", self.xshape, dp.dtype)
        self.dx_part = lambda i: k.relu_maxpool_bn_dx(*self._at(i, dp, self.arg, x), bn.mean, coef,
                                                      dx[slice(*bn.parts[i])])
        return dx

    def _at(self, i, *arrays):
        a, e = self.bn.parts[i]
        return [v[a:e] for v in arrays]


class ConvBNReLUPool:
    """Conv2D (groups 1, dilation 1) → BatchNorm → ReLU → MaxPool2D 2×2/2: the convolution's loop over batch chunks also
    takes each chunk's BatchNorm sums (training) or normalises, rectifies and pools it (evaluation) while it is in
    cache, and backward forms each chunk's dy of the convolution in the loop of its gradient."""
    TYPES = ("Conv2D", "BatchNorm", "ReLU", "MaxPool2D")
    unfrozen = True                                             # conv and BatchNorm train (or not) together

    def __init__(self, conv, bn, relu, pool):
        self.conv, self.rest = conv, BNReLUPool(bn, relu, pool)
        self.nodes = (conv.name,) + self.rest.nodes

    @staticmethod
    def fits(conv, bn, relu, pool):
        return conv.fast and BNReLUPool.fits(bn, relu, pool)

    def forward(self, x, training=False):
        rest, bn = self.rest, self.rest.bn
        if training:
            out = self.train_parts(x)
            rest._pool(self.conv_y, *rest.coefs, out, True)
            return out
        bn.sel = None
        y, conv_part = self.conv.forward_parts(x, training)    # (B, C, H, W)
        parts = self.conv.parts
        scale, shift = bn.coefs(y.reshape(y.shape[0], y.shape[1], -1), False, parts)
        out = rest._out(y, scale, shift, False)
        rest.prepare(y, out, False)

        def part(i):
            conv_part(i)
            rest.pool_rows(y, out, *parts[i])
        parallel.run(part, range(len(parts)))
        return out

    def train_parts(self, x, before=None):
        """The loop of the training forward: each chunk's convolution and BatchNorm sums (before(a, e) first, when
        given, fills the chunk's input); then the batch statistics. Returns the output's buffer (unfilled); the
        convolution's output is self.conv_y, and rest.pool_rows(conv_y, out, a, e) fills out."""
        rest, bn = self.rest, self.rest.bn
        bn.sel = None
        y, conv_part = self.conv.forward_parts(x, True)        # (B, C, H, W)
        parts, (B, C) = self.conv.parts, y.shape[:2]
        y3 = y.reshape(B, C, -1)                                # (B, C, H·W)
        sums = scratch(self, "sums", (3, len(parts), C), np.float64)    # Σ (y − k), Σ (y − k)², k per chunk

        def part(i):
            a, e = parts[i]
            if before is not None:
                before(a, e)
            conv_part(i)
            sums[2, i] = y3[a, :, 0]                            # this chunk's shift: its first sample's values
            k.bn_sums(y3[a:e], sums[2, i], sums[0, i], sums[1, i])
        parallel.run(part, range(len(parts)))
        scale, shift = bn.coefs(y3, True, parts, sums)          # re-expressed about the first chunk's shift
        out = rest._out(y, scale, shift, True)
        rest.prepare(y, out, True)
        self.conv_y = y
        return out

    def backward(self, dp):
        dy = self.rest.grads(dp)                                # BatchNorm's dx: the convolution's dy
        return self.conv.backward_parts(dy, before=self.rest.dx_part)


class ConvBlocks:
    """Two ConvBNReLUPool blocks in a row: the first block's normalise-ReLU-pool runs inside the second's
    convolution loop (forward), and the first block's BatchNorm gradient sums inside the second's convolution
    backward loop, so that a training step takes two batch-parallel loops less; the batch statistics are the only
    barriers. Evaluation runs the two groups as they are."""
    TYPES = ConvBNReLUPool.TYPES * 2
    unfrozen = True

    def __init__(self, *layers):
        self.a, self.b = ConvBNReLUPool(*layers[:4]), ConvBNReLUPool(*layers[4:])
        self.nodes = self.a.nodes + self.b.nodes

    @staticmethod
    def fits(*layers):
        return ConvBNReLUPool.fits(*layers[:4]) and ConvBNReLUPool.fits(*layers[4:])

    def forward(self, x, training=False):
        a, b = self.a, self.b
        if not training:
            return b.forward(a.forward(x, False), False)
        out = self.train_parts(x)
        b.rest._pool(b.conv_y, *b.rest.coefs, out, True)
        return out

    def train_parts(self, x):
        """The training forward's first two loops; returns the output's buffer, which the second block's
        rest.pool_rows(b.conv_y, out, s, e) fills."""
        a, b = self.a, self.b
        mid = a.train_parts(x)                                  # (B, C₁, H/2, W/2): the first block's output
        return b.train_parts(mid, before=lambda s, e: a.rest.pool_rows(a.conv_y, mid, s, e))

    def backward(self, dp):
        return self.conv_backward(self.b.rest.grads(dp))        # the second convolution's dy

    def conv_backward(self, dy, also=None):
        """Both blocks' gradients from the second convolution's dy (None: no gradient below it); (dx or None,).
        also(i), when given, runs for each chunk i of the second convolution's loop (ConvBlocksHead's dW1)."""
        a, b = self.a, self.b
        a.rest.keep_args()                                      # (after an evaluation-mode forward)
        parts = b.conv.parts
        if dy is None:
            for i in range(len(parts) if also is not None else 0):
                also(i)
            return (None,)
        before = b.rest.dx_part if also is None else lambda i: (b.rest.dx_part(i), also(i))
        if not b.conv.need_dx:
            return b.conv.backward_parts(dy, before=before)
        sums = a.rest.sums_buffer(len(parts))
        after = lambda i, dmid: a.rest.sums_rows(dmid, *parts[i], sums[:, i])    # noqa: E731  (this chunk's dx)
        (dmid,) = b.conv.backward_parts(dy, before=before, after=after)           # (B, C₁, H/2, W/2)
        da = a.rest.finish(dmid, sums)                          # the first convolution's dy
        return a.conv.backward_parts(da, before=a.rest.dx_part) if da is not None else (None,)


class ConvBlocksHead:
    """ConvBlocks → Flatten → Dense → ReLU → Dense (a CNN classifier's trunk and head): each batch chunk of the
    second block's normalise-ReLU-pool loop also runs the head's two GEMMs on its rows, and each chunk of the head's
    backward loop also takes the second block's BatchNorm gradient sums, so the head is split over the threads
    without a loop of its own. dW2 is summed over the chunks in chunk order, dW1 = dhᵀx is taken over all rows by runs
    of units in the second convolution's backward loop: any thread count gives the same bits."""
    TYPES = ConvBlocks.TYPES + ("Flatten", "Dense", "ReLU", "Dense")
    unfrozen = True

    def __init__(self, *layers):
        self.blocks, self.ffn = ConvBlocks(*layers[:8]), DenseReLUDense(*layers[9:])
        self.nodes = self.blocks.nodes + (layers[8].name,) + self.ffn.nodes

    @staticmethod
    def fits(*layers):
        return ConvBlocks.fits(*layers[:8]) and DenseReLUDense.fits(*layers[9:])

    def forward(self, x, training=False):
        blocks, ffn = self.blocks, self.ffn
        if not training:
            p = blocks.forward(x, False)                        # (B, C, H, W)
            return ffn.forward(p.reshape(len(p), -1))
        b = blocks.b
        out = blocks.train_parts(x)                             # (B, C₂, H/4, W/4), filled by the loop below
        rest, y, n = b.rest, b.conv_y, len(out)
        pool = parallel.chunks(n, y[0].nbytes + 2 * out[0].nbytes)        # as BNReLUPool._pool's loop
        # the most chunks of the pool's, the head's or the convolution's: the head's GEMMs of 16 rows took 15 µs
        # against 85 for 64 rows (784 → 64, OpenBLAS, one core), so smaller chunks cost no more work
        chunks = max(b.conv.parts, pool, ffn._chunks(n), key=len)
        z, run, chunks = ffn.forward_parts(out.reshape(n, -1), chunks=chunks)

        def part(r):
            rest.pool_rows(y, out, *r)
            run(r)
        parallel.run(part, chunks)
        return z

    def backward(self, dz):
        blocks, ffn = self.blocks, self.ffn
        d1, d2, rest = ffn.d1, ffn.d2, blocks.b.rest
        rest.keep_args()                                        # (after an evaluation-mode forward)
        W1, W2, xs, h = d1.p["W"], d2.p["W"], d1.x, d2.x        # xs (M, F) the pooled rows, h (M, U1) the ReLU's output
        (u1, f), u2 = W1.shape, len(W2)
        dz2 = np.ascontiguousarray(dz.reshape(-1, u2), dtype=W1.dtype)            # (M, U2)
        dh = scratch(self, "dh", h.shape, W1.dtype)             # (M, U1) dL/dh, then through the ReLU
        dflat = scratch(self, "dx", xs.shape, W1.dtype)         # (M, F) the pool's gradient
        dp = dflat.reshape(rest.xshape[:2] + rest.pool.out_shape[1:])             # (B, C₂, H/4, W/4)
        db2 = d2.g["b"] if "b" in d2.g else W2[0, :0]
        chunks, n2 = ffn.chunks, u2 * u1 + db2.size
        sums = rest.sums_buffer(len(chunks))

        def part(i, o):                                         # rows a … e−1: dW2, db2 shares, dh, dx, the BN sums
            a, e = chunks[i]
            kernels.dense_bwd(h[a:e], dz2[a:e], W2, o[:u2 * u1].reshape(u2, u1), o[u2 * u1:], dh[a:e], 1)
            kernels.relu_bwd(h[a:e].reshape(-1), dh[a:e].reshape(-1), dh[a:e].reshape(-1), 1)
            kernels.dense_dx(dh[a:e], W1, dflat[a:e], 1)
            rest.sums_rows(dp, a, e, sums[:, i])
        tot = chunk_sum(self, len(chunks), n2, W1.dtype, part)
        d2.g["W"][...] = tot[:u2 * u1].reshape(u2, u1)
        db2[...] = tot[u2 * u1:]
        # dW1 = dhᵀ xs over all rows, by runs of units (no partial sums to add): in the second convolution's loop
        db1 = d1.g["b"] if "b" in d1.g else W1[0, :0]
        n = len(blocks.b.conv.parts)
        units = [(u1 * i // n, u1 * (i + 1) // n) for i in range(n)]

        def dw1(i):
            s, t = units[i]
            kernels.dense_dw(xs, dh[:, s:t], d1.g["W"][s:t], db1[s:t])
        return blocks.conv_backward(rest.finish(dp, sums), also=dw1)


class _Pair:
    """Two adjacent layers run as one; TYPES names their classes, fits() any further condition."""
    TYPES = ()

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.nodes = (first.name, second.name)

    @staticmethod
    def fits(first, second):
        return True


class DenseReLU(_Pair):
    """Dense → ReLU: the ReLU runs on each row chunk of the Dense output right after its GEMM, and its mask on
    each chunk of dy inside Dense's backward."""
    TYPES = ("Dense", "ReLU")

    def forward(self, x, training=False):
        self.second.y = y = self.first.forward(x, training, relu=True)   # the ReLU's output, as if it ran
        return y

    def backward(self, dy):
        return self.first.backward(dy, relu_y=self.second.y)


class AddLayerNorm(_Pair):
    """Add (two inputs) → LayerNorm: the sum is formed row by row inside LayerNorm's kernel, never stored."""
    TYPES = ("Add", "LayerNorm")

    @staticmethod
    def fits(add, ln):
        return len(add.in_shapes) == 2 and add.in_shapes[0] == add.in_shapes[1]     # no broadcasting

    def forward(self, a, b, training=False):
        self.first.n = 2
        return self.second.forward(a, training, residual=b)

    def backward(self, dy):
        (dx,) = self.second.backward(dy)
        return self.first.backward(dx)                      # the sum's gradient reaches both inputs


KINDS = (ConvBlocksHead, ConvBlocks, ConvBNReLUPool, BNReLUPool, DenseReLUDense, DenseReLU, AddLayerNorm)     # the longer chain first


def _chain(model, users, n, k):
    """The k nodes from n on where each but the last feeds only the next and each but the first has one input."""
    chain = [n]
    while len(chain) < k:
        u = users.get(chain[-1], [])
        if len(u) != 1 or len(model.srcs[u[0]]) != 1:
            return None
        chain.append(u[0])
    return chain


def groups(model):
    """{first node: group} for every chain of KINDS whose inner outputs feed nothing else (the output excluded)."""
    users = {}
    for n in model.order:
        for s in model.srcs[n]:
            users.setdefault(s, []).append(n)
    out = fusion_sublayer.find(model, users)              # LayerNorm(u + f(u)) first: it spans the others
    taken = {v for g in out.values() for v in g.nodes}
    for n in model.order:
        for kind in KINDS:
            c = _chain(model, users, n, len(kind.TYPES))
            if c is None or model.output in c or taken.intersection(c) or (
                    getattr(kind, "unfrozen", False) and model.frozen.intersection(c)):
                continue
            layers = [model.layers[v] for v in c]
            if tuple(type(v).__name__ for v in layers) == kind.TYPES and kind.fits(*layers):
                out[n] = kind(*layers)
                taken.update(c)
                break
    return out
