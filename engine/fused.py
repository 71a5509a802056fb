"""Fused training step: a graph compiled once (in Python) into an instruction table that ONE generic
numba kernel runs as forward + loss + backward + optimizer over flat buffers (no per-graph JIT).

The per-layer path (Model.forward/backward) stays the reference; Trainer uses this one when every node
is supported and falls back otherwise. Activations live in one flat buffer: node n of the batch holds
acts[off[n]·B : (off[n] + size[n])·B], its gradient the same range of dacts.
"""
import importlib.util

import numpy as np
from numba import njit

from . import losses
from .kernels import sigmoid, softmax_rows, sq_norm
from .optimizers import _adagrad, _adam, _momentum, _rmsprop, _sgd

# opcodes; a row is (op, a, b, out, n1, n2, n3, p1, p2, flag) with act offsets per sample
INPUT, DENSE, RELU, SIGMOID, TANH, SOFTMAX, DROPOUT, COPY, ADDTO = range(9)
BCE_LOGITS, CCE_LOGITS, MSE = 20, 21, 22
OPT = 30
OPTS = {"gd": 0, "sgd": 0, "momentum": 1, "adagrad": 2, "rmsprop": 3, "adam": 4}
ACT_OPS = {"ReLU": RELU, "Sigmoid": SIGMOID, "Tanh": TANH}
ALIASES = ("Flatten", "Reshape")
SMALL = 4096            # M·F·U below this: plain loops beat a BLAS call
OK, NOT_FINITE, BAD_LABEL = 0, 1, 2
WIDTH = 10


_HAVE_SCIPY = importlib.util.find_spec("scipy") is not None     # numba's np.dot calls BLAS through SciPy


class Unsupported(Exception):
    """The graph, loss or optimizer has something the fused kernel does not run."""


# ---- kernels (explicit loops instead of slice assignment: far less code to compile) ----
@njit(cache=True, nogil=True, error_model="numpy")
def _zero(a):
    for i in range(a.size):
        a[i] = 0


