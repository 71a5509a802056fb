"""A post-norm transformer sublayer, LayerNorm(u + f(u)), with the Add and the LayerNorm run inside f's own
batch-parallel loop: f = MultiHeadSelfAttention, or Dense → ReLU → Dense (fusion_ffn.DenseReLUDense).

Forward, each row chunk of f's output is normalised with the residual added while it is in cache, on the thread
that made it; backward, the LayerNorm's gradient of a chunk is formed right before f's backward reads it. The
LayerNorm runs in parallel with no loop of its own, and the Add is never stored. The math is the layers' own kernels
(normalization._ln_fwd / _ln_bwd); γ, β gradients are summed over chunks in chunk order. A group of
engine/layers/fusion.py: used only where nothing else reads f's output or the sum.
"""
from math import prod

import numpy as np

from .. import parallel
from .conv_kernels import chunk_sum, scratch
from .fusion_block import Head, MeanPool, SublayerChain
from .fusion_ffn import DenseReLUDense
from .normalization import _ln_bwd, _ln_fwd


class SublayerAddNorm:
    """LayerNorm(u + f(u)) for f a MultiHeadSelfAttention layer or a DenseReLUDense group."""

    def __init__(self, f, first, add, ln, nodes):
        self.f, self.first, self.add, self.ln, self.nodes = f, first, add, ln, nodes

    def _units(self, u, samples):
        """f's chunks for runs of samples (attention: samples; the feed-forward group: rows)."""
        if samples is None or self.f is self.first:
            return samples
        k = prod(u.shape[1:-1])                                                      # rows per sample
        return [(a * k, b * k) for a, b in samples]

    def count(self, u):
        """How many chunks f alone splits u's batch into."""
        if self.f is self.first:
            return len(self.f._chunks(u.shape[0], u.shape[1], None, None))
        return len(self.f._chunks(prod(u.shape[:-1])))

    def forward(self, u, training=False):
        out, run, chunks = self.forward_parts(u, training)
        parallel.run(run, chunks)
        return out

    def forward_parts(self, u, training=False, samples=None, keep=True):
        """(out, run, chunks) as MultiHeadSelfAttention.forward_parts; samples: runs of samples (fusion_block);
        keep=False: out is a buffer reused by the next step (an output only the next stage of a chain reads)."""
        ln = self.ln
        F = u.shape[-1]
        dt = ln.p["gamma"].dtype
        u2 = np.ascontiguousarray(u, dtype=dt).reshape(-1, F)                      # (M, F) the residual
        out = np.empty_like(u2) if keep else scratch(self, "out", u2.shape, dt)     # (M, F)
        xhat = ln.xhat = scratch(self, "xhat", u2.shape, dt)                        # as LayerNorm.forward keeps
        inv = ln.inv = scratch(self, "inv", (len(u2),), dt)
        g, b, eps = ln.p["gamma"].reshape(-1), ln.p["beta"].reshape(-1), ln.config["eps"]

        def epilogue(a, e, y2):                                                     # rows a … e−1 of f(u)
            _ln_fwd(y2[a:e], u2[a:e], g, b, eps, out[a:e], xhat[a:e], inv[a:e])

        _, run, chunks = self.f.forward_parts(u, epilogue, self._units(u, samples))
        self.add.n = 2
        return out.reshape(u.shape), run, chunks

    def backward(self, dy):
        size, run, finish = self.backward_parts(dy)
        n = len(self.f.chunks)
        return finish(chunk_sum(self, n, size, self.ln.xhat.dtype, run) if n else np.zeros(size, self.ln.xhat.dtype))

    def backward_parts(self, dy):
        """(size, run, finish) as MultiHeadSelfAttention.backward_parts, a chunk's share being f's then [dγ | dβ];
        self.du: the buffer run(i) fills with chunk i's rows of dL/du (when u needs its gradient: the previous
        sublayer's dy in a chain)."""
        ln = self.ln
        xhat, inv, gamma = ln.xhat, ln.inv, ln.p["gamma"].reshape(-1)
        M, F = xhat.shape
        dy2 = np.ascontiguousarray(dy, dtype=xhat.dtype).reshape(M, F)             # (M, F)
        ds = np.empty_like(dy2)                                                     # (M, F) dL/d(u + f(u))
        at = [None] * len(self.f.chunks)                                            # chunk i's [dγ | dβ]

        def prologue(i, a, e):
            _ln_bwd(dy2[a:e], xhat[a:e], inv[a:e], gamma, ds[a:e], at[i][:F], at[i][F:], True)

        need = self.first.need_dx                                                   # u's gradient: f's dx + ds
        self.du = ds.reshape(dy.shape) if need else None
        nf, runf, fin = self.f.backward_parts(ds.reshape(dy.shape), prologue=prologue, add_to=ds if need else None)

        def run(i, o):
            at[i] = o[nf:]
            runf(i, o[:nf])

        def finish(tot):
            (dx,) = fin(None if tot is None else tot[:nf])
            if tot is not None:
                ln.g["gamma"][...] = tot[nf:nf + F].reshape(ln.g["gamma"].shape)
                ln.g["beta"][...] = tot[nf + F:].reshape(ln.g["beta"].shape)
            return (dx.reshape(dy.shape) if need else None,)

        return nf + 2 * F, run, finish

    def grads(self):
        """The gradient arrays in the order backward_parts lays out a chunk's share."""
        return self.f.grads() + [self.ln.g["gamma"], self.ln.g["beta"]]


