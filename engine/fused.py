"""Fused training step: a graph compiled once (in Python) into an instruction table that ONE generic
numba kernel runs as forward + loss + backward + optimizer over flat buffers (no per-graph JIT).

The per-layer path (Model.forward/backward) stays the reference; Trainer uses this one when every node
is supported and falls back otherwise. Activations live in one flat buffer: node n of the batch holds
acts[off[n]·B : (off[n] + size[n])·B], its gradient the same range of dacts.
"""
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


class Unsupported(Exception):
    """The graph, loss or optimizer has something the fused kernel does not run."""


# ---- kernels ----
@njit(cache=True, nogil=True)
def _put(d, i, v, acc):
    if acc:
        d[i] += v
    else:
        d[i] = v


@njit(cache=True, nogil=True)
def _dense_fwd(x, W, b, y, has_b):
    """y = x Wᵀ + b for x (M, F), W (U, F), y (M, U)."""
    m, f = x.shape
    u = W.shape[0]
    if m * f * u >= SMALL:
        np.dot(x, W.T, y)                                    # (M, F) @ (F, U)
    else:
        for i in range(m):
            for j in range(u):
                s = x[i, 0] * W[j, 0]
                for c in range(1, f):
                    s += x[i, c] * W[j, c]
                y[i, j] = s
    if has_b:
        for i in range(m):
            for j in range(u):
                y[i, j] += b[j]


@njit(cache=True, nogil=True)
def _dense_bwd(x, W, dy, dW, db, dx, has_b, flag):
    """dW = dyᵀ x, db = Σ dy, and dx = dy W written (flag 1) or added (flag 2)."""
    m, f = x.shape
    u = W.shape[0]
    big = m * f * u >= SMALL
    if big:
        np.dot(dy.T, x, dW)                                  # (U, M) @ (M, F)
    else:
        dW[:, :] = 0
        for i in range(m):
            for j in range(u):
                g = dy[i, j]
                for c in range(f):
                    dW[j, c] += g * x[i, c]
    if has_b:
        for j in range(u):
            db[j] = 0
        for i in range(m):
            for j in range(u):
                db[j] += dy[i, j]
    if flag == 0:
        return
    if big:
        if flag == 1:
            np.dot(dy, W, dx)                                # (M, U) @ (U, F)
        else:
            dx += np.dot(dy, W)
        return
    if flag == 1:
        dx[:, :] = 0
    for i in range(m):
        for j in range(u):
            g = dy[i, j]
            for c in range(f):
                dx[i, c] += g * W[j, c]


@njit(cache=True, nogil=True)
def _forward(op, r, nb, acts):
    a, b, o, n1, n2 = r[1] * nb, r[2] * nb, r[3] * nb, r[4], r[5]
    n = n1 * nb
    if op == RELU:
        for i in range(n):
            v = acts[a + i]
            acts[o + i] = v if v > 0 else v * 0
    elif op == SIGMOID:
        sigmoid(acts[a:a + n], acts[o:o + n])
    elif op == TANH:
        for i in range(n):
            acts[o + i] = np.tanh(acts[a + i])
    elif op == SOFTMAX:
        m = n1 * nb
        softmax_rows(acts[a:a + m * n2].reshape((m, n2)), acts[o:o + m * n2].reshape((m, n2)))
    elif op == DROPOUT:
        for i in range(n):
            acts[o + i] = acts[a + i] * acts[b + i]
    elif op == COPY:
        acts[o:o + n] = acts[a:a + n]
    elif op == ADDTO:
        for i in range(n):
            acts[o + i] += acts[a + i]


@njit(cache=True, nogil=True)
def _backward(op, r, nb, acts, dacts):
    a, b, o, n1, n2, flag = r[1] * nb, r[2] * nb, r[3] * nb, r[4], r[5], r[9]
    if flag == 0:
        return
    acc = flag == 2
    n = n1 * nb
    if op == RELU:
        for i in range(n):
            g = dacts[o + i]
            _put(dacts, a + i, g if acts[o + i] > 0 else g * 0, acc)
    elif op == SIGMOID:
        for i in range(n):
            y = acts[o + i]
            _put(dacts, a + i, dacts[o + i] * y * (1 - y), acc)
    elif op == TANH:
        for i in range(n):
            y = acts[o + i]
            _put(dacts, a + i, dacts[o + i] * (1 - y * y), acc)
    elif op == SOFTMAX:
        for row in range(n1 * nb):
            s = 0.0
            base = row * n2
            for j in range(n2):
                s += dacts[o + base + j] * acts[o + base + j]
            for j in range(n2):
                _put(dacts, a + base + j, acts[o + base + j] * (dacts[o + base + j] - s), acc)
    elif op == DROPOUT:
        for i in range(n):
            _put(dacts, a + i, dacts[o + i] * acts[b + i], acc)
    elif op == COPY or op == ADDTO:
        for i in range(n):
            _put(dacts, a + i, dacts[o + i], acc)


