"""LSTM with PyTorch's gate equations and weight layout (weight_ih (4H, D), gates i, f, g, o; two bias vectors):
i, f, o = σ(W_i· x_t + b_i· + W_h· h_{t−1} + b_h·), g = tanh(…), c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t)."""
import numpy as np
from .._jit import njit

from ..blas import gemm
from .base import register
from .recurrent import Recurrent, sigmoid_span, tanh_span, total_grad


@njit(cache=True, nogil=True, error_model="numpy")
def _lstm_forward(xw, WT, bias, h0, c0, mask, fast, S, C, G):
    """The whole time loop, time-major. xw (T, B, 4H) = W_ih x_t, WT = W_hhᵀ (H, 4H), bias = b_ih + b_hh, h0, c0 (H,),
    mask (T, B); fast: float32 tanh. S, C (T+1, B, H) ← h_t, c_t (h_0, c_0 first; a padded step keeps both);
    G (T, B, 4H) ← the gates i, f, g, o (0 at padded steps)."""
    t, b, h4 = xw.shape
    h = h4 // 4
    tc = np.empty(h, S.dtype)
    for i in range(b):
        S[0, i] = h0
        C[0, i] = c0
    for s in range(t):
        a = G[s]
        gemm(S[s], WT, a)                                           # (B, H) @ (H, 4H): W_hh h_{t−1}
        for i in range(b):
            ai, xi, hn, cn, cp = a[i], xw[s, i], S[s + 1, i], C[s + 1, i], C[s, i]
            if not mask[s, i]:
                hn[:] = S[s, i]
                cn[:] = cp
                ai[:] = 0
                continue
            for k in range(h4):
                ai[k] += xi[k] + bias[k]
            sigmoid_span(ai, 0, 2 * h, fast)                        # i, f
            tanh_span(ai, 2 * h, 3 * h, fast)                       # g
            sigmoid_span(ai, 3 * h, h4, fast)                       # o
            ig, fg, gg, og = ai[:h], ai[h:2 * h], ai[2 * h:3 * h], ai[3 * h:]
            for k in range(h):
                c = fg[k] * cp[k] + ig[k] * gg[k]                   # c_t = f ⊙ c_{t−1} + i ⊙ g
                cn[k] = c
                tc[k] = c
            tanh_span(tc, 0, h, fast)
            for k in range(h):
                hn[k] = og[k] * tc[k]                               # h_t = o ⊙ tanh(c_t)


@njit(cache=True, nogil=True, error_model="numpy")
def _lstm_backward(dy, last, W, C, G, mask, fast, dA, D, gh, gc, keep):
    """From t = T−1 down to 0: ∂L/∂h_t (D) and ∂L/∂c_t back through the gates, time-major.

    dy (T, B, H) upstream gradient of the outputs, or (1, B, H) for the state at step last[i] (last[i] < 0: every
    step is an output); dA (T, B, 4H) ← ∂L/∂ of the gates' pre-activations (0 at padded steps); D (T, B, H) ←
    ∂L/∂h_t in total (0 at padded steps); gh, gc (B, H) ← the gradient reaching h_0, c_0; keep (B, H) scratch."""
    t, b, h = D.shape
    gh[...] = 0
    gc[...] = 0
    tc = np.empty(h, D.dtype)
    for s in range(t - 1, -1, -1):
        for i in range(b):
            d, ds, g, cn, cp, ghi, gci = dA[s, i], D[s, i], G[s, i], C[s + 1, i], C[s, i], gh[i], gc[i]
            if not mask[s, i]:                                      # identity step: gradients pass through
                d[:] = 0
                ds[:] = 0
                keep[i] = ghi
                continue
            total_grad(ds, ghi, dy, last, s, i)
            tc[:] = cn
            tanh_span(tc, 0, h, fast)
            ig, fg, gg, og = g[:h], g[h:2 * h], g[2 * h:3 * h], g[3 * h:]
            di, df, dg, do = d[:h], d[h:2 * h], d[2 * h:3 * h], d[3 * h:]
            for k in range(h):
                dc = gci[k] + ds[k] * og[k] * (1 - tc[k] * tc[k])
                di[k] = dc * gg[k] * ig[k] * (1 - ig[k])
                df[k] = dc * cp[k] * fg[k] * (1 - fg[k])
                dg[k] = dc * ig[k] * (1 - gg[k] * gg[k])
                do[k] = ds[k] * tc[k] * og[k] * (1 - og[k])
                gci[k] = dc * fg[k]
        gemm(dA[s], W, gh)                                          # (B, 4H) @ (4H, H): W_hhᵀ δ_t per row
        for i in range(b):
            if not mask[s, i]:
                gh[i] = keep[i]


