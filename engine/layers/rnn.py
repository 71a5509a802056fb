"""Single-layer RNN (spec §4): a_t = W h_{t−1} + U x_t + b, h_t = f(a_t); BPTT as the δ_t recurrence; masks as the
Recurrent base; bidirectional and reverse through its jobs."""
import numpy as np
from .._jit import njit

from ..blas import gemm
from ..hparams import HP
from .base import Param, register
from .. import parallel
from .recurrent import Recurrent, Taps, tanh32

TANH, RELU = 0, 1


@njit(cache=True, nogil=True, error_model="numpy")
def _rnn_forward(x, lo, hi, WUb, h0, mask, act, fast, Zf):
    """The whole time loop of sequences lo … hi−1, time-major. x (T, B, D) (any strides), WUb (H+D+1, H) =
    [Wᵀ; Uᵀ; bᵀ], h0 (H,), mask (T, B); fast: float32 tanh. Zf: flat buffer holding this slice's rows
    Z (T+1, hi−lo, H+D+1) from element (T+1)·(H+D+1)·lo on: z_s = [h_s | x_s | 1] is what step s multiplies by WUb
    (h_s the state before step s: h0, then the state after every step; a padded step keeps the previous state);
    Z[T] = [h_T | 0]."""
    t, _, d = x.shape
    h = WUb.shape[1]
    n, b = h + d + 1, hi - lo
    Z = Zf[(t + 1) * n * lo:(t + 1) * n * hi].reshape((t + 1, b, n))
    for s in range(t + 1):
        for i in range(b):
            z = Z[s, i]
            for k in range(d):
                z[h + k] = x[s, lo + i, k] if s < t else 0
            z[h + d] = 1 if s < t else 0
            if s == 0:
                for k in range(h):
                    z[k] = h0[k]
    for s in range(t):
        gemm(Z[s], WUb, Z[s + 1, :, :h])                            # (b, H+D+1) @ (H+D+1, H): W h_{t−1} + U x_t + b
        for i in range(b):
            y = Z[s + 1, i]                                         # (H+D+1,): the loops below read the first H
            if act == RELU:
                for k in range(h):
                    v = y[k]
                    y[k] = v if v > 0 else v * 0
            elif fast:
                for k in range(h):
                    y[k] = tanh32(y[k])
            else:
                for k in range(h):
                    y[k] = np.tanh(y[k])
        for i in range(b):                                          # padded steps keep the state (a pass of its
            if not mask[s, lo + i]:                                 # own: the loops above vectorise)
                for k in range(h):
                    Z[s + 1, i, k] = Z[s, i, k]


@njit(cache=True, nogil=True, error_model="numpy")
def _rnn_backward(dy, last, lo, hi, W, Zf, mask, act, dAf, Gf, g, keep, dWUb, need_g0):
    """δ_t = (∇_{h_t}L + Wᵀ δ_{t+1}) ⊙ f'(a_t) of sequences lo … hi−1, from t = T−1 down to 0, time-major, then
    their share of the weights' gradient Σ_t δ_t z_tᵀ = [∂L/∂W | ∂L/∂U | ∂L/∂b] as one GEMM.

    dy (T, B, H) upstream gradient of the outputs, or (1, B, H) for the (H,) output at step last[i] (any strides);
    last (B,): −1 when every step is an output; Zf: the forward's rows (_rnn_forward); dAf, Gf: flat whole-batch
    buffers for this slice's δ (T, hi−lo, H) from element T·H·lo on and ∇_{h_t}L in total, the same when kept or
    (1, hi−lo, H) scratch from element H·lo on (both 0 at padded steps); g (B, H) ← the gradient reaching h_0 when need_g0;
    keep (B, H) scratch; dWUb (H+D+1, H) ← the slice's share, transposed."""
    t, h, n, b = mask.shape[0], W.shape[0], dWUb.shape[0], hi - lo
    Z = Zf[(t + 1) * n * lo:(t + 1) * n * hi].reshape((t + 1, b, n))
    tg = Gf.size // (g.shape[0] * h)                                # T when kept, else 1
    dA = dAf[t * h * lo:t * h * hi].reshape((t, b, h))
    G = Gf[tg * h * lo:tg * h * hi].reshape((tg, b, h))
    gs, zero = g[lo:hi], np.zeros(h, g.dtype)
    for i in range(b):
        for k in range(h):
            gs[i, k] = 0
    for s in range(t - 1, -1, -1):
        d, gt = dA[s], G[s if tg > 1 else 0]
        for i in range(b):                                          # ∂L/∂h_s in total, then δ_s
            j = lo + i
            di, gti, gi, hn = d[i], gt[i], gs[i], Z[s + 1, i]
            up = dy[s, j] if last[j] < 0 else dy[0, j] if last[j] == s else zero   # the output's own gradient
            if act == TANH:
                for k in range(h):
                    v = gi[k] + up[k]
                    gti[k] = v
                    di[k] = v * (1 - hn[k] * hn[k])
            else:
                for k in range(h):
                    v = gi[k] + up[k]
                    gti[k] = v
                    di[k] = v if hn[k] > 0 else v * 0
        for i in range(b):                                          # padded steps: identity, the gradient
            if not mask[s, lo + i]:                                 # passes through (a pass of its own: the
                for k in range(h):                                  # loops above vectorise)
                    keep[lo + i, k] = gs[i, k]
                    d[i, k] = 0
                    gt[i, k] = 0
        if s == 0 and not need_g0:
            break
        gemm(d, W, gs)                                              # (b, H) @ (H, H): Wᵀ δ_t per row
        for i in range(b):                                          # padded steps pass g on unchanged
            if not mask[s, lo + i]:
                for k in range(h):
                    gs[i, k] = keep[lo + i, k]
    gemm(Z[:t].reshape(t * b, n), dA.reshape(t * b, h), dWUb, ta=True)   # (H+D+1, T·b) @ (T·b, H)


