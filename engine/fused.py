"""Fused training step: a graph compiled once (in Python) into an instruction table that ONE generic
numba kernel runs as forward + loss + backward + optimizer over flat buffers (no per-graph JIT).

Each layer class declares in its body how the fused kernel runs it: `fused(self, b)` emits its rows
through the Builder b (or raises Unsupported for a configuration it does not cover), `fused = None`
means never. The rows call the same kernels (engine/kernels.py) as the layer's own forward/backward,
so there is one implementation of each layer's math. Trainer uses this path when every node is
supported and falls back to the per-layer path otherwise. Activations live in one flat buffer: node n
of the batch holds acts[off[n]·B : (off[n] + size[n])·B], its gradient the same range of dacts.
"""

import numpy as np
from ._jit import njit

from . import kernels as kn
from . import losses
from .kernels import sq_norm
from .optimizers import _adagrad, _adam, _momentum, _rmsprop, _sgd

# opcodes; a row is (op, a, b, out, n1, n2, n3, p1, p2, flag) with act offsets per sample
INPUT, DENSE, RELU, SIGMOID, TANH, SOFTMAX, DROPOUT, COPY, ADDTO, POINTWISE = range(10)
BCE_LOGITS, CCE_LOGITS, MSE = 20, 21, 22
OPT = 30
OPTS = {"gd": 0, "sgd": 0, "momentum": 1, "adagrad": 2, "rmsprop": 3, "adam": 4}
OK, NOT_FINITE, BAD_LABEL = 0, 1, 2
WIDTH = 10


class Unsupported(Exception):
    """The graph, loss or optimizer has something the fused kernel does not run."""


# ---- kernels (explicit loops instead of slice assignment: far less code to compile) ----
@njit(cache=True, nogil=True, error_model="numpy")
def _forward(op, r, nb, acts, theta):
    """Forward of one row through the layer kernels (engine/kernels.py)."""
    a, o = r[1] * nb, r[3] * nb
    if op == DENSE:
        m, f, u, pw, pb = r[4] * nb, r[5], r[6], r[7], r[8]
        b = theta[pb:pb + u] if pb >= 0 else theta[:0]
        kn.dense_fwd(acts[a:a + m * f].reshape((m, f)), theta[pw:pw + u * f].reshape((u, f)), b,
                    acts[o:o + m * u].reshape((m, u)))                 # (M, F) → (M, U)
        return
    n, n2 = r[4] * nb, r[5]
    size = n * (n2 if op == SOFTMAX else 1)
    x, y = acts[a:a + size], acts[o:o + size]
    if op == RELU:
        kn.relu_fwd(x, y)
    elif op == SIGMOID:
        kn.sigmoid(x, y)
    elif op == TANH:
        kn.tanh_fwd(x, y)
    elif op == SOFTMAX:
        kn.softmax_rows(x.reshape((n, n2)), y.reshape((n, n2)))      # (M, C)
    elif op == DROPOUT:
        kn.scale_by(x, acts[r[2] * nb:r[2] * nb + n], y, 1)
    elif op == COPY:
        kn.add_into(x, y, 1)
    elif op == ADDTO:
        kn.add_into(x, y, 2)
    elif op == POINTWISE:                                    # kind n2; f′(x) kept in buffer b; (a, b) at p1
        c = r[7] * nb
        kn.pointwise(r[5], acts[c], acts[c + 1], x, y, acts[r[2] * nb:r[2] * nb + n])


@njit(cache=True, nogil=True, error_model="numpy")
def _backward(op, r, nb, acts, dacts, theta, grad):
    """Parameter gradients of one row and dL/d(input) written (flag 1) or added (flag 2) into dacts."""
    flag = r[9]
    a, o = r[1] * nb, r[3] * nb
    if op == DENSE:
        m, f, u, pw, pb = r[4] * nb, r[5], r[6], r[7], r[8]
        db = grad[pb:pb + u] if pb >= 0 else grad[:0]
        kn.dense_bwd(acts[a:a + m * f].reshape((m, f)), dacts[o:o + m * u].reshape((m, u)),
                    theta[pw:pw + u * f].reshape((u, f)), grad[pw:pw + u * f].reshape((u, f)), db,
                    dacts[a:a + m * f].reshape((m, f)), flag)
        return
    if flag == 0:
        return
    n, n2 = r[4] * nb, r[5]
    size = n * (n2 if op == SOFTMAX else 1)
    y, dy, dx = acts[o:o + size], dacts[o:o + size], dacts[a:a + size]
    if op == RELU:
        kn.relu_bwd(y, dy, dx, flag)
    elif op == SIGMOID:
        kn.sigmoid_bwd(y, dy, dx, flag)
    elif op == TANH:
        kn.tanh_bwd(y, dy, dx, flag)
    elif op == SOFTMAX:
        kn.softmax_bwd(y.reshape((n, n2)), dy.reshape((n, n2)), dx.reshape((n, n2)), flag)
    elif op == DROPOUT or op == POINTWISE:                  # dx = dy ⊙ (mask or f′(x))
        kn.scale_by(dy, acts[r[2] * nb:r[2] * nb + n], dx, flag)
    elif op == COPY or op == ADDTO:
        kn.add_into(dy, dx, flag)