@register
class LSTM(Recurrent):
    doc = ("Long short-term memory (PyTorch's equations and weights): i, f, o = σ(·), g = tanh(W_ig x_t + b_ig + "
           "W_hg h_{t−1} + b_hg), c_t = f⊙c_{t−1} + i⊙g, h_t = o⊙tanh(c_t); (T, D) → (T, H) or (H,) at each "
           "sequence's last valid step; padded steps keep h and c")
    fused = None          # the per-layer path runs it (numba time loops)
    hparams = Recurrent.common
    state_formula = "h_t = o_t ⊙ tanh(c_t), c_t = f_t ⊙ c_(t−1) + i_t ⊙ g_t"
    n_gates = 4
    gate_names = ("input i", "forget f", "cell g", "output o")
    states = ("h0", "c0")
    onnx_order = (0, 3, 1, 2)      # ONNX's gate order i, o, f, c
    onnx_op = "LSTM"
    torch_class = "nn.LSTM"
    taps_doc = {**Recurrent.taps_doc,
                "gates": "(B, T, 4, dirs·H) gate activations i, f, g, o per step (0 at padded steps)",
                "cell": "(B, T, dirs·H) cell states c_t (0 at padded steps)"}

    def run(self, sfx, xt, mask):
        t, b, _ = xt.shape
        h, dt = self.config["units"], xt.dtype
        S, C, G = np.empty((t + 1, b, h), dt), np.empty((t + 1, b, h), dt), np.empty((t, b, 4 * h), dt)
        _lstm_forward(self.project(xt, sfx), np.ascontiguousarray(self.p["W_hh" + sfx].T, dt),
                      (self.p["b_ih" + sfx] + self.p["b_hh" + sfx]).astype(dt), self.state("h0", sfx, dt),
                      self.state("c0", sfx, dt), mask, dt == np.float32, S, C, G)
        cell = C[1:] * mask[:, :, None]                                      # (T, b, H), 0 at padded steps
        return S, {"C": C, "G": G, "taps": {"gates": G.reshape(t, b, 4, h), "cell": cell}}

    def run_back(self, sfx, xt, mask, S, cache, dy, last):
        t, b, _ = xt.shape
        h, dt = self.config["units"], xt.dtype
        dA, D = np.empty((t, b, 4 * h), dt), np.empty((t, b, h), dt)
        gh, gc, keep = np.empty((b, h), dt), np.empty((b, h), dt), np.empty((b, h), dt)
        _lstm_backward(dy, last, self.weight("W_hh" + sfx, dt), cache["C"], cache["G"], mask, dt == np.float32,
                       dA, D, gh, gc, keep)
        dA2 = dA.reshape(t * b, 4 * h)                                       # (T·b, 4H)
        db = dA2.sum(axis=0)
        grads = {"W_hh" + sfx: dA2.T @ S[:t].reshape(t * b, h),               # Σ_t δ_t h_{t−1}ᵀ (4H, H)
                 "b_ih" + sfx: db, "b_hh" + sfx: db, "h0" + sfx: gh.sum(axis=0), "c0" + sfx: gc.sum(axis=0)}
        return dA, D, grads

    def torch_step(self, x, st, p, torch):
        a = x @ p["W_ih"].T + p["b_ih"] + st[0] @ p["W_hh"].T + p["b_hh"]
        i, f, g, o = a.chunk(4, -1)
        c = torch.sigmoid(f) * st[1] + torch.sigmoid(i) * torch.tanh(g)
        return [torch.sigmoid(o) * torch.tanh(c), c]
