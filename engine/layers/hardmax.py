"""Hardmax: 1 at the first maximum along an axis of the sample, 0 elsewhere (ONNX Hardmax); its gradient is zero."""
import numpy as np

from .activations import _OverAxis
from .base import register

TORCH_HARDMAX = '''class Hardmax(nn.Module):
    """one_hot(argmax(x)) along dim (the first maximum on ties); no gradient flows through it."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        i = x.argmax(dim=self.dim, keepdim=True)
        return torch.zeros_like(x).scatter_(self.dim, i, 1.0)
'''


@register
class Hardmax(_OverAxis):
    doc = ("y_i = 1 where x_i is the first maximum over the last axis, 0 elsewhere; a one-hot of argmax (its "
           "gradient is 0 everywhere).")
    fused = None          # runs on the per-layer path

    def forward(self, x, training=False):
        self._check_mask()
        m = self._moved(x)                                                       # (B, …, C), the axis last
        y = np.zeros(m.shape, x.dtype)
        np.put_along_axis(y, np.argmax(m, axis=-1)[..., None], 1.0, axis=-1)   # argmax: the first maximum
        return self._back(y)

    def backward(self, dy):
        return (np.zeros((len(dy),) + self.in_shapes[0], dy.dtype),)           # piecewise constant: dy/dx = 0

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"Hardmax({self._dim()})", helpers=("Hardmax",), sources={"Hardmax": TORCH_HARDMAX})

    def torch_reference(self, xs, p, torch):
        x, d = xs[0], self._dim()
        y = torch.nn.functional.one_hot(x.argmax(dim=d), x.shape[d]).to(x.dtype)  # the axis comes last
        return y.movedim(-1, d) + 0 * x                                           # + 0·x: the zero gradient, in torch
