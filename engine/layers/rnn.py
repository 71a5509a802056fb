"""Single-layer RNN (spec §4): a_t = W h_{t−1} + U x_t + b, h_t = f(a_t); BPTT as the δ_t recurrence; bidirectional
and masks through the Recurrent base."""
import numpy as np
from .._jit import njit

from ..blas import gemm
from ..hparams import HP
from .base import Param, register
from .recurrent import Recurrent, tanh32

TANH, RELU = 0, 1


@njit(cache=True, nogil=True, error_model="numpy")
def _rnn_forward(xt, WUb, h0, mask, act, fast, Z):
    """The whole time loop, time-major. xt (T, B, D), WUb (H+D+1, H) = [Wᵀ; Uᵀ; bᵀ], h0 (H,), mask (T, B); fast:
    float32 tanh. Z (T+1, B, H+D+1) ← the rows z_s = [h_s | x_s | 1] that step s multiplies by WUb (h_s the state
    before step s: h0, then the state after every step; a padded step keeps the previous state); Z[T] = [h_T | 0]."""
    t, b, d = xt.shape
    h = WUb.shape[1]
    for s in range(t + 1):
        for i in range(b):
            z = Z[s, i]
            for k in range(d):
                z[h + k] = xt[s, i, k] if s < t else 0
            z[h + d] = 1 if s < t else 0
            if s == 0:
                for k in range(h):
                    z[k] = h0[k]
    for s in range(t):
        new = Z[s + 1, :, :h]
        gemm(Z[s], WUb, new)                                        # (B, H+D+1) @ (H+D+1, H): W h_{t−1} + U x_t + b
        for i in range(b):
            y, prev = Z[s + 1, i], Z[s, i]                          # (H+D+1,): the loops below read the first H
            if not mask[s, i]:
                for k in range(h):
                    y[k] = prev[k]
            elif act == RELU:
                for k in range(h):
                    v = y[k]
                    y[k] = v if v > 0 else v * 0
            elif fast:
                for k in range(h):
                    y[k] = tanh32(y[k])
            else:
                for k in range(h):
                    y[k] = np.tanh(y[k])


@njit(cache=True, nogil=True, error_model="numpy")
def _rnn_backward(dy, last, W, Z, mask, act, dA, G, g, keep, dWUb):
    """δ_t = (∇_{h_t}L + Wᵀ δ_{t+1}) ⊙ f'(a_t), from t = T−1 down to 0, time-major, then the weights' gradient.

    dy (T, B, H) upstream gradient of the outputs, or (1, B, H) for the (H,) output at step last[i];
    last (B,): −1 when every step is an output; Z: the forward's rows [h_t | x_t | 1]; dA (T, B, H) ← δ_t (0 at
    padded steps); G (T, B, H) ← ∇_{h_t}L in total (0 at padded steps); g (B, H) ← the gradient reaching h_0;
    keep (B, H) scratch; dWUb (H, H+D+1) ← Σ_t δ_t z_tᵀ = [∂L/∂W | ∂L/∂U | ∂L/∂b]."""
    t, b, h = dA.shape
    for i in range(b):
        for k in range(h):
            g[i, k] = 0
    for s in range(t - 1, -1, -1):
        d, gt = dA[s], G[s]
        for i in range(b):
            di, gti, gi = d[i], gt[i], g[i]
            if not mask[s, i]:                                      # identity step: gradient passes through
                for k in range(h):
                    di[k] = 0
                    gti[k] = 0
                    keep[i, k] = gi[k]
                continue
            if last[i] < 0:
                for k in range(h):
                    gti[k] = gi[k] + dy[s, i, k]
            elif last[i] == s:
                for k in range(h):
                    gti[k] = gi[k] + dy[0, i, k]
            else:
                for k in range(h):
                    gti[k] = gi[k]
            hn = Z[s + 1, i]
            if act == TANH:
                for k in range(h):
                    di[k] = gti[k] * (1 - hn[k] * hn[k])
            else:
                for k in range(h):
                    di[k] = gti[k] if hn[k] > 0 else gti[k] * 0
        gemm(d, W, g)                                               # (B, H) @ (H, H): Wᵀ δ_t per row
        for i in range(b):                                          # padded steps pass g on unchanged
            if not mask[s, i]:
                for k in range(h):
                    g[i, k] = keep[i, k]
    gemm(dA.reshape(t * b, h), Z[:t].reshape(t * b, Z.shape[2]), dWUb, ta=True)   # (H, T·B) @ (T·B, H+D+1)


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
        h, d = self.config["units"], x.shape[-1]
        self.wub = {}                                                        # per direction [Wᵀ; Uᵀ; bᵀ] (H+D+1, H)
        for sfx in self.suffixes:
            w = self.wub[sfx] = np.empty((h + d + 1, h), x.dtype)
            w[:h], w[h:h + d], w[h + d] = self.p["W" + sfx].T, self.p["U" + sfx].T, self.p["b" + sfx]
        return super().forward(x, training)

    def run(self, sfx, xt, mask):
        t, b, d = xt.shape
        h = self.config["units"]
        Z = np.empty((t + 1, b, h + d + 1), xt.dtype)                        # rows [h_t | x_t | 1], t = 0 … T
        _rnn_forward(xt, self.wub[sfx], self.state("h0", sfx, xt.dtype), mask, self.act, xt.dtype == np.float32, Z)
        return Z[:, :, :h], {"Z": Z}                                          # states h_0 … h_T (T+1, b, H)

    def run_back(self, sfx, xt, mask, S, cache, dy, last):
        t, b, d = xt.shape
        h, dt = self.config["units"], xt.dtype
        dA, D = np.empty((t, b, h), dt), np.empty((t, b, h), dt)
        g, keep, dWUb = np.empty((b, h), dt), np.empty((b, h), dt), np.empty((h, h + d + 1), dt)
        _rnn_backward(dy, last, self.weight("W" + sfx, dt), cache["Z"], mask, self.act, dA, D, g, keep, dWUb)
        grads = {"W" + sfx: dWUb[:, :h], "U" + sfx: dWUb[:, h:h + d], "b" + sfx: dWUb[:, h + d]}   # Σ_t δ_t z_tᵀ
        if "h0" + sfx in self.g:
            grads["h0" + sfx] = g.sum(axis=0)
        return dA, D, grads

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