def _only_user(model, users, n, kind):
    """The one node reading n if it is a layer of type `kind` with n as its only input, else None."""
    u = users.get(n, [])
    if len(u) != 1 or type(model.layers[u[0]]).__name__ != kind or len(model.srcs[u[0]]) != 1:
        return None
    return u[0]


def find(model, users):
    """{first node: SublayerAddNorm} for each f → Add(f's input, f) → LayerNorm (over the last axis) whose f output
    and sum feed nothing else, the model's output excluded."""
    out = {}
    for n in model.order:
        layer, srcs = model.layers[n], model.srcs[n]
        if len(srcs) != 1:
            continue
        kind, chain = type(layer).__name__, [n]
        if kind == "Dense":
            relu = _only_user(model, users, n, "ReLU")
            d2 = relu and _only_user(model, users, relu, "Dense")
            if not d2 or not DenseReLUDense.fits(layer, model.layers[relu], model.layers[d2]):
                continue
            chain += [relu, d2]
            f = DenseReLUDense(layer, model.layers[relu], model.layers[d2])
        elif kind == "MultiHeadSelfAttention":
            f = layer
        else:
            continue
        add = users.get(chain[-1], [])
        if len(add) != 1 or type(model.layers[add[0]]).__name__ != "Add" or \
                sorted(model.srcs[add[0]]) != sorted([srcs[0], chain[-1]]) or srcs[0] == chain[-1]:
            continue
        add = add[0]
        ln = users.get(add, [])
        if len(ln) != 1 or type(model.layers[ln[0]]).__name__ != "LayerNorm" or \
                model.layers[ln[0]].config["axes"] != 1:
            continue
        ln = ln[0]
        a = model.layers[add]
        if a.in_shapes[0] != a.in_shapes[1] or model.output in chain + [add, ln]:
            continue
        nodes = tuple(chain + [add, ln])
        out[n] = SublayerAddNorm(f, layer, a, model.layers[ln], nodes)
    return _chains(model, users, out)


def _chains(model, users, subs):
    """subs with each run of sublayers whose LayerNorm output feeds only the next one (its f and its Add), and a
    TimePool(mean) → Dense head reading only the last, merged into one fusion_block.SublayerChain."""
    at = {model.srcs[n][0]: n for n in subs}                                        # u → the sublayer reading it
    out, taken = {}, set()
    for n in model.order:
        if n not in subs or n in taken:
            continue
        run = [subs[n]]
        while True:
            ln = run[-1].nodes[-1]
            nxt = at.get(ln)
            if nxt is None or nxt in taken or sorted(users.get(ln, [])) != sorted([nxt, subs[nxt].nodes[-2]]):
                break
            run.append(subs[nxt])
            taken.add(nxt)
        pool = _only_user(model, users, run[-1].nodes[-1], "TimePool")
        if pool and pool != model.output and model.layers[pool].config["mode"] == "mean":
            run.append(MeanPool(model.layers[pool]))
            head = _only_user(model, users, pool, "Dense")
            if head and head != model.output:
                run.append(Head(model.layers[head]))
        out[n] = run[0] if len(run) == 1 else SublayerChain(run)
    return out
