"""Single-layer RNN (spec §4): a_t = W h_{t−1} + U x_t + b, h_t = f(a_t); BPTT as the δ_t recurrence."""
import numpy as np
from numba import njit

from ..hparams import HP
from .base import Layer, Param, fmt, register

TANH, RELU = 0, 1


@njit(cache=True, nogil=True, error_model="numpy")
def _rnn_forward(xu, WT, h0, mask, act, S, Y):
    """The whole time loop. xu (B, T, H) = U x_t + b for every step, WT = Wᵀ (H, H), h0 (H,), mask (B, T).

    S (B, T+1, H): the state before step 0 (h0) and after every step (a padded step keeps the previous
    state); Y (B, T, H): h_t at valid steps, 0 at padded ones."""
    b, t, h = xu.shape
    for i in range(b):
        for k in range(h):
            S[i, 0, k] = h0[k]
    for s in range(t):
        for i in range(b):
            prev, new, y = S[i, s], S[i, s + 1], Y[i, s]
            if not mask[i, s]:
                for k in range(h):
                    new[k] = prev[k]
                    y[k] = 0
                continue
            a = xu[i, s]
            for k in range(h):
                new[k] = a[k]
            for j in range(h):                                      # a += W h_{t−1}, column by column
                pj = prev[j]
                w = WT[j]
                for k in range(h):
                    new[k] += w[k] * pj
            if act == TANH:
                for k in range(h):
                    new[k] = np.tanh(new[k])
            else:
                for k in range(h):
                    new[k] = new[k] if new[k] > 0 else new[k] * 0
            for k in range(h):
                y[k] = new[k]


@njit(cache=True, nogil=True, error_model="numpy")
def _rnn_backward(dy, last, W, S, mask, act, dA, G, g):
    """δ_t = (∇_{h_t}L + Wᵀ δ_{t+1}) ⊙ f'(a_t), from t = T−1 down to 0.

    dy (B, T, H) upstream gradient of the outputs; last (B,) ≥ 0: the step whose state is the (H,)
    output (its gradient sits in dy[:, 0]); dA (B, T, H) ← δ_t (0 at padded steps); G (B, T, H) ←
    ∇_{h_t}L in total (0 at padded steps); g (B, H) ← the gradient reaching h_0."""
    b, t, h = dA.shape
    for i in range(b):
        for k in range(h):
            g[i, k] = 0
    for s in range(t - 1, -1, -1):
        for i in range(b):
            d, gt = dA[i, s], G[i, s]
            if not mask[i, s]:                                      # identity step: gradient passes through
                for k in range(h):
                    d[k] = 0
                    gt[k] = 0
                continue
            gi = g[i]
            if last[i] < 0:
                for k in range(h):
                    gt[k] = gi[k] + dy[i, s, k]
            elif last[i] == s:
                for k in range(h):
                    gt[k] = gi[k] + dy[i, 0, k]
            else:
                for k in range(h):
                    gt[k] = gi[k]
            hn = S[i, s + 1]
            if act == TANH:
                for k in range(h):
                    d[k] = gt[k] * (1 - hn[k] * hn[k])
            else:
                for k in range(h):
                    d[k] = gt[k] if hn[k] > 0 else gt[k] * 0
            for k in range(h):
                gi[k] = 0
            for j in range(h):                                      # g = Wᵀ δ_t, row by row of W
                dj = d[j]
                w = W[j]
                for k in range(h):
                    gi[k] += w[k] * dj


