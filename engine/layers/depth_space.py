"""DepthToSpace and SpaceToDepth: channels moved into b×b pixel blocks of (C, H, W) and back (ONNX, PixelShuffle)."""
import numpy as np

from ..errors import ShapeError
from ..hparams import HP
from .base import Layer, fmt, register

REARRANGE = '''class Rearrange(nn.Module):
    """Reshapes each sample to mid, reorders its axes by perm (the batch axis stays first), reshapes to out."""

    def __init__(self, mid, perm, out):
        super().__init__()
        self.mid, self.perm, self.out = mid, perm, out

    def forward(self, x):
        return x.reshape(len(x), *self.mid).permute(0, *self.perm).reshape(len(x), *self.out)
'''
HPS = (HP("block_size", "int", 2, min=1, max=64, doc="b: the side of each pixel block (PixelShuffle's upscale factor)"),
       HP("mode", "choice", "DCR", choices=("DCR", "CRD"),
          doc="Channel order within a block: DCR (depth-column-row, ONNX's default) or CRD (PyTorch's PixelShuffle)"))


class _Blocks(Layer):
    """A reshape to (…, b, …, b, …), a reordering of its axes and a reshape back: _mid gives the first two."""

    category = "reshape"
    hparams = HPS
    powers = (0, 0, 0)    # (C, H, W) → (C·b^p₀, H·b^p₁, W·b^p₂); a negative power divides
    needs = ""            # what a negative power asks of the input, for the error

    def compute_output_shape(self, in_shapes):
        s = tuple(in_shapes[0])
        self._expect_rank(s, (3,), "a (C, H, W) image")
        b = self.config["block_size"]
        if any(p < 0 and n % b ** -p for n, p in zip(s, self.powers)):
            raise ShapeError(f"{self.where} needs {self.needs.format(b=b, bb=b * b)} but got {fmt(s)}")
        return tuple(n * b ** p if p >= 0 else n // b ** -p for n, p in zip(s, self.powers))

    def _plan(self):
        mid, perm = self._mid(self.in_shapes[0])
        return mid, perm, self.out_shape

    def forward(self, x, training=False):
        mid, perm, out = self._plan()
        y = x.reshape((len(x),) + mid).transpose((0,) + tuple(p + 1 for p in perm))   # (B, *mid reordered)
        return np.ascontiguousarray(y).reshape((len(x),) + out)

    def backward(self, dy):
        mid, perm, _ = self._plan()
        d = dy.reshape((len(dy),) + tuple(mid[p] for p in perm))                      # (B, *mid reordered)
        back = (0,) + tuple(int(i) + 1 for i in np.argsort(perm))
        return (np.ascontiguousarray(d.transpose(back)).reshape((len(dy),) + self.in_shapes[0]),)

    def to_onnx(self, ctx, ins):
        mid, perm, out = self._plan()
        m = ctx.op("Reshape", [ins[0], ctx.const(f"{self.name}/mid", (0,) + mid, np.int64)], f"{self.name}/blocks")
        t = ctx.op("Transpose", [m], f"{self.name}/moved", perm=[0] + [p + 1 for p in perm])
        return ctx.op("Reshape", [t, ctx.const(f"{self.name}/shape", (0,) + out, np.int64)], self.name)

    def to_torch(self):
        from ..torch_export import Emitted
        if self.config["mode"] == "CRD":                                      # PyTorch's own
            return Emitted(f"nn.{self.torch_name}({self.config['block_size']})")
        mid, perm, out = self._plan()
        return Emitted(f"Rearrange({mid}, {tuple(p + 1 for p in perm)}, {out})", helpers=("Rearrange",),
                       sources={"Rearrange": REARRANGE})

    def torch_reference(self, xs, p, torch):
        mid, perm, out = self._plan()
        x = xs[0]
        return x.reshape((len(x),) + mid).permute(0, *(q + 1 for q in perm)).reshape((len(x),) + out)

    def formulas(self, in_shapes):
        (c, h, w), b = in_shapes[0], self.config["block_size"]
        out = self.compute_output_shape(in_shapes)
        return {"shape": f"{self.rule.format(c=c, h=h, w=w, b=b)} → {fmt(out)}",
                "params": "no trainable parameters = 0", "macs": "no multiply-adds (copies) = 0"}


@register
class DepthToSpace(_Blocks):
    fused = None          # runs on the per-layer path (a copy)
    doc = ("Moves channels into b×b pixel blocks: (C, H, W) → (C/b², H·b, W·b) (ONNX DepthToSpace; in CRD mode "
           "PyTorch's PixelShuffle).")
    torch_name = "PixelShuffle"
    rule = "(C/b², H·b, W·b) = ({c}/{b}², {h}·{b}, {w}·{b})"
    powers, needs = (-2, 1, 1), "channels divisible by b² = {bb}"

    def _mid(self, s):
        (c, h, w), b = s, self.config["block_size"]
        if self.config["mode"] == "DCR":
            return (b, b, c // (b * b), h, w), (2, 3, 0, 4, 1)     # (C', H, b, W, b)
        return (c // (b * b), b, b, h, w), (0, 3, 1, 4, 2)         # (C', H, b, W, b)

    @classmethod
    def samples(cls):
        return [({}, [(8, 3, 2)]), ({"mode": "CRD"}, [(8, 2, 3)]), ({"block_size": 3, "mode": "CRD"}, [(9, 2, 2)])]


@register
class SpaceToDepth(_Blocks):
    fused = None          # runs on the per-layer path (a copy)
    doc = ("Moves each b×b pixel block into channels: (C, H, W) → (C·b², H/b, W/b) (ONNX SpaceToDepth; in CRD "
           "mode PyTorch's PixelUnshuffle).")
    torch_name = "PixelUnshuffle"
    rule = "(C·b², H/b, W/b) = ({c}·{b}², {h}/{b}, {w}/{b})"
    powers, needs = (2, -1, -1), "a height and width divisible by b = {b}"

    def _mid(self, s):
        (c, h, w), b = s, self.config["block_size"]
        mid = (c, h // b, b, w // b, b)
        return mid, ((2, 4, 0, 1, 3) if self.config["mode"] == "DCR" else (0, 2, 4, 1, 3))   # (b, b, C, H', W')

    @classmethod
    def samples(cls):
        return [({}, [(2, 4, 6)]), ({"mode": "CRD"}, [(3, 2, 4)]), ({"block_size": 3, "mode": "CRD"}, [(1, 3, 6)])]
