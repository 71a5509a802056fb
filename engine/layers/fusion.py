"""Adjacent layers that the Model runs as one pass over memory: BatchNorm → ReLU → MaxPool2D (2×2, stride 2),
Dense → ReLU and Add → LayerNorm.

A group keeps each layer's math: BatchNorm's statistics and gradients are its own kernels, only the
normalise-ReLU-pool step and its backward are one kernel each; Dense applies the ReLU to each chunk of its
output while it is in cache, LayerNorm adds the residual as it reads its input. Inner activations are not
kept, so the Model uses groups only where nothing else reads them (Model.forward(every=True) runs every
layer alone).
"""
import numpy as np

from .. import parallel
from . import norm_kernels as k
from .conv_kernels import scratch
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
        bn = self.bn
        x = np.ascontiguousarray(x)
        bn.sel = None
        scale, shift = bn.coefs(x.reshape(x.shape[0], x.shape[1], -1), training)   # (B, C, H·W) statistics
        shape = (len(x),) + self.pool.out_shape
        y = scratch(self, "y", shape, x.dtype) if training else np.empty(shape, x.dtype)
        self._pool(x, scale, shift, y, training)
        self.xshape, self.coefs = x.shape, (scale, shift)
        return y

    def _pool(self, x, scale, shift, y, keep):
        """The forward kernel; when keep, also each window's maximum cell (arg) for backward."""
        self.arg = scratch(self, "arg", y.shape, np.uint8)
        self.kept = keep
        parallel.over_batch(lambda a, o, g: k.bn_relu_maxpool(a, scale, shift, o, g, keep), x, y, self.arg)

    def backward(self, dp):
        """BatchNorm's gradient kernels on dy = dp routed through the pool and ReLU, without forming dy."""
        bn, dp = self.bn, np.ascontiguousarray(dp)
        x = bn.x3.reshape(self.xshape)                          # (B, C, H, W)
        if not self.kept:                                       # after an evaluation-mode forward (no arg)
            self._pool(x, *self.coefs, scratch(self, "y", dp.shape, x.dtype), True)
        parts, C = bn.parts, self.xshape[1]
        sums = scratch(self, "sums", (2, len(parts), C), np.float64)
        parallel.run(lambda i: k.relu_maxpool_bn_sums(*self._at(i, dp, self.arg, x), bn.mean, sums[0, i], sums[1, i]),
                     range(len(parts)))
        coef = scratch(self, "coef", (3, C), np.float64)
        k.bn_grads(sums[0], sums[1], bn.p["gamma"], bn.inv, x[0, 0].size * len(x), bn.training,
                   bn.g["gamma"], bn.g["beta"], coef)
        if not bn.need_dx:
            return (None,)
        dx = scratch(self, "dx", self.xshape, dp.dtype)
        parallel.run(lambda i: k.relu_maxpool_bn_dx(*self._at(i, dp, self.arg, x), bn.mean, coef, dx[slice(*parts[i])]),
                     range(len(parts)))
        return (dx,)

    def _at(self, i, *arrays):
        a, e = self.bn.parts[i]
        return [v[a:e] for v in arrays]


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


KINDS = (BNReLUPool, DenseReLUDense, DenseReLU, AddLayerNorm)     # the longer chain first


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
            if c is None or model.output in c or taken.intersection(c):
                continue
            layers = [model.layers[v] for v in c]
            if tuple(type(v).__name__ for v in layers) == kind.TYPES and kind.fits(*layers):
                out[n] = kind(*layers)
                taken.update(c)
                break
    return out