@register
class RNN(Layer):
    category = "recurrent"
    doc = ("Recurrent layer a_t = W h_{t−1} + U x_t + b, h_t = f(a_t): (T, D) → (T, H) with return_sequences, "
           "else (H,) = the state at each sequence's last valid step; padded steps keep the state")
    hparams = (HP("units", "int", 32, min=1, max=1 << 14, doc="Hidden size H"),
               HP("activation", "choice", "tanh", choices=("tanh", "relu"), doc="f in h_t = f(a_t)"),
               HP("return_sequences", "bool", False, doc="Output h_t for every step (T, H) instead of the last (H,)"),
               HP("learn_h0", "bool", False, doc="Learn the initial state h_0 (else h_0 = 0)"))
    taps_doc = {"hidden": "(B, T, H) hidden states h_t after forward (0 at padded steps)",
                "grad_hidden": "(B, T, H) ∂L/∂h_t after backward, through the δ recurrence (0 at padded steps)"}

    def compute_output_shape(self, in_shapes):
        (s,) = in_shapes
        self._expect_rank(s, (2,), "a sequence (steps, features)")
        h = self.config["units"]
        return (s[0], h) if self.config["return_sequences"] else (h,)

    def params(self, in_shapes):
        d, h = in_shapes[0][-1], self.config["units"]
        ps = {"U": Param((h, d), "glorot_uniform", decay=True),     # input weights (H, D)
              "W": Param((h, h), "glorot_uniform", decay=True),     # recurrent weights (H, H)
              "b": Param((h,), "zeros")}
        if self.config["learn_h0"]:
            ps["h0"] = Param((h,), "zeros")
        return ps

    def macs(self, in_shapes):
        (t, d), h = in_shapes[0], self.config["units"]
        return t * (h * d + h * h)

    def formulas(self, in_shapes):
        (t, d), h = in_shapes[0], self.config["units"]
        out = fmt(self.compute_output_shape(in_shapes))
        h0 = self.config["learn_h0"]
        return {"shape": f"(T, D) → {'(T, H)' if self.config['return_sequences'] else '(H,)'} = {out}",
                "params": f"H·D + H·H + H{' + H' if h0 else ''} = {h}·{d} + {h}·{h} + {h}{f' + {h}' if h0 else ''}"
                          f" = {self.param_count(in_shapes):,}",
                "macs": f"T·(H·D + H·H) = {t}·({h}·{d} + {h}·{h}) = {self.macs(in_shapes):,}"}

    def compute_mask(self, in_masks):
        return in_masks[0] if self.config["return_sequences"] else None

    def forward(self, x, training=False):
        b, t, d = x.shape
        h, p = self.config["units"], self.p
        m = self.in_masks[0] if self.in_masks and self.in_masks[0] is not None else np.ones((b, t), bool)
        self.mask = np.ascontiguousarray(m, dtype=np.bool_)
        self.x = x
        xu = x.reshape(b * t, d) @ p["U"].T                          # (B·T, D) @ (D, H): U x_t for all steps
        xu += p["b"]
        h0 = p["h0"] if "h0" in p else np.zeros(h, x.dtype)
        self.S = np.empty((b, t + 1, h), x.dtype)
        Y = np.empty((b, t, h), x.dtype)
        _rnn_forward(xu.reshape(b, t, h), np.ascontiguousarray(p["W"].T), np.ascontiguousarray(h0), self.mask,
                     TANH if self.config["activation"] == "tanh" else RELU, self.S, Y)
        self.taps["hidden"] = Y
        if self.config["return_sequences"]:
            return Y
        self.last = t - 1 - np.argmax(self.mask[:, ::-1], axis=1)    # (B,) last valid step
        return self.S[np.arange(b), self.last + 1]                   # (B, H)

    def backward(self, dy):
        x, S, p = self.x, self.S, self.p
        b, t, d = x.shape
        h = self.config["units"]
        dy = np.ascontiguousarray(dy, dtype=x.dtype)
        last = np.full(b, -1, np.int64) if self.config["return_sequences"] else self.last.astype(np.int64)
        dyk = dy if self.config["return_sequences"] else dy.reshape(b, 1, h)
        dA, G, g = np.empty((b, t, h), x.dtype), np.empty((b, t, h), x.dtype), np.empty((b, h), x.dtype)
        _rnn_backward(dyk, last, np.ascontiguousarray(p["W"]), S, self.mask,
                      TANH if self.config["activation"] == "tanh" else RELU, dA, G, g)
        self.taps["grad_hidden"] = G
        dA2 = dA.reshape(b * t, h)                                   # (B·T, H)
        np.matmul(dA2.T, x.reshape(b * t, d), out=self.g["U"])       # (H, B·T) @ (B·T, D)
        np.matmul(dA2.T, S[:, :t].reshape(b * t, h), out=self.g["W"])   # Σ_t δ_t h_{t−1}ᵀ (H, H)
        np.sum(dA2, axis=0, out=self.g["b"])
        if "h0" in self.g:
            np.sum(g, axis=0, out=self.g["h0"])
        if not self.need_dx:
            return (None,)
        return ((dA2 @ p["U"]).reshape(b, t, d),)                    # (B·T, H) @ (H, D)

    @classmethod
    def samples(cls):
        return [({"units": 3}, [(4, 2)]),
                ({"units": 3}, [(5, 2)], {"mask": True}),
                ({"units": 4, "activation": "relu", "return_sequences": True, "learn_h0": True}, [(5, 3)],
                 {"mask": True}),
                ({"units": 2, "return_sequences": True}, [(3, 2)])]
