"""Slice: keeps x[start:end:step] along some of the sample's axes (ONNX Slice; Split and torch.chunk as several)."""
import numpy as np

from ..errors import ConfigError, ShapeError
from ..hparams import HP
from .base import Layer, fmt, register

END = 2 ** 31 - 1          # an end past any axis: up to its end
SOURCE = '''class Slice(nn.Module):
    """Keeps x[start:stop:step] along each dim (a negative step: the axis flipped, then sliced)."""

    def __init__(self, *plan):
        super().__init__()
        self.plan = plan   # (dim, flip, start, stop, step) per sliced dim

    def forward(self, x):
        for d, flip, a, b, s in self.plan:
            x = x.flip(d) if flip else x
            x = x[(slice(None),) * d + (slice(a, b, s),)]
        return x
'''


@register
class Slice(Layer):
    category = "reshape"
    doc = ("Keeps x[start:end:step] along each listed axis of the sample (Python's rules: a negative index counts "
           "from the axis' end, an end past the axis stops at it, a negative step walks backwards).")
    hparams = (HP("axes", "ints", (0,), min=0, max=31, doc="The sample's axes to slice, e.g. 0 or 1,2"),
               HP("starts", "ints", (0,), min=-END, max=END, doc="First index kept on each axis (−1: the last)"),
               HP("ends", "ints", (2,), min=-END - 1, max=END,
                  doc=f"Index where each axis' slice stops, not kept ({END}: to the end)"),
               HP("steps", "ints", (1,), min=-END, max=END, doc="Step on each axis (2: every second; −1: reversed)"))
    fused = None          # runs on the per-layer path (a copy of a sub-block)

    def _slices(self, shape):
        """{axis: (start, stop, step) as range() takes them} for the sample shape, checked."""
        c = self.config
        axes, n = c["axes"], len(c["axes"])
        if len(c["starts"]) != n or len(c["ends"]) != n or len(c["steps"]) != n:
            raise ConfigError(f"{self.where}: axes, starts, ends and steps need one value per axis ({n} axes)")
        if len(set(axes)) != n or 0 in c["steps"]:
            raise ConfigError(f"{self.where}: each axis may appear once and no step may be 0")
        out = {}
        for a, s, e, st in zip(axes, c["starts"], c["ends"], c["steps"]):
            if a >= len(shape):
                raise ShapeError(f"{self.where} slices axis {a} but its input {fmt(shape)} has {len(shape)} axes")
            r = slice(s, e, st).indices(shape[a])
            if not len(range(*r)):
                raise ShapeError(f"{self.where}: {s}:{e}:{st} keeps nothing of axis {a} (length {shape[a]})")
            out[a] = r
        return out

    def compute_output_shape(self, in_shapes):
        s = tuple(in_shapes[0])
        sl = self._slices(s)
        return tuple(len(range(*sl[a])) if a in sl else n for a, n in enumerate(s))

    def formulas(self, in_shapes):
        s, out = tuple(in_shapes[0]), self.compute_output_shape(in_shapes)
        parts = []
        for a, (a0, b, st) in sorted(self._slices(s).items()):
            span = f"{b} − {a0}" if st > 0 else f"{a0} + {-b}" if b < 0 else f"{a0} − {b}"    # range(a0, b, st)
            parts.append(f"axis {a}: ⌈({span})/{abs(st)}⌉ = {out[a]}")
        return {"shape": f"{fmt(s)}, " + ", ".join(parts) + f" → {fmt(out)}",
                "params": "no trainable parameters = 0", "macs": "no multiply-adds (copies) = 0"}

    def compute_mask(self, in_masks):
        """A sequence keeps its mask while its steps are kept whole and in order."""
        r = self._slices(self.in_shapes[0]).get(0)
        return super().compute_mask(in_masks) if r is None or r == (0, self.in_shapes[0][0], 1) else None

    def _index(self):
        """The numpy index of the kept block, batch axis first."""
        sl = self._slices(self.in_shapes[0])
        return (slice(None),) + tuple(slice(r[0], r[1] if r[1] >= 0 else None, r[2]) if a in sl else slice(None)
                                      for a, r in ((a, sl.get(a)) for a in range(len(self.in_shapes[0]))))

    def forward(self, x, training=False):
        return np.ascontiguousarray(x[self._index()])                             # (B, *out_shape)

    def backward(self, dy):
        dx = np.zeros((len(dy),) + self.in_shapes[0], dy.dtype)                   # (B, *in_shape)
        dx[self._index()] = dy
        return (dx,)

    def to_onnx(self, ctx, ins):
        sl = sorted(self._slices(self.in_shapes[0]).items())
        lo = -(2 ** 63)                                                          # before index 0 (negative steps)
        v = [(a + 1, r[0], r[1] if r[1] >= 0 else lo, r[2]) for a, r in sl]
        cs = [ctx.const(f"{self.name}/{k}", [t[i] for t in v], np.int64) for i, k in
              enumerate(("axes", "starts", "ends", "steps"))]
        return ctx.op("Slice", [ins[0], cs[1], cs[2], cs[0], cs[3]], self.name)

    def _plan(self):
        """(torch dim, flip, start, stop, step > 0) per sliced axis: a negative step slices the flipped axis."""
        out = []
        for a, (s, e, st) in sorted(self._slices(self.in_shapes[0]).items()):
            n, k, flip = self.in_shapes[0][a], len(range(s, e, st)), st < 0
            if flip:
                s, st = n - 1 - s, -st                                          # the same start, counted backwards
            out.append((a + 1, flip, s, s + (k - 1) * st + 1, st))
        return out

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(f"Slice({', '.join(map(str, self._plan()))})", helpers=("Slice",), sources={"Slice": SOURCE})

    def torch_reference(self, xs, p, torch):
        x = xs[0]
        for d, flip, a, b, s in self._plan():
            x = x.flip(d) if flip else x
            x = x[(slice(None),) * d + (slice(a, b, s),)]
        return x

    @classmethod
    def samples(cls):
        return [({}, [(3, 4)]), ({"axes": (1, 2), "starts": (1, -1), "ends": (END, -5), "steps": (2, -2)}, [(2, 5, 4)]),
                ({"axes": (1,), "starts": (1,), "ends": (3,), "steps": (1,)}, [(4, 5)], {"mask": True}),
                ({"axes": (0,), "starts": (-2,), "ends": (END,), "steps": (1,)}, [(3, 4, 4)])]