def _split_bias(b):
    return b, np.zeros_like(b)


@register
class RNN(Recurrent):
    doc = ("Recurrent layer a_t = W h_{t−1} + U x_t + b, h_t = f(a_t): (T, D) → (T, H) with return_sequences, "
           "else (H,) = the state at each sequence's last valid step; padded steps keep the state")
    state_formula = "h_t = {f}(W·h_(t−1) + U·x_t + b)"
    w_in = "U"
    fused = None          # the per-layer path runs it (numba time loops)
    hparams = Recurrent.common[:1] + (HP("activation", "choice", "tanh", choices=("tanh", "relu"),
                                         doc="f in h_t = f(a_t)"),) + Recurrent.common[1:]

    def direction_params(self, d, h):
        return {"U": Param((h, d), "glorot_uniform", decay=True),     # input weights (H, D)
                "W": Param((h, h), "glorot_uniform", decay=True),     # recurrent weights (H, H)
                "b": Param((h,), "zeros")}

    def formulas(self, in_shapes):
        (t, d), h = in_shapes[0], self.config["units"]
        two = "2·" if self.dirs == 2 else ""
        return {"shape": self._shape_line(in_shapes),
                "params": self._params_line(in_shapes, "H·D + H·H + H", f"{h}·{d} + {h}·{h} + {h}", "H", f"{h}"),
                "macs": f"{two}T·(H·D + H·H) = {two}{t}·({h}·{d} + {h}·{h}) = {self.macs(in_shapes):,}"}

    @property
    def act(self):
        return TANH if self.config["activation"] == "tanh" else RELU

    def forward(self, x, training=False):
        """One direction reading forwards: every batch slice's time loop on the granted threads over whole-batch
        buffers (no per-slice arrays); otherwise the Recurrent base's jobs (run, run_back)."""
        h, (b, t, d) = self.config["units"], x.shape
        self.wub = {}                                                        # per direction [Wᵀ; Uᵀ; bᵀ] (H+D+1, H)
        for sfx in self.suffixes:
            w = self.wub[sfx] = np.empty((h + d + 1, h), x.dtype)
            w[:h], w[h:h + d], w[h + d] = self.p["W" + sfx].T, self.p["U" + sfx].T, self.p["b" + sfx]
        self.whole = None
        if self.backs != (False,):
            return super().forward(x, training)
        m = self.valid(b, t)
        dt, n = x.dtype, h + d + 1
        at = self.__dict__.setdefault("_at", {}).get(b)                      # slice boundaries, fixed by b
        if at is None:
            at = self._at[b] = np.array([0] + [hi for _, hi in self.parts(b)], np.int64)
        xt, Zf = x.transpose(1, 0, 2), np.empty((t + 1) * b * n, dt)         # (T, B, D) view; slices' rows [h | x | 1]
        h0, wub, act, mask = self.state("h0", "", dt), self.wub[""], self.act, self.mask
        parallel.run(lambda j: _rnn_forward(xt, at[j], at[j + 1], wub, h0, mask, act, dt == np.float32, Zf),
                     range(len(at) - 1))
        self.whole = (xt, at, Zf)
        Zs = [Zf[(t + 1) * n * lo:(t + 1) * n * hi].reshape(t + 1, hi - lo, n) for lo, hi in zip(at[:-1], at[1:])]
        states = lambda: np.concatenate([z[1:, :, :h] for z in Zs], axis=1).transpose(1, 0, 2)   # (B, T, H)
        self.taps = Taps(hidden=lambda: states() * (1 if m is None else m[:, :, None]))   # 0 at padded steps
        if self.config["return_sequences"]:
            return self.taps["hidden"]
        if m is None:
            return np.concatenate([z[t, :, :h] for z in Zs])                 # (B, H)
        return np.concatenate([z[self.last[lo:hi] + 1, np.arange(hi - lo), :h]                # (B, H)
                               for z, lo, hi in zip(Zs, at[:-1], at[1:])])

    def backward(self, dy):
        if self.whole is None:
            return super().backward(dy)
        xt, at, Zf = self.whole
        (t, b, d), h, dt = xt.shape, self.config["units"], xt.dtype
        n = h + d + 1
        if self.config["return_sequences"]:
            last, dyt = np.full(b, -1, np.int64), dy.transpose(1, 0, 2)       # (T, B, H)
        else:
            last, dyt = self.last, np.array(dy, dt).reshape(1, b, h)          # (1, B, H), kept for the tap
        dAf = np.empty(t * b * h, dt)                                         # δ slice by slice
        G, g, keep = np.empty(b * h, dt), np.empty((b, h), dt), np.empty((b, h), dt)   # G: ∂L/∂h_t scratch
        dW = np.empty((len(at) - 1, n, h), dt)                               # [∂W | ∂U | ∂b]ᵀ per slice
        W, act, mask, U, g0 = self.p["W"].astype(dt), self.act, self.mask, self.p["U"], "h0" in self.g
        dx = np.empty((t, b, d), dt) if self.need_dx else None               # (T, B, D)

        def go(j):
            lo, hi = at[j], at[j + 1]
            _rnn_backward(dyt, last, lo, hi, W, Zf, mask, act, dAf, G, g, keep, dW[j], g0)
            if dx is not None:                                                # (T·b, H) @ (H, D)
                dx[:, lo:hi] = (dAf[t * h * lo:t * h * hi].reshape(t * (hi - lo), h) @ U).reshape(t, hi - lo, d)
        parallel.run(go, range(len(at) - 1))
        tot = dW[0]
        for j in range(1, len(dW)):                                           # the slices' shares in their order
            tot += dW[j]
        self.g["W"][...], self.g["U"][...], self.g["b"][...] = tot[:h].T, tot[h:h + d].T, tot[h + d]
        if g0:
            self.g["h0"][...] = g.sum(axis=0)

        def grad_hidden():                                                    # the δ recurrence again, keeping G
            Gt, scratch = np.empty(t * b * h, dt), [np.empty((b, h), dt) for _ in range(3)]
            _rnn_backward(dyt, last, 0, b, W, Zf, mask, act, np.empty(t * b * h, dt), Gt, scratch[1], scratch[2],
                          np.empty((n, h), dt), False)
            return Gt.reshape(t, b, h).transpose(1, 0, 2)                     # (B, T, H)
        self.taps["grad_hidden"] = grad_hidden
        return (None if dx is None else dx.transpose(1, 0, 2),)              # (B, T, D)

    def run(self, sfx, xt, mask):
        t, b, d = xt.shape
        h = self.config["units"]
        Zf = np.empty((t + 1) * b * (h + d + 1), xt.dtype)                   # rows [h_t | x_t | 1], t = 0 … T
        _rnn_forward(xt, 0, b, self.wub[sfx], self.state("h0", sfx, xt.dtype), mask, self.act,
                     xt.dtype == np.float32, Zf)
        return Zf.reshape(t + 1, b, h + d + 1)[:, :, :h], {"Z": Zf}          # states h_0 … h_T (T+1, b, H)

    def run_back(self, sfx, xt, mask, S, cache, dy, last):
        t, b, d = xt.shape
        h, dt = self.config["units"], xt.dtype
        dA, D = np.empty(t * b * h, dt), np.empty(t * b * h, dt)
        g, keep, dWUb = np.empty((b, h), dt), np.empty((b, h), dt), np.empty((h + d + 1, h), dt)
        g0 = "h0" + sfx in self.g
        _rnn_backward(dy, last, 0, b, self.weight("W" + sfx, dt), cache["Z"], mask, self.act, dA, D, g, keep, dWUb, g0)
        grads = {"W" + sfx: dWUb[:h].T, "U" + sfx: dWUb[h:h + d].T, "b" + sfx: dWUb[h + d]}   # Σ_t δ_t z_tᵀ
        if g0:
            grads["h0" + sfx] = g.sum(axis=0)
        return dA.reshape(t, b, h), D.reshape(t, b, h), grads

    def torch_step(self, x, st, p, torch):
        f = torch.tanh if self.config["activation"] == "tanh" else torch.relu
        return [f(x @ p["U"].T + st[0] @ p["W"].T + p["b"])]

    # ---- exporters ----
    @property
    def onnx_attrs(self):
        return {"activations": ["Tanh" if self.config["activation"] == "tanh" else "Relu"] * self.dirs}

    def onnx_weights(self, sfx):
        p = self.p
        return p["U" + sfx], p["W" + sfx], np.concatenate([p["b" + sfx], np.zeros_like(p["b" + sfx])])

    @property
    def torch_opts(self):
        return f", nonlinearity={self.config['activation']!r}" if self.config["activation"] != "tanh" else ""

    def torch_names(self):
        return {"U": "weight_ih", "W": "weight_hh", "b": (("bias_ih", "bias_hh"), _split_bias, lambda bi, bh: bi + bh)}

    @classmethod
    def samples(cls):
        return Recurrent.samples() + [({"units": 4, "activation": "relu", "return_sequences": True, "learn_h0": True},
                                       [(5, 3)], {"mask": True})]
