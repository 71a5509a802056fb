"""GRU with PyTorch's gate equations and weight layout (weight_ih (3H, D), gates r, z, n; b_hn inside the reset):
r, z = σ(W_i· x_t + b_i· + W_h· h_{t−1} + b_h·), n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t−1} + b_hn)),
h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}."""
import numpy as np
from .._jit import njit

from ..blas import gemm
from .base import register
from .recurrent import Recurrent, sigmoid_span, tanh_span, total_grad


@njit(cache=True, nogil=True, error_model="numpy")
def _gru_forward(xw, WT, bh, h0, mask, fast, S, G, HN, A):
    """The whole time loop, time-major. xw (T, B, 3H) = W_ih x_t + b_ih, WT = W_hhᵀ (H, 3H), bh = b_hh (3H,), h0 (H,),
    mask (T, B); fast: float32 tanh. S (T+1, B, H) ← h_t (h_0 first; a padded step keeps it); G (T, B, 3H) ← r, z, n
    and HN (T, B, H) ← W_hn h_{t−1} + b_hn (0 at padded steps); A (B, 3H) scratch."""
    t, b, h3 = xw.shape
    h = h3 // 3
    for i in range(b):
        S[0, i] = h0
    for s in range(t):
        gemm(S[s], WT, A)                                           # (B, H) @ (H, 3H): W_hh h_{t−1}
        for i in range(b):
            g, hn, xi, ai, hp, y = G[s, i], HN[s, i], xw[s, i], A[i], S[s, i], S[s + 1, i]
            if not mask[s, i]:
                y[:] = hp
                hn[:] = 0
                g[:] = 0
                continue
            for k in range(2 * h):
                g[k] = xi[k] + ai[k] + bh[k]
            sigmoid_span(g, 0, 2 * h, fast)                         # r, z
            r, z, n, an, bn, xn = g[:h], g[h:2 * h], g[2 * h:], ai[2 * h:], bh[2 * h:], xi[2 * h:]
            for k in range(h):
                v = an[k] + bn[k]                                   # W_hn h_{t−1} + b_hn
                hn[k] = v
                n[k] = xn[k] + r[k] * v
            tanh_span(n, 0, h, fast)
            for k in range(h):
                y[k] = (1 - z[k]) * n[k] + z[k] * hp[k]


@njit(cache=True, nogil=True, error_model="numpy")
def _gru_backward(dy, last, W, S, G, HN, mask, dAi, dAh, D, gh, keep):
    """From t = T−1 down to 0: ∂L/∂h_t (D) back through the gates, time-major.

    dy (T, B, H) upstream gradient of the outputs, or (1, B, H) for the state at step last[i] (last[i] < 0: every
    step is an output); dAi, dAh (T, B, 3H) ← ∂L/∂ of the input-side and hidden-side pre-activations (they differ
    in the n block by the factor r; 0 at padded steps); D (T, B, H) ← ∂L/∂h_t in total; gh (B, H) ← the gradient
    reaching h_0; keep (B, H) scratch."""
    t, b, h = D.shape
    gh[...] = 0
    for s in range(t - 1, -1, -1):
        for i in range(b):
            di, dh_, ds, g, hn, hp, ghi = dAi[s, i], dAh[s, i], D[s, i], G[s, i], HN[s, i], S[s, i], gh[i]
            if not mask[s, i]:                                      # identity step: gradient passes through
                di[:] = 0
                dh_[:] = 0
                ds[:] = 0
                keep[i] = ghi
                continue
            total_grad(ds, ghi, dy, last, s, i)
            r, z, n, kp = g[:h], g[h:2 * h], g[2 * h:], keep[i]
            dir_, diz, din, dhr, dhz, dhn = di[:h], di[h:2 * h], di[2 * h:], dh_[:h], dh_[h:2 * h], dh_[2 * h:]
            for k in range(h):
                d = ds[k]
                dn = d * (1 - z[k]) * (1 - n[k] * n[k])
                dr = dn * hn[k] * r[k] * (1 - r[k])
                dz = d * (hp[k] - n[k]) * z[k] * (1 - z[k])
                dir_[k], diz[k], din[k] = dr, dz, dn
                dhr[k], dhz[k], dhn[k] = dr, dz, dn * r[k]
                kp[k] = d * z[k]                                    # the direct path h_{t−1} → z ⊙ h_{t−1}
        gemm(dAh[s], W, gh)                                         # (B, 3H) @ (3H, H): W_hhᵀ δ_t per row
        for i in range(b):
            if mask[s, i]:
                for k in range(h):
                    gh[i, k] += keep[i, k]
            else:
                gh[i] = keep[i]