@njit(cache=True, nogil=True, error_model="numpy")
def _loss(r, nb, acts, dacts, yf, yi):
    """Loss value; writes dL/d(input) of the loss row. NaN with a negative code means a bad label."""
    op, a, c = r[0], r[1] * nb, r[4]
    if op != CCE_LOGITS and yi.size > 0:                     # integer class ids as float targets
        lab = r[2] * nb
        for i in range(nb * c):
            acts[lab + i] = yi[i]
        yf = acts[lab:lab + nb * c]
    z = acts[a:a + nb * c].reshape((nb, c))
    dz = dacts[a:a + nb * c].reshape((nb, c))
    if op == BCE_LOGITS:
        return losses._bce_logits(z, yf[:nb * c].reshape((nb, c)), dz)
    if op == CCE_LOGITS:
        return losses._cce_logits(z, yi[:nb], dz)
    return losses._mse(z, yf[:nb * c].reshape((nb, c)), dz)


@njit(cache=True, nogil=True, error_model="numpy")
def _optimize(r, theta, grad, decay, hp, k, s1, s2):
    code, wd, lr = r[4], hp[0], hp[1]
    if code == 0:
        _sgd(theta, grad, decay, wd, lr)
    elif code == 1:
        _momentum(theta, grad, decay, wd, lr, hp[2], s1)
    elif code == 2:
        _adagrad(theta, grad, decay, wd, lr, hp[4], s1)
    elif code == 3:
        _rmsprop(theta, grad, decay, wd, lr, hp[2], hp[4], s1)
    else:
        _adam(theta, grad, decay, wd, lr, hp[2], hp[3], hp[4], k, s1, s2)


@njit(cache=True, nogil=True, error_model="numpy")
def train_step(code, nb, x, yf, yi, acts, dacts, theta, grad, decay, hp, k, s1, s2):
    """One step for the instruction table `code` on a batch of nb samples; returns (status, loss, |grad|²)."""
    rows = code.shape[0]
    last = 0
    for t in range(rows):
        r = code[t]
        op = r[0]
        if op == INPUT:
            o = r[3] * nb
            kn.add_into(x, acts[o:o + r[4] * nb], 1)
        elif op < BCE_LOGITS:
            _forward(op, r, nb, acts, theta)
        else:
            last = t
            break
    lrow = code[last]
    if lrow[0] == CCE_LOGITS:
        for i in range(nb):
            if yi[i] < 0 or yi[i] >= lrow[4]:
                return BAD_LABEL, np.nan, np.nan
    loss = _loss(lrow, nb, acts, dacts, yf, yi)
    for t in range(last - 1, -1, -1):
        r = code[t]
        op = r[0]
        if op != INPUT:
            _backward(op, r, nb, acts, dacts, theta, grad)
    gn = sq_norm(grad)
    if not (np.isfinite(loss) and np.isfinite(gn)):
        return NOT_FINITE, loss, gn
    _optimize(code[last + 1], theta, grad, decay, hp, k, s1, s2)
    return OK, loss, gn


# ---- compiling a model (plain Python, once per trainer) ----
class Builder:
    """What a layer's `fused(self, b)` uses to emit its rows; b.node, b.layer, b.srcs describe the node."""

    def __init__(self, step, model):
        self.step, self.model, self.rows = step, model, []
        self.at = 0

    def _alloc(self, key, size):
        self.step.off[key], self.step.size[key] = self.at, size
        self.at += size
        return self.step.off[key]

    def size(self, n=None):
        """Values per sample of node n's output (default: this node)."""
        return int(np.prod(self.model.infos[n or self.node].shape))

    def shape(self, n=None):
        return self.model.infos[n or self.node].shape

    def src(self, i=0):
        """Offset of input i's buffer."""
        return self.step.off[self.srcs[i]]

    def out(self):
        """Allocate this node's output buffer; its offset."""
        return self._alloc(self.node, self.size())

    def alias(self, i=0):
        """This node's output is input i's buffer (Flatten, Reshape, identity Dropout)."""
        self.step.off[self.node], self.step.size[self.node] = self.src(i), self.size()

    def buffer(self, key, size):
        """An extra per-sample buffer of this node (e.g. a dropout mask); its offset."""
        return self._alloc(f"{self.node}/{key}", size)

    def param(self, key):
        """Offset of parameter `key` in theta, or -1 when the layer has none by that name."""
        sl = self.model.slices.get(f"{self.node}/{key}")
        return -1 if sl is None else sl.start

    def row(self, op, a=0, b=0, o=0, n1=0, n2=0, n3=0, p1=0, p2=0, grad_of=0):
        """Append a row; grad_of: index of the input whose gradient its backward writes (None: no input)."""
        self.rows.append([op, a, b, o, n1, n2, n3, p1, p2, None if grad_of is None else self.srcs[grad_of]])

    def before_step(self, fn):
        """fn(acts, nb) runs in Python before each step (e.g. drawing dropout masks)."""
        self.step.hooks.append(fn)


