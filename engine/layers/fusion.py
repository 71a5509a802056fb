"""Adjacent layers that the Model runs as one pass over memory: BatchNorm → ReLU → MaxPool2D (2×2, stride 2).

The group keeps each layer's math: BatchNorm's statistics and gradients are its own kernels, only the
normalise-ReLU-pool step and its backward are one kernel each. Inner activations are not kept, so the
Model uses groups only where nothing else reads them (Model.forward(every=True) runs every layer alone).
"""
import numpy as np

from .. import parallel
from . import norm_kernels as k
from .conv_kernels import scratch


class BNReLUPool:
    """BatchNorm → ReLU → MaxPool2D 2×2/2 on (C, H, W) inputs as one kernel forward and one backward."""

    def __init__(self, bn, relu, pool):
        self.bn, self.relu, self.pool = bn, relu, pool
        self.nodes = (bn.name, relu.name, pool.name)

    @staticmethod
    def fits(bn, relu, pool):
        return (type(bn).__name__, type(relu).__name__, type(pool).__name__) == ("BatchNorm", "ReLU", "MaxPool2D") \
            and len(bn.in_shapes[0]) == 3 and pool.k == (2, 2) and pool.s == (2, 2)

    def forward(self, x, training=False):
        bn = self.bn
        x = np.ascontiguousarray(x)
        bn.sel = None
        scale, shift = bn.coefs(x.reshape(x.shape[0], x.shape[1], -1), training)   # (B, C, H·W) statistics
        shape = (len(x),) + self.pool.out_shape
        y = scratch(self, "y", shape, x.dtype) if training else np.empty(shape, x.dtype)
        self.arg = scratch(self, "arg", shape, np.uint8)
        parallel.over_batch(lambda a, o, g: k.bn_relu_maxpool(a, scale, shift, o, g), x, y, self.arg)
        self.xshape = x.shape
        return y

    def backward(self, dp):
        """BatchNorm's gradient kernels on dy = dp routed through the pool and ReLU, without forming dy."""
        bn, dp = self.bn, np.ascontiguousarray(dp)
        x = bn.x3.reshape(self.xshape)                          # (B, C, H, W)
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


def groups(model):
    """{first node: group} for every BatchNorm → ReLU → MaxPool2D chain whose inner outputs feed nothing else."""
    users = {}
    for n in model.order:
        for s in model.srcs[n]:
            users.setdefault(s, []).append(n)
    out = {}
    for n in model.order:
        r = users.get(n, [])
        p = users.get(r[0], []) if len(r) == 1 else []
        if len(p) != 1 or model.output in (n, r[0], p[0]) or len(model.srcs[r[0]]) != 1 or len(model.srcs[p[0]]) != 1:
            continue
        layers = [model.layers[v] for v in (n, r[0], p[0])]
        if BNReLUPool.fits(*layers):
            out[n] = BNReLUPool(*layers)
    return out