@njit(cache=True, nogil=True, error_model="numpy")
def _copy(src, dst):
    for i in range(dst.size):
        dst[i] = src[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _dense_fwd(acts, a, o, theta, pw, pb, m, f, u):
    """y = x Wᵀ + b: x = acts[a:] (M, F), W = theta[pw:] (U, F), b = theta[pb:] (U,) if pb ≥ 0, y = acts[o:] (M, U)."""
    if m * f * u >= SMALL:
        np.dot(acts[a:a + m * f].reshape((m, f)), theta[pw:pw + u * f].reshape((u, f)).T,
               acts[o:o + m * u].reshape((m, u)))           # (M, F) @ (F, U)
    else:
        for i in range(m):
            for j in range(u):
                s = acts[a + i * f] * theta[pw + j * f]
                for c in range(1, f):
                    s += acts[a + i * f + c] * theta[pw + j * f + c]
                acts[o + i * u + j] = s
    if pb >= 0:
        b = theta[pb:pb + u]
        for i in range(m):
            y = acts[o + i * u:o + i * u + u]
            for j in range(u):
                y[j] += b[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _dense_bwd(acts, dacts, a, o, theta, grad, pw, pb, m, f, u, flag):
    """dW = dyᵀ x, db = Σ dy, and dx = dy W written (flag 1) or added (flag 2); same layout as _dense_fwd."""
    if m * f * u >= SMALL:
        x = acts[a:a + m * f].reshape((m, f))
        dy = dacts[o:o + m * u].reshape((m, u))
        W = theta[pw:pw + u * f].reshape((u, f))
        np.dot(dy.T, x, grad[pw:pw + u * f].reshape((u, f)))   # (U, M) @ (M, F)
        if flag != 0:
            dx = dacts[a:a + m * f]
            out = dx if flag == 1 else np.empty(m * f, dx.dtype)
            np.dot(dy, W, out.reshape((m, f)))               # (M, U) @ (U, F)
            if flag == 2:
                for i in range(m * f):
                    dx[i] += out[i]
    else:
        _zero(grad[pw:pw + u * f])
        for i in range(m):
            for j in range(u):
                g = dacts[o + i * u + j]
                for c in range(f):
                    grad[pw + j * f + c] += g * acts[a + i * f + c]
        if flag == 1:
            _zero(dacts[a:a + m * f])
        if flag != 0:
            for i in range(m):
                for j in range(u):
                    g = dacts[o + i * u + j]
                    for c in range(f):
                        dacts[a + i * f + c] += g * theta[pw + j * f + c]
    if pb >= 0:
        db = grad[pb:pb + u]
        _zero(db)
        for i in range(m):
            dy = dacts[o + i * u:o + i * u + u]
            for j in range(u):
                db[j] += dy[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _forward(op, r, nb, acts):
    """Forward of one elementwise/softmax/merge row (separate slices, so that the loops vectorise)."""
    n, n2 = r[4] * nb, r[5]
    size = n * (n2 if op == SOFTMAX else 1)
    a, o = r[1] * nb, r[3] * nb
    x, y = acts[a:a + size], acts[o:o + size]
    if op == RELU:
        for i in range(n):
            v = x[i]
            y[i] = v if v > 0 else v * 0
    elif op == SIGMOID:
        sigmoid(x, y)
    elif op == TANH:
        for i in range(n):
            y[i] = np.tanh(x[i])
    elif op == SOFTMAX:
        softmax_rows(x.reshape((n, n2)), y.reshape((n, n2)))
    elif op == DROPOUT:
        mask = acts[r[2] * nb:r[2] * nb + n]
        for i in range(n):
            y[i] = x[i] * mask[i]
    elif op == COPY:
        _copy(x, y)
    elif op == ADDTO:
        for i in range(n):
            y[i] += x[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _backward(op, r, nb, acts, dacts):
    """dL/d(input) of one row, written (flag 1) or added (flag 2) into dacts."""
    flag = r[9]
    if flag == 0:
        return
    n, n2 = r[4] * nb, r[5]
    size = n * (n2 if op == SOFTMAX else 1)
    a, o = r[1] * nb, r[3] * nb
    y, dy, dx = acts[o:o + size], dacts[o:o + size], dacts[a:a + size]
    if flag == 1 and op != SOFTMAX:
        _zero(dx)
    if op == RELU:
        for i in range(n):
            dx[i] += dy[i] if y[i] > 0 else dy[i] * 0
    elif op == SIGMOID:
        for i in range(n):
            dx[i] += dy[i] * y[i] * (1 - y[i])
    elif op == TANH:
        for i in range(n):
            dx[i] += dy[i] * (1 - y[i] * y[i])
    elif op == SOFTMAX:
        for row in range(n):
            b = row * n2
            s = 0.0
            for j in range(n2):
                s += dy[b + j] * y[b + j]
            for j in range(n2):
                v = y[b + j] * (dy[b + j] - s)
                dx[b + j] = v if flag == 1 else dx[b + j] + v
    elif op == DROPOUT:
        mask = acts[r[2] * nb:r[2] * nb + n]
        for i in range(n):
            dx[i] += dy[i] * mask[i]
    elif op == COPY or op == ADDTO:
        for i in range(n):
            dx[i] += dy[i]


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
    total = 0.0
    for i in range(nb * c):
        d = acts[a + i] - yf[i]
        total += d * d
        dacts[a + i] = (2.0 / nb) * d
    return total / nb


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
            _copy(x, acts[o:o + r[4] * nb])
        elif op == DENSE:
            _dense_fwd(acts, r[1] * nb, r[3] * nb, theta, r[7], r[8], r[4] * nb, r[5], r[6])
        elif op < BCE_LOGITS:
            _forward(op, r, nb, acts)
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
        if op == DENSE:
            _dense_bwd(acts, dacts, r[1] * nb, r[3] * nb, theta, grad, r[7], r[8], r[4] * nb, r[5], r[6], r[9])
        elif op != INPUT:
            _backward(op, r, nb, acts, dacts)
    gn = sq_norm(grad)
    if not (np.isfinite(loss) and np.isfinite(gn)):
        return NOT_FINITE, loss, gn
    _optimize(code[last + 1], theta, grad, decay, hp, k, s1, s2)
    return OK, loss, gn


# ---- compiling a model (plain Python, once per trainer) ----
class FusedStep:
    """A model + loss + optimizer as one instruction table; step(xb, yb) -> (loss, out, |grad|²) or None."""

    def __init__(self, model, loss, fused, opt):
        self.model, self.loss, self.opt = model, loss, opt
        if not _HAVE_SCIPY:
            raise Unsupported("numba's np.dot needs SciPy")
        if model.dtype not in (np.float32, np.float64):
            raise Unsupported(f"dtype {model.dtype}")
        if opt.name not in OPTS:
            raise Unsupported(f"optimizer {opt.name}")
        if loss.name == "mse":
            lop, stop = MSE, None
        elif fused and loss.name in ("bce", "cce"):
            lop, stop = (BCE_LOGITS if loss.name == "bce" else CCE_LOGITS), model.output
        else:
            raise Unsupported(f"loss {loss.name} without its fused head")
        self.lop = lop
        self.off, self.size, rows, self.drops = {}, {}, [], []
        at = 0

        def alloc(n, size):
            nonlocal at
            self.off[n], self.size[n] = at, size
            at += size

        written = set()                                      # gradient buffers a later-run row writes first
        for n in model.order:
            if n == stop:
                break
            layer, srcs, t = model.layers[n], model.srcs[n], model.graph.nodes[n].type
            size = int(np.prod(model.infos[n].shape))
            if t == "Input":
                alloc(n, size)
                rows.append([INPUT, 0, 0, self.off[n], size])
            elif t in ALIASES or (t == "Dropout" and layer.config["rate"] == 0.0):
                self.off[n], self.size[n] = self.off[srcs[0]], size
            elif t == "Dense":
                alloc(n, size)
                f = model.infos[srcs[0]].shape[-1]
                u = layer.config["units"]
                sw = model.slices[f"{n}/W"].start
                sb = model.slices[f"{n}/b"].start if "b" in layer.p else -1
                rows.append([DENSE, self.off[srcs[0]], 0, self.off[n], size // u, f, u, sw, sb, srcs[0]])
            elif t in ACT_OPS:
                alloc(n, size)
                rows.append([ACT_OPS[t], self.off[srcs[0]], 0, self.off[n], size, 0, 0, 0, 0, srcs[0]])
            elif t == "Softmax":
                alloc(n, size)
                c = model.infos[n].shape[-1]
                rows.append([SOFTMAX, self.off[srcs[0]], 0, self.off[n], size // c, c, 0, 0, 0, srcs[0]])
            elif t == "Dropout":
                alloc(n, size)
                alloc(n + "/mask", size)
                self.drops.append((layer, self.off[n + "/mask"], size, model.infos[n].shape))
                rows.append([DROPOUT, self.off[srcs[0]], self.off[n + "/mask"], self.off[n], size, 0, 0, 0, 0,
                             srcs[0]])
            elif t == "Add":
                alloc(n, size)
                for i, s in enumerate(srcs):
                    rows.append([COPY if i == 0 else ADDTO, self.off[s], 0, self.off[n], size, 0, 0, 0, 0, s])
            else:
                raise Unsupported(f"layer type {t}")
        head = model.srcs[stop][0] if stop else model.output
        self.out_node = head
        # gradient flags, deciding in backward (reverse) order which row writes a buffer first
        for r in reversed(rows):
            if r[0] == INPUT:
                r += [0] * (WIDTH - len(r))
                continue
            src = r.pop()
            r += [0] * (WIDTH - 1 - len(r))
            if not model.trains[src]:
                r.append(0)
            else:
                buf = self.off[src]
                r.append(2 if buf in written else 1)
                written.add(buf)
        c = int(np.prod(model.infos[head].shape))
        alloc("/labels", c)
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
        for layer, off, size, shape in self.drops:          # same draws as Dropout.forward
            rate = layer.config["rate"]
            mask = acts[off * nb:(off + size) * nb].reshape((nb,) + shape)
            np.multiply(layer.rng.random(mask.shape, dtype=dt) >= rate, dt.type(1 / (1 - rate)), out=mask)
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
