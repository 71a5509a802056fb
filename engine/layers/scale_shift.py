"""ScaleShift: y = x·a + b with constant a and b (an imported model's Add/Sub/Mul/Div by constants)."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, Param, fmt, register

SOURCE = '''class ScaleShift(nn.Module):
    """x·scale + shift with constants (buffers, not trained)."""

    def __init__(self, *shape):
        super().__init__()
        self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("shift", torch.zeros(shape))

    def forward(self, x):
        return x * self.scale + self.shift
'''


@register
class ScaleShift(Layer):
    category = "core"
    doc = "y = x·a + b with constants a, b broadcast over the sample (not trained): a fixed scale and shift."
    hparams = (HP("shape", "ints", (1,), min=1, max=1 << 20,
                  doc="Shape of a and b, broadcast against each sample (1: one number; C,1,1: one per channel)"),)

    def compute_output_shape(self, in_shapes):
        s, x = self.config["shape"], tuple(in_shapes[0])
        try:
            out = np.broadcast_shapes(s, x)
        except ValueError:
            out = None
        if out != x:
            raise ShapeError(f"{self.where}: constants of shape {fmt(s)} do not broadcast over an input of shape "
                             f"{fmt(x)}; give them a shape that does (e.g. {fmt((x[0],) + (1,) * (len(x) - 1))})")
        return x

    def params(self, in_shapes):
        s = tuple(self.config["shape"])
        return {"scale": Param(s, "ones", trainable=False), "shift": Param(s, "zeros", trainable=False)}

    def macs(self, in_shapes):
        return int(np.prod(in_shapes[0]))

    def formulas(self, in_shapes):
        n = int(np.prod(in_shapes[0]))
        return {"shape": f"output shape = input shape = {fmt(tuple(in_shapes[0]))}",
                "params": f"no trainable parameters (a, b: {fmt(self.config['shape'])} constants) = 0",
                "macs": f"one multiply-add per value = {n:,}"}

    def forward(self, x, training=False):
        return x * self.p["scale"].astype(x.dtype, copy=False) + self.p["shift"].astype(x.dtype, copy=False)

    def backward(self, dy):
        return (dy * self.p["scale"].astype(dy.dtype, copy=False),)        # (B, *shape): a, b are not trained

    fused = None            # an imported model's constant step: the per-layer path runs it

    def to_onnx(self, ctx, ins):
        n = self.name
        y = ctx.op("Mul", [ins[0], ctx.const(f"{n}/scale", self.p["scale"])], f"{n}/scaled")
        return ctx.op("Add", [y, ctx.const(f"{n}/shift", self.p["shift"])], n)

    def to_torch(self):
        from ..torch_export import Emitted
        shape = ", ".join(map(str, self.config["shape"]))
        return Emitted(f"ScaleShift({shape})", {"scale": "scale", "shift": "shift"}, helpers=("ScaleShift",),
                       sources={"ScaleShift": SOURCE})

    def torch_reference(self, xs, p, torch):
        return xs[0] * p["scale"] + p["shift"]

    @classmethod
    def samples(cls):
        return [({}, [(5,)]), ({"shape": (3, 1, 1)}, [(3, 4, 2)]), ({"shape": (4,)}, [(2, 4)])]