class FusedStep:
    """A model + loss + optimizer as one instruction table; step(xb, yb) -> (loss, out, |grad|²) or None."""

    def __init__(self, model, loss, fused, opt):
        self.model, self.loss, self.opt = model, loss, opt
        if model.dtype not in (np.float32, np.float64):
            raise Unsupported(f"dtype {model.dtype}")
        if opt.name not in OPTS:
            raise Unsupported(f"optimizer {opt.name}")
        if len(getattr(model, "outputs", ())) > 1:
            raise Unsupported("several outputs")
        if loss.name == "mse":
            lop, stop = MSE, None
        elif fused and loss.name in ("bce", "cce"):
            lop, stop = (BCE_LOGITS if loss.name == "bce" else CCE_LOGITS), model.output
        else:
            raise Unsupported(f"loss {loss.name} without its fused head")
        self.lop = lop
        self.off, self.size, self.hooks = {}, {}, []
        bld = Builder(self, model)
        for n in model.order:
            if n == stop:
                break
            layer = model.layers[n]
            if getattr(type(layer), "fused", None) is None:
                raise Unsupported(f"layer type {layer.type}")
            bld.node, bld.layer, bld.srcs = n, layer, model.srcs[n]
            layer.fused(bld)
        rows, written = bld.rows, set()                      # gradient buffers a later-run row writes first
        head = model.srcs[stop][0] if stop else model.output
        self.out_node = head
        # gradient flags, deciding in backward (reverse) order which row writes a buffer first
        for r in reversed(rows):
            src = r.pop()
            if src is None or not model.trains[src]:
                r.append(0)
            else:
                buf = self.off[src]
                r.append(2 if buf in written else 1)
                written.add(buf)
        c = int(np.prod(model.infos[head].shape))
        bld.node = "/labels"
        bld._alloc("/labels", c)
        at = bld.at
        rows.append([lop, self.off[head], self.off["/labels"], 0, c] + [0] * (WIDTH - 5))
        rows.append([OPT, 0, 0, 0, OPTS[opt.name]] + [0] * (WIDTH - 5))
        self.code = np.array(rows, np.int64)
        self.per_sample, self.out_size = at, c
        cfg = opt.config
        self.hp = np.array([opt.weight_decay, cfg["lr"], cfg.get("beta", cfg.get("beta1", 0.0)),
                            cfg.get("beta2", 0.0), cfg.get("eps", 0.0)], np.float64)
        self.dtype = dt = model.dtype
        self.acts = self.dacts = np.zeros(0, dt)
        self.none_f, self.none_i = np.zeros(0, dt), np.zeros(0, np.int64)
        self.inp = model.layers[model.inputs[0]]
        self.standardize, self.in_shape = bool(self.inp.p), model.input_shape
        self.out_off, self.out_shape = self.off[head], model.infos[head].shape

    def step(self, xb, yb):
        """(loss, output or logits (a view valid until the next step), |grad|²); None: use the per-layer path."""
        m, dt = self.model, self.dtype
        if xb.dtype != dt or not xb.flags.c_contiguous or not xb.flags.writeable:
            xb = np.array(xb, dtype=dt)
        if self.standardize or xb.shape[1:] != self.in_shape:
            xb = self.inp.forward(xb)                        # standardisation; the shape error names the Input
        nb = xb.shape[0]
        yi, yf = self.none_i, self.none_f
        if yb.dtype == np.int64 and yb.flags.c_contiguous and yb.flags.writeable:
            yi = yb.reshape(-1)
        elif self.lop == CCE_LOGITS:
            yi = np.array(yb, dtype=np.int64).reshape(-1)
        else:
            yf = np.array(yb, dtype=dt).reshape(-1)
        if yi.size + yf.size != nb * (1 if self.lop == CCE_LOGITS else self.out_size):
            return None                                      # the per-layer loss says what does not fit
        if nb * self.per_sample > self.acts.size:
            self.acts = np.zeros(nb * self.per_sample, dt)
            self.dacts = np.zeros(nb * self.per_sample, dt)
        acts = self.acts
        for fn in self.hooks:
            fn(acts, nb)
        opt = self.opt
        if opt.slots is None:
            opt.slots = [np.zeros_like(m.theta) for _ in range(opt.n_slots)]
        slots = opt.slots + [self.none_f] * (2 - opt.n_slots)
        status, loss, gn = train_step(self.code, nb, xb.reshape(-1), yf, yi, acts, self.dacts, m.theta, m.grad,
                                      m.decay, self.hp, opt.k + 1, slots[0], slots[1])
        if status == BAD_LABEL:
            return None                                      # the per-layer loss raises the clear error
        if status == OK:
            opt.k += 1
        o = self.out_off * nb
        return loss, acts[o:o + nb * self.out_size].reshape((nb,) + self.out_shape), gn


def compile(model, loss, fused, opt):
    """A FusedStep for this model, or None when a node, the loss or the optimizer is not supported."""
    try:
        return FusedStep(model, loss, fused, opt)
    except Unsupported:
        return None
