"""Seeded data augmentation for image batches (B, C, H, W): shifts, small rotations, flips, Gaussian noise."""
import numpy as np
from .._jit import njit

from ..errors import ConfigError

OPTIONS = {"shift": "largest shift in whole pixels, up/down and left/right (0: off)",
           "rotate": "largest rotation in degrees, either way (0: off)",
           "flip": "mirror left-right half of the images (off for digits and text)",
           "noise": "standard deviation of Gaussian noise added to every value (0: off)"}


@njit(cache=True, nogil=True, fastmath=True)
def warp(x, cos, sin, dy, dx, flip, out):
    """out[b] = x[b] rotated (cos, sin) about the centre, shifted (dy, dx), mirrored if flip[b]; bilinear, 0 outside."""
    B, C, H, W = x.shape
    cy, cx = (H - 1) * 0.5, (W - 1) * 0.5
    for b in range(B):
        cb, sb = np.float32(cos[b]), np.float32(sin[b])
        for c in range(C):
            src, dst = x[b, c], out[b, c]                       # (H, W)
            for i in range(H):
                u, v = i - dy[b] - cy, -dx[b] - cx              # output pixel (i, 0) from the centre, shift undone
                by = np.float32(cb * u - sb * v + cy)           # its source position (rotation undone) ...
                bx = np.float32(sb * u + cb * v + cx)
                for j in range(W):
                    sy, sx = by - sb * j, bx + cb * j           # ... moves linearly along the row
                    if flip[b]:
                        sx = W - 1 - sx
                    y0, x0 = int(np.floor(sy)), int(np.floor(sx))
                    fy, fx = sy - y0, sx - x0
                    oky0, oky1, okx0, okx1 = 0 <= y0 < H, 0 <= y0 + 1 < H, 0 <= x0 < W, 0 <= x0 + 1 < W
                    a00 = src[y0, x0] if oky0 and okx0 else 0.0
                    a01 = src[y0, x0 + 1] if oky0 and okx1 else 0.0
                    a10 = src[y0 + 1, x0] if oky1 and okx0 else 0.0
                    a11 = src[y0 + 1, x0 + 1] if oky1 and okx1 else 0.0
                    top, bot = a00 + fx * (a01 - a00), a10 + fx * (a11 - a10)
                    dst[i, j] = top + fy * (bot - top)


def _number(cfg, key, lo, hi):
    v = cfg.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ConfigError(f"augment: '{key}' ({OPTIONS[key]}) must be a number from {lo} to {hi}, got {v!r}")
    return v


def make(config):
    """fn(xb, rng) -> augmented copy of xb for Trainer.augment; config e.g. {"shift": 2, "rotate": 10}."""
    if not isinstance(config, dict):
        raise ConfigError(f"augment must be an object such as {{\"shift\": 2, \"rotate\": 10}}, got {config!r}")
    bad = sorted(set(config) - set(OPTIONS))
    if bad:
        raise ConfigError(f"augment has no option {bad[0]!r}; options: " +
                          "; ".join(f"{k}: {d}" for k, d in OPTIONS.items()))
    shift, rotate = _number(config, "shift", 0, 64), _number(config, "rotate", 0, 180)
    noise = _number(config, "noise", 0, 10)
    if int(shift) != shift:
        raise ConfigError(f"augment: 'shift' is in whole pixels, got {shift!r}")
    flip = config.get("flip", False)
    if not isinstance(flip, bool):
        raise ConfigError(f"augment: 'flip' must be true or false, got {flip!r}")
    shift, geometric = int(shift), bool(shift or rotate or flip)

    def augment(xb, rng):
        B = len(xb)
        if geometric:
            if xb.ndim != 4:
                raise ConfigError(f"augment: shift, rotate and flip need image samples (C, H, W), "
                                  f"these have shape {tuple(xb.shape[1:])}; use noise only")
            a = np.deg2rad(rng.uniform(-rotate, rotate, B)) if rotate else np.zeros(B)
            d = rng.integers(-shift, shift + 1, (2, B)).astype(np.float64) if shift else np.zeros((2, B))
            f = rng.random(B) < 0.5 if flip else np.zeros(B, np.bool_)
            src = np.ascontiguousarray(xb, dtype=np.float32)
            out = np.empty_like(src)                                   # (B, C, H, W)
            warp(src, np.cos(a), np.sin(a), d[0], d[1], f, out)
            xb = out
        if noise:
            xb = xb + rng.standard_normal(xb.shape, dtype=np.float32) * np.float32(noise)
        return xb

    augment.config = dict(config)
    return augment
