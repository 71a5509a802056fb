"""GridSample (the spatial transformer's sampler): an image (C, H, W) read at the points of a grid (H_out, W_out, 2)
in [−1, 1], nearest, bilinear or bicubic, with zeros, border or reflection padding, as torch's F.grid_sample."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register

A = -0.75                       # the bicubic kernel's a (PyTorch, ONNX)
TAPS = {"nearest": 1, "bilinear": 4, "bicubic": 16}


def unnormalize(g, size, align):
    """Grid value in [−1, 1] -> pixel coordinate (PyTorch's order of operations); and d coordinate / d g."""
    if align:
        return (g + 1) / 2 * (size - 1), (size - 1) / 2
    return ((g + 1) * size - 1) / 2, size / 2


def _clip(c, size):
    """c clamped to [0, size − 1]; derivative 1 inside, 0 where clamped."""
    return np.clip(c, 0, size - 1), ((c > 0) & (c < size - 1)).astype(c.dtype)


def _reflect(c, lo2, hi2):
    """c reflected into [lo2/2, hi2/2] (the bounds given doubled, as PyTorch); and its derivative ±1."""
    if lo2 == hi2:
        return np.zeros_like(c), np.zeros_like(c)
    lo, span = lo2 / 2, (hi2 - lo2) / 2
    d = c - lo
    sign = np.where(d < 0, -1.0, 1.0).astype(c.dtype)
    a = np.abs(d)
    extra, flips = np.fmod(a, span), np.floor(a / span)
    even = flips % 2 == 0
    return np.where(even, extra + lo, span - extra + lo), np.where(even, sign, -sign)


def pad_coord(c, size, padding, align):
    """A pixel coordinate moved inside the image by the padding mode (zeros: unchanged); and its derivative."""
    if padding == "border":
        return _clip(c, size)
    if padding == "reflection":
        r, dr = _reflect(c, 0, 2 * (size - 1)) if align else _reflect(c, -1, 2 * size - 1)
        if align:
            return r, dr
        r, dc = _clip(r, size)
        return r, dr * dc
    return c, np.ones_like(c)


def _cubic(t):
    """The four bicubic weights of taps −1, 0, 1, 2 at fraction t, and their derivatives in t."""
    def near(x):                 # |x| ≤ 1: ((a + 2)x − (a + 3))x² + 1
        return ((A + 2) * x - (A + 3)) * x * x + 1, (3 * (A + 2) * x - 2 * (A + 3)) * x

    def far(x):                  # 1 < |x| < 2: ((a x − 5a)x + 8a)x − 4a
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A, (3 * A * x - 10 * A) * x + 8 * A
    (w0, d0), (w1, d1), (w2, d2), (w3, d3) = far(t + 1), near(t), near(1 - t), far(2 - t)
    return (w0, w1, w2, w3), (d0, d1, -d2, -d3)


def taps(grid, H, W, mode, padding, align):
    """Per output point the input pixels read: [(flat index (B, P), weight, d weight/d ix, d weight/d iy)], and
    d ix/d gx, d iy/d gy (B, P) (grid (B, P, 2), x first)."""
    (ix, sx), (iy, sy) = unnormalize(grid[..., 0], W, align), unnormalize(grid[..., 1], H, align)
    out = []

    def tap(xx, yy, w, dwx, dwy):
        ok = (xx >= 0) & (xx <= W - 1) & (yy >= 0) & (yy <= H - 1)
        idx = np.where(ok, yy * W + xx, 0).astype(np.int64)
        out.append((idx, w * ok, dwx * ok, dwy * ok))
    if mode == "bicubic":                                 # padding applies to each (whole-number) tap coordinate
        x0, y0 = np.floor(ix), np.floor(iy)
        (cx, dcx), (cy, dcy) = _cubic(ix - x0), _cubic(iy - y0)
        for j in range(4):
            yy = pad_coord(y0 + (j - 1), H, padding, align)[0]
            for i in range(4):
                xx = pad_coord(x0 + (i - 1), W, padding, align)[0]
                tap(xx, yy, cx[i] * cy[j], dcx[i] * cy[j], cx[i] * dcy[j])
        return out, sx * np.ones_like(ix), sy * np.ones_like(iy)
    (ix, mx), (iy, my) = pad_coord(ix, W, padding, align), pad_coord(iy, H, padding, align)
    if mode == "nearest":                                 # round half to even, as nearbyint
        z = np.zeros_like(ix)
        tap(np.rint(ix), np.rint(iy), np.ones_like(ix), z, z)
        return out, z, z
    x0, y0 = np.floor(ix), np.floor(iy)
    tx, ty = ix - x0, iy - y0
    for oy in (0, 1):
        wy, dwy = (ty, 1.0) if oy else (1 - ty, -1.0)
        for ox in (0, 1):
            wx, dwx = (tx, 1.0) if ox else (1 - tx, -1.0)
            tap(x0 + ox, y0 + oy, wx * wy, dwx * wy, wx * dwy)
    return out, sx * mx, sy * my


@register
class GridSample(Layer):
    category = "reshape"
    doc = ("Reads an image (C, H, W) at the points of a grid (H_out, W_out, 2) of (x, y) in [−1, 1] (−1: the left/top "
           "edge, 1: the right/bottom): y[c, i, j] = Σ w·x[c, taps of grid[i, j]], nearest, bilinear or bicubic; "
           "outside the image: zeros, the border or a reflection (the spatial transformer's sampler).")
    hparams = (HP("mode", "choice", "bilinear", choices=("bilinear", "nearest", "bicubic"),
                  doc="bilinear (4 taps), nearest (1) or bicubic (16, a = −0.75)"),
               HP("padding_mode", "choice", "zeros", choices=("zeros", "border", "reflection"),
                  doc="What points outside the image read: 0, the nearest edge pixel, or the image mirrored"),
               HP("align_corners", "bool", False,
                  doc="±1 are the centres of the corner pixels (else their outer edges)"))
    n_inputs = 2
    fused = None          # runs on the per-layer path
    mixes_positions = True  # an output pixel reads wherever the grid points: no receptive field (engine/receptive.py)
    TORCH = '''class GridSample(nn.Module):
    """Image (B, C, H, W) read at grid (B, H_out, W_out, 2) points in [-1, 1] (nn.functional.grid_sample)."""

    def __init__(self, mode, padding_mode, align_corners):
        super().__init__()
        self.mode, self.padding_mode, self.align_corners = mode, padding_mode, align_corners

    def forward(self, x, grid):
        return nn.functional.grid_sample(x, grid, mode=self.mode, padding_mode=self.padding_mode,
                                         align_corners=self.align_corners)
'''

    def compute_output_shape(self, in_shapes):
        if len(in_shapes) != 2:
            raise ShapeError(f"{self.where} needs two inputs, an image (C, H, W) and a grid (H_out, W_out, 2), "
                             f"but has {len(in_shapes)}")
        img, grid = (tuple(s) for s in in_shapes)
        if len(img) != 3:
            raise ShapeError(f"{self.where} needs an image (C, H, W) as input 1 but got {fmt(img)}")
        if len(grid) != 3 or grid[2] != 2:
            raise ShapeError(f"{self.where} needs a grid (H_out, W_out, 2) of (x, y) points as input 2 but got "
                             f"{fmt(grid)}: e.g. a Dense with 2·H_out·W_out units and a Reshape to (H_out, W_out, 2)")
        return img[0], grid[0], grid[1]

    def macs(self, in_shapes):
        return TAPS[self.config["mode"]] * int(np.prod(self.compute_output_shape(in_shapes)))

    def formulas(self, in_shapes):
        (c, h, w), (ho, wo, _) = in_shapes
        out, k = self.compute_output_shape(in_shapes), TAPS[self.config["mode"]]
        return {"shape": f"image (C, H, W) = {fmt((c, h, w))} read at grid (H_out, W_out, 2) = {fmt((ho, wo, 2))} "
                         f"→ (C, H_out, W_out) = {fmt(out)}",
                "params": "no trainable parameters (the grid is an input) = 0",
                "macs": f"taps·C·H_out·W_out = {k}·{c}·{ho}·{wo} = {k * c * ho * wo:,}"}

    def forward(self, x, grid, training=False):
        B, C, H, W = x.shape
        dt = np.result_type(x, grid)
        g = np.asarray(grid, dt).reshape(B, -1, 2)                                   # (B, P, 2)
        cfg = self.config
        self.hw = H, W
        self.t, self.mx, self.my = taps(g, H, W, cfg["mode"], cfg["padding_mode"], cfg["align_corners"])
        self.xf = np.asarray(x, dt).reshape(B, C, H * W)                             # (B, C, H·W)
        y = np.zeros((B, C, g.shape[1]), dt)                                         # (B, C, P)
        for idx, w, _, _ in self.t:
            y += w[:, None] * np.take_along_axis(self.xf, idx[:, None], axis=2)
        return y.reshape((B, C) + grid.shape[1:3])

    def backward(self, dy):
        xf, (H, W) = self.xf, self.hw
        B, C, _ = xf.shape
        d = dy.reshape(B, C, -1)                                                     # (B, C, P)
        if not self.need_dx:
            return None, None
        rows = (np.arange(B * C) * H * W).reshape(B, C, 1)                         # each (b, c) image's offset
        dx = np.zeros(B * C * H * W)
        for i, w, _, _ in self.t:                                                    # dx[tap] += w·dy, per tap
            dx += np.bincount((rows + i[:, None]).ravel(), (d * w[:, None]).ravel(), minlength=dx.size)
        dx = dx.astype(xf.dtype).reshape(B, C, H, W)
        gx, gy = np.zeros(d.shape[::2], xf.dtype), np.zeros(d.shape[::2], xf.dtype)   # (B, P)
        if self.config["mode"] != "nearest":
            for i, _, dwx, dwy in self.t:
                s = np.einsum("bcp,bcp->bp", d, np.take_along_axis(xf, i[:, None], axis=2))   # Σ_c dy·x[tap]
                gx += dwx * s
                gy += dwy * s
        dgrid = np.stack([gx * self.mx, gy * self.my], axis=-1)                      # (B, P, 2)
        return dx, dgrid.reshape((B,) + dy.shape[2:] + (2,))

    def to_onnx(self, ctx, ins):
        c = self.config                                    # GridSample-16 (the export's opset 17)
        return ctx.op("GridSample", ins, self.name, mode=c["mode"], padding_mode=c["padding_mode"],
                      align_corners=int(c["align_corners"]))

    def to_torch(self):
        from ..torch_export import Emitted
        c = self.config
        return Emitted(f"GridSample({c['mode']!r}, {c['padding_mode']!r}, {c['align_corners']})",
                       helpers=("GridSample",), sources={"GridSample": self.TORCH})

    def torch_reference(self, xs, p, torch):
        c = self.config
        return torch.nn.functional.grid_sample(xs[0], xs[1], mode=c["mode"], padding_mode=c["padding_mode"],
                                               align_corners=c["align_corners"])

    @classmethod
    def samples(cls):
        img, grid = (2, 3, 4), (3, 2, 2)
        return [({}, [img, grid]), ({"align_corners": True}, [(1, 4, 3), (2, 3, 2)]),
                ({"padding_mode": "border"}, [img, grid]),
                ({"padding_mode": "reflection"}, [img, grid]),
                ({"padding_mode": "reflection", "align_corners": True}, [(1, 3, 3), (2, 2, 2)]),
                ({"mode": "nearest"}, [img, grid]),
                ({"mode": "nearest", "padding_mode": "reflection", "align_corners": True}, [img, grid]),
                ({"mode": "bicubic"}, [img, grid]),
                ({"mode": "bicubic", "padding_mode": "border", "align_corners": True}, [(1, 4, 3), (2, 3, 2)]),
                ({"mode": "bicubic", "padding_mode": "reflection"}, [img, grid])]
