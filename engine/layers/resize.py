"""Resize weights along one axis as ONNX's Resize defines them (nearest floor, linear, cubic; coordinate modes,
exclude_outside, antialias), and the PyTorch module that applies them where nn.Upsample cannot say the same."""
from math import floor

import numpy as np

COORDS = ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel")


def source(n, m, scale, coords):
    """(m,) input position x each output position i reads: half_pixel (i + ½)/s − ½, align_corners i·(n − 1)/(m − 1),
    asymmetric i/s, pytorch_half_pixel as half_pixel but −½ when m = 1."""
    i = np.arange(m, dtype=np.float64)
    if coords == "align_corners":
        return i * ((n - 1) / (m - 1)) if m > 1 else np.zeros(m)
    if coords == "asymmetric":
        return i / scale
    if coords == "pytorch_half_pixel" and m == 1:
        return np.full(m, -0.5)
    return (i + 0.5) / scale - 0.5


def cubic(d, a):
    """Keys' cubic convolution kernel W(d) with coefficient a (PyTorch −0.75, PIL −0.5)."""
    d = np.abs(d)
    return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                    np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))


def resize_matrix(n, m, scale, mode, coords="half_pixel", a=-0.75, exclude_outside=False, antialias=False):
    """(m, n) weights A with y = A x along one axis; mode nearest (floor of i/s), bilinear or bicubic.

    Output i reads the inputs around x = source(i): taps k = ⌈x⌉ − 1 + j with weights W(s'·(k − x)), s' = min(s, 1)
    when antialiasing a downsampling (the kernel stretched over 1/s inputs, weights normalised), else 1; inputs
    outside [0, n) take the edge value, or with exclude_outside drop out and the rest are renormalised."""
    rows = np.arange(m)
    A = np.zeros((m, n))
    if mode == "nearest":
        idx = (rows * n) // m if scale is None else np.floor(rows / scale).astype(np.int64)
        A[rows, np.minimum(idx, n - 1)] = 1.0
        return A
    s = scale if scale is not None else m / n
    x = source(n, m, s, coords)
    sa = min(s, 1.0) if antialias else 1.0
    reach = 2 if mode == "bicubic" else 1
    start = floor(-reach / sa) + 1                                       # taps start … 1 − start around ⌈x⌉ − 1
    j = np.arange(start, 2 - start)
    base = np.ceil(x).astype(np.int64) - 1                               # t = x − base in (0, 1]
    k = base[:, None] + j[None, :]                                       # (m, taps) input positions
    d = sa * (k - x[:, None])
    w = cubic(d, a) if mode == "bicubic" else np.maximum(1 - np.abs(d), 0.0)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((k >= 0) & (k < n), w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
    np.add.at(A, (np.repeat(rows, len(j)), np.clip(k, 0, n - 1).ravel()), w.ravel())
    return A


TORCH_RESIZE = '''class Resize2D(nn.Module):
    """y = A_h · x · A_wᵀ per channel: a resize nn.Upsample cannot say (ONNX's cubic coefficient, exclude_outside,
    asymmetric coordinates), with Layerboard's weights as buffers."""

    def __init__(self, h_out, h, w_out, w):
        super().__init__()
        self.register_buffer("A_h", torch.zeros(h_out, h))
        self.register_buffer("A_w", torch.zeros(w_out, w))

    def forward(self, x):
        return self.A_h @ x @ self.A_w.T
'''