@njit(cache=True, nogil=True)
def _loss(r, nb, acts, dacts, yf, yi):
    """Loss value; writes dL/d(input) of the loss row. NaN with a negative code means a bad label."""
    op, a, c = r[0], r[1] * nb, r[4]
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def train_step(code, nb, x, yf, yi, acts, dacts, theta, grad, decay, hp, k, s1, s2):
    """One step for the instruction table `code` on a batch of nb samples; returns (status, loss, |grad|²)."""
    rows = code.shape[0]
    last = 0
    for t in range(rows):
        r = code[t]
        op = r[0]
        if op == INPUT:
            o = r[3] * nb
            acts[o:o + r[4] * nb] = x
        elif op == DENSE:
            m, f, u = r[4] * nb, r[5], r[6]
            a, o, pw = r[1] * nb, r[3] * nb, r[7]
            pb = max(r[8], 0)
            _dense_fwd(acts[a:a + m * f].reshape((m, f)), theta[pw:pw + u * f].reshape((u, f)),
                       theta[pb:pb + u], acts[o:o + m * u].reshape((m, u)), r[8] >= 0)
        elif op < BCE_LOGITS:
            _forward(op, r, nb, acts)
        else:
            last = t
            break
    lr = code[last]
    if lr[0] == CCE_LOGITS:
        for i in range(nb):
            if yi[i] < 0 or yi[i] >= lr[4]:
                return BAD_LABEL, np.nan, np.nan
    loss = _loss(lr, nb, acts, dacts, yf, yi)
    for t in range(last - 1, -1, -1):
        r = code[t]
        op = r[0]
        if op == DENSE:
            m, f, u = r[4] * nb, r[5], r[6]
            a, o, pw = r[1] * nb, r[3] * nb, r[7]
            pb = max(r[8], 0)
            _dense_bwd(acts[a:a + m * f].reshape((m, f)), theta[pw:pw + u * f].reshape((u, f)),
                       dacts[o:o + m * u].reshape((m, u)), grad[pw:pw + u * f].reshape((u, f)),
                       grad[pb:pb + u], dacts[a:a + m * f].reshape((m, f)), r[8] >= 0, r[9])
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
        rows.append([lop, self.off[head], 0, 0, c] + [0] * (WIDTH - 5))
        rows.append([OPT, 0, 0, 0, OPTS[opt.name]] + [0] * (WIDTH - 5))
        self.code = np.array(rows, np.int64)
        self.per_sample, self.out_size = at, c
        cfg = opt.config
        self.hp = np.array([opt.weight_decay, cfg["lr"], cfg.get("beta", cfg.get("beta1", 0.0)),
                            cfg.get("beta2", 0.0), cfg.get("eps", 0.0)], np.float64)
        dt = model.dtype
        self.acts = self.dacts = np.zeros(0, dt)
        self.nb = 0
        self.none_f, self.none_i = np.zeros(0, dt), np.zeros(0, np.int64)
        self.inp = model.layers[model.inputs[0]]

    def _buffers(self, nb):
        if nb * self.per_sample > self.acts.size:
            self.acts = np.zeros(nb * self.per_sample, self.model.dtype)
            self.dacts = np.zeros(nb * self.per_sample, self.model.dtype)

    def step(self, xb, yb):
        """(loss, output or logits (a view, valid until the next step), |grad|²), or None to use the per-layer path."""
        m, dt = self.model, self.model.dtype
        x = self.inp.forward(np.ascontiguousarray(xb, dtype=dt))        # shape check, standardisation
        nb = len(x)
        x = x.reshape(-1)
        if not x.flags.writeable:
            x = x.copy()
        yi, yf = self.none_i, self.none_f
        if self.lop == CCE_LOGITS:
            yi = np.ascontiguousarray(yb, dtype=np.int64).reshape(-1)
            if yi.size != nb:
                return None
        else:
            yf = np.ascontiguousarray(yb, dtype=dt).reshape(-1)
            if yf.size != nb * self.out_size:
                return None
        if not yf.flags.writeable or not yi.flags.writeable:
            yf, yi = yf.copy(), yi.copy()
        self._buffers(nb)
        acts = self.acts
        for layer, off, size, shape in self.drops:          # same draws as Dropout.forward
            rate = layer.config["rate"]
            mask = acts[off * nb:(off + size) * nb].reshape((nb,) + shape)
            np.multiply(layer.rng.random(mask.shape, dtype=dt) >= rate, dt.type(1 / (1 - rate)), out=mask)
        opt = self.opt
        if opt.slots is None:
            opt.slots = [np.zeros_like(m.theta) for _ in range(opt.n_slots)]
        s1 = opt.slots[0] if opt.n_slots > 0 else self.none_f
        s2 = opt.slots[1] if opt.n_slots > 1 else self.none_f
        status, loss, gn = train_step(self.code, nb, x, yf, yi, acts, self.dacts, m.theta, m.grad, m.decay,
                                      self.hp, opt.k + 1, s1, s2)
        if status == BAD_LABEL:
            return None                                      # the per-layer loss raises the clear error
        if status == OK:
            opt.k += 1
        o = self.off[self.out_node] * nb
        out = acts[o:o + nb * self.out_size].reshape((nb,) + m.infos[self.out_node].shape)
        return loss, out, gn


def compile(model, loss, fused, opt):
    """A FusedStep for this model, or None when a node, the loss or the optimizer is not supported."""
    try:
        return FusedStep(model, loss, fused, opt)
    except Unsupported:
        return None