@register
class GRU(Recurrent):
    doc = ("Gated recurrent unit (PyTorch's equations and weights): r, z = σ(·), n = tanh(W_in x_t + b_in + "
           "r⊙(W_hn h_{t−1} + b_hn)), h_t = (1−z)⊙n + z⊙h_{t−1}; (T, D) → (T, H) or (H,) at each sequence's last "
           "valid step; padded steps keep the state")
    fused = None          # the per-layer path runs it (numba time loops)
    hparams = Recurrent.common
    state_formula = "h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_(t−1)"
    n_gates = 3
    gate_names = ("reset r", "update z", "candidate n")
    onnx_order = (1, 0, 2)         # ONNX's gate order z, r, h
    onnx_op = "GRU"
    onnx_attrs = {"linear_before_reset": 1}   # r ⊙ (W_hn h + b_hn), as PyTorch
    torch_class = "nn.GRU"
    taps_doc = {**Recurrent.taps_doc, "gates": "(B, T, 3, dirs·H) gate activations r, z, n per step (0 at padded steps)"}

    def run(self, sfx, xt, mask):
        t, b, _ = xt.shape
        h, dt = self.config["units"], xt.dtype
        S, G, HN = np.empty((t + 1, b, h), dt), np.empty((t, b, 3 * h), dt), np.empty((t, b, h), dt)
        _gru_forward(self.project(xt, sfx, "b_ih"), np.ascontiguousarray(self.p["W_hh" + sfx].T, dt),
                     self.weight("b_hh" + sfx, dt), self.state("h0", sfx, dt), mask, dt == np.float32, S, G, HN,
                     np.empty((b, 3 * h), dt))
        return S, {"G": G, "HN": HN, "taps": {"gates": G.reshape(t, b, 3, h)}}

    def run_back(self, sfx, xt, mask, S, cache, dy, last):
        t, b, _ = xt.shape
        h, dt = self.config["units"], xt.dtype
        dAi, dAh, D = np.empty((t, b, 3 * h), dt), np.empty((t, b, 3 * h), dt), np.empty((t, b, h), dt)
        gh, keep = np.empty((b, h), dt), np.empty((b, h), dt)
        _gru_backward(dy, last, self.weight("W_hh" + sfx, dt), S, cache["G"], cache["HN"], mask, dAi, dAh, D, gh, keep)
        dAh2 = dAh.reshape(t * b, 3 * h)                                     # (T·b, 3H)
        grads = {"W_hh" + sfx: dAh2.T @ S[:t].reshape(t * b, h),              # (3H, T·b) @ (T·b, H)
                 "b_hh" + sfx: dAh2.sum(axis=0), "b_ih" + sfx: dAi.reshape(t * b, 3 * h).sum(axis=0),
                 "h0" + sfx: gh.sum(axis=0)}
        return dAi, D, grads

    def torch_step(self, x, st, p, torch):
        ri, zi, ni = (x @ p["W_ih"].T + p["b_ih"]).chunk(3, -1)
        rh, zh, nh = (st[0] @ p["W_hh"].T + p["b_hh"]).chunk(3, -1)
        r, z = torch.sigmoid(ri + rh), torch.sigmoid(zi + zh)
        n = torch.tanh(ni + r * nh)
        return [(1 - z) * n + z * st[0]]
