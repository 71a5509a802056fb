"""MatMul: the matrix product of two computed tensors per sample, A (…, T, K) · B (…, K, N) → (…, T, N), the leading
axes broadcast as numpy / ONNX MatMul / torch.matmul do (the batch axis excluded)."""
import numpy as np

from ..errors import ShapeError
from .base import Layer, fmt, register


@register
class MatMul(Layer):
    category = "merge"
    doc = ("y = A·B per sample: A (…, T, K) times B (…, K, N) → (…, T, N), y_tn = Σ_k A_tk·B_kn; leading axes "
           "broadcast (ONNX MatMul of two tensors, torch.matmul).")
    n_inputs = 2
    fused = None          # runs on the per-layer path

    def compute_output_shape(self, in_shapes):
        a, b = (tuple(s) for s in in_shapes)
        if len(a) < 2 or len(b) < 2:
            raise ShapeError(f"{self.where} multiplies matrices: A (…, T, K) and B (…, K, N) need two axes each, got "
                             f"{fmt(a)} and {fmt(b)}: insert a Reshape before the one-axis input")
        if a[-1] != b[-2]:
            raise ShapeError(f"{self.where}: A {fmt(a)} has K = {a[-1]} columns but B {fmt(b)} has {b[-2]} rows; "
                             "they must be equal (e.g. a Dense with matching units before one of them)")
        try:
            lead = tuple(np.broadcast_shapes(a[:-2], b[:-2]))
        except ValueError:
            raise ShapeError(f"{self.where}: the leading axes {fmt(a[:-2])} of A and {fmt(b[:-2])} of B do not "
                             "broadcast (each pair of sizes equal or 1)") from None
        return lead + (a[-2], b[-1])

    def macs(self, in_shapes):
        return int(np.prod(self.compute_output_shape(in_shapes))) * in_shapes[0][-1]

    def formulas(self, in_shapes):
        (a, b), out = in_shapes, self.compute_output_shape(in_shapes)
        m = self.macs(in_shapes)
        return {"shape": f"A {fmt(a)} · B {fmt(b)} → (…, T, N) = {fmt(out)}; y_tn = Σ_k A_tk·B_kn over K = {a[-1]}",
                "params": "no trainable parameters = 0",
                "macs": f"output values·K = {'·'.join(map(str, out))}·{a[-1]} = {m:,}"}

    def compute_mask(self, in_masks):
        """A's mask (its rows are the output's steps) when A is a (T, K) sequence."""
        m = in_masks[0] if in_masks else None
        return m if m is not None and len(self.in_shapes[0]) == 2 else None

    def _aligned(self, x, i):
        """Input i (B, …) with 1-axes after the batch axis up to the output's rank."""
        s = self.in_shapes[i]
        return x.reshape(x.shape[:1] + (1,) * (len(self.out_shape) - len(s)) + x.shape[1:])

    def _reduce(self, d, i):
        """d (B, …out lead, r, c) summed over the axes input i was broadcast along, in input i's shape."""
        s = tuple(self.in_shapes[i])
        lead = len(self.out_shape) - len(s)
        full = d.shape[1:]
        axes = tuple(range(1, 1 + lead)) + tuple(1 + lead + j for j, n in enumerate(s[:-2])
                                                   if n == 1 and full[lead + j] != 1)
        return (d.sum(axis=axes) if axes else d).reshape((len(d),) + s)

    def _masks(self):
        ma = self.in_masks[0] if self.in_masks and len(self.in_shapes[0]) == 2 else None
        mb = self.in_masks[1] if len(self.in_masks) > 1 and len(self.in_shapes[1]) == 2 else None
        if mb is not None and not mb.all():
            raise ShapeError(f"{self.where} sums over the steps of the variable-length sequence B, so padded steps "
                             "would change the valid ones: pass B without a mask (e.g. through a TimePool or Dense)")
        return ma

    def forward(self, a, b, training=False):
        ma = self._masks()
        if ma is not None:
            a = a * ma[:, :, None]                                              # padded rows of A: 0 in, 0 out
        self.a, self.b = self._aligned(a, 0), self._aligned(b, 1)
        return np.matmul(self.a, self.b)                                         # (B, …, T, N)

    def backward(self, dy):
        da = self._reduce(np.matmul(dy, np.swapaxes(self.b, -1, -2)), 0)         # (B, …, T, K)
        db = self._reduce(np.matmul(np.swapaxes(self.a, -1, -2), dy), 1)         # (B, …, K, N)
        ma = self._masks()
        if ma is not None:
            da = da * ma[:, :, None]
        return da, db

    def to_onnx(self, ctx, ins):
        r, xs = len(self.out_shape), []
        for i, (x, s) in enumerate(zip(ins, self.in_shapes)):
            if len(s) < r:                                                       # ONNX aligns right: 1-axes after B
                x = ctx.op("Unsqueeze", [x, ctx.const(f"{self.name}/axes{i}", list(range(1, 1 + r - len(s))), np.int64)],
                           f"{self.name}/aligned{i}")
            xs.append(x)
        return ctx.op("MatMul", xs, self.name)

    def _call(self, i):
        k = len(self.out_shape) - len(self.in_shapes[i])
        return f"{{x{i}}}" + (f"[:, {', '.join(['None'] * k)}]" if k else "")

    def to_torch(self):
        from ..torch_export import Emitted
        return Emitted(None, call=f"torch.matmul({self._call(0)}, {self._call(1)})")

    def torch_reference(self, xs, p, torch):
        al = [x.reshape(x.shape[:1] + (1,) * (len(self.out_shape) - x.dim() + 1) + x.shape[1:]) for x in xs]
        return torch.matmul(*al)

    @classmethod
    def samples(cls):
        return [({}, [(3, 4), (4, 2)]), ({}, [(2, 3, 4), (2, 4, 3)]), ({}, [(2, 3, 4), (4, 5)]),
                ({}, [(3, 1, 2, 4), (2, 4, 2)]), ({}, [(5, 3), (3, 2)], {"mask": True})]
