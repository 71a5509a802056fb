"""Single-layer RNN (spec §4): a_t = W h_{t−1} + U x_t + b, h_t = f(a_t); BPTT as the δ_t recurrence."""
import numpy as np
from numba import njit

from ..blas import gemm
from ..hparams import HP
from .base import Layer, Param, fmt, register

TANH, RELU = 0, 1
# tanh for float32 as a rational function on [−7.9053, 7.9053] (Eigen's generic_fast_tanh_float, ≤ 2 ulp);
# libm's tanhf costs ~40× more and the time loop spends most of its time there otherwise
_A = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_B = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


@njit(cache=True, nogil=True, error_model="numpy")
def _tanh32(v):
    """tanh of v to float32 precision."""
    c = 7.90531110763549805
    v = min(max(v, -c), c)
    if abs(v) < 0.0004:
        return v
    v2 = v * v
    p = v * (_A[0] + v2 * (_A[1] + v2 * (_A[2] + v2 * (_A[3] + v2 * (_A[4] + v2 * (_A[5] + v2 * _A[6]))))))
    q = _B[0] + v2 * (_B[1] + v2 * (_B[2] + v2 * _B[3]))
    return p / q


@njit(cache=True, nogil=True, error_model="numpy")
def _rnn_forward(xu, WT, h0, mask, act, fast, S):
    """The whole time loop, time-major. xu (T, B, H) = U x_t + b for every step, WT = Wᵀ (H, H), h0 (H,),
    mask (T, B); fast: float32 tanh. S (T+1, B, H) ← the state before step 0 (h0) and after every step
    (a padded step keeps the previous state)."""
    t, b, h = xu.shape
    for i in range(b):
        for k in range(h):
            S[0, i, k] = h0[k]
    for s in range(t):
        new = S[s + 1]
        gemm(S[s], WT, new)                                         # (B, H) @ (H, H): W h_{t−1} for the batch
        for i in range(b):
            y, prev, a = new[i], S[s, i], xu[s, i]
            if not mask[s, i]:
                for k in range(h):
                    y[k] = prev[k]
            elif act == RELU:
                for k in range(h):
                    v = y[k] + a[k]
                    y[k] = v if v > 0 else v * 0
            elif fast:
                for k in range(h):
                    y[k] = _tanh32(y[k] + a[k])
            else:
                for k in range(h):
                    y[k] = np.tanh(y[k] + a[k])


@njit(cache=True, nogil=True, error_model="numpy")
def _rnn_backward(dy, last, W, S, mask, act, dA, G, g, keep):
    """δ_t = (∇_{h_t}L + Wᵀ δ_{t+1}) ⊙ f'(a_t), from t = T−1 down to 0, time-major.

    dy (T, B, H) upstream gradient of the outputs, or (1, B, H) for the (H,) output at step last[i];
    last (B,): −1 when every step is an output; dA (T, B, H) ← δ_t (0 at padded steps); G (T, B, H) ←
    ∇_{h_t}L in total (0 at padded steps); g (B, H) ← the gradient reaching h_0; keep (B, H) scratch."""
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
            hn = S[s + 1, i]
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


@register
class RNN(Layer):
    category = "recurrent"
    fused = None          # not in the fused kernel: the per-layer path runs it
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

    def work(self, in_shapes):
        """Per sample: the time-major input T·D, U x_t for all steps T·H and the states (T + 1)·H."""
        (t, d), h = in_shapes[0], self.config["units"]
        return t * d + (2 * t + 1) * h

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
        self.mask = np.ascontiguousarray(m.T, dtype=np.bool_)                 # (T, B)
        self.xt = np.ascontiguousarray(x.transpose(1, 0, 2))                  # (T, B, D) time-major
        xu = self.xt.reshape(t * b, d) @ p["U"].T                             # (T·B, D) @ (D, H): U x_t, all steps
        xu += p["b"]
        h0 = p["h0"] if "h0" in p else np.zeros(h, x.dtype)
        self.S = S = np.empty((t + 1, b, h), x.dtype)                         # states h_0 … h_T
        _rnn_forward(xu.reshape(t, b, h), np.ascontiguousarray(p["W"].T), np.ascontiguousarray(h0, x.dtype),
                     self.mask, self.act, x.dtype == np.float32, S)
        Y = S[1:].transpose(1, 0, 2) * m[:, :, None]                           # (B, T, H), 0 at padded steps
        self.taps["hidden"] = Y
        if self.config["return_sequences"]:
            return Y
        self.last = t - 1 - np.argmax(m[:, ::-1], axis=1)                    # (B,) last valid step
        return S[self.last + 1, np.arange(b)]                                 # (B, H)

    @property
    def act(self):
        return TANH if self.config["activation"] == "tanh" else RELU

    def backward(self, dy):
        xt, S, p = self.xt, self.S, self.p
        t, b, d = xt.shape
        h, dt = self.config["units"], xt.dtype
        if self.config["return_sequences"]:
            last, dyk = np.full(b, -1, np.int64), np.ascontiguousarray(dy.transpose(1, 0, 2), dtype=dt)   # (T, B, H)
        else:
            last, dyk = self.last.astype(np.int64), np.ascontiguousarray(dy, dtype=dt).reshape(1, b, h)
        dA, G = np.empty((t, b, h), dt), np.empty((t, b, h), dt)
        g, keep = np.empty((b, h), dt), np.empty((b, h), dt)
        _rnn_backward(dyk, last, np.ascontiguousarray(p["W"]), S, self.mask, self.act, dA, G, g, keep)
        self.taps["grad_hidden"] = G.transpose(1, 0, 2)                      # (B, T, H)
        dA2 = dA.reshape(t * b, h)                                           # (T·B, H)
        np.matmul(dA2.T, xt.reshape(t * b, d), out=self.g["U"])              # (H, T·B) @ (T·B, D)
        np.matmul(dA2.T, S[:t].reshape(t * b, h), out=self.g["W"])           # Σ_t δ_t h_{t−1}ᵀ (H, H)
        np.sum(dA2, axis=0, out=self.g["b"])
        if "h0" in self.g:
            np.sum(g, axis=0, out=self.g["h0"])
        if not self.need_dx:
            return (None,)
        return ((dA2 @ p["U"]).reshape(t, b, d).transpose(1, 0, 2),)         # (T·B, H) @ (H, D) → (B, T, D)

    @classmethod
    def samples(cls):
        return [({"units": 3}, [(4, 2)]),
                ({"units": 3}, [(5, 2)], {"mask": True}),
                ({"units": 4, "activation": "relu", "return_sequences": True, "learn_h0": True}, [(5, 3)],
                 {"mask": True}),
                ({"units": 2, "return_sequences": True}, [(3, 2)])]
