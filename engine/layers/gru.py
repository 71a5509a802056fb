"""GRU with PyTorch's gate equations and weight layout (weight_ih (3H, D), gates r, z, n; b_hn inside the reset):
r, z = σ(W_i· x_t + b_i· + W_h· h_{t−1} + b_h·), n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t−1} + b_hn)),
h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}. linear_before_reset off: ONNX's default form, n = tanh(W_in x_t + b_in +
W_hn (r ⊙ h_{t−1}) + b_hn), with its own kernels and PyTorch module (GRUResetFirst)."""
import numpy as np
from .._jit import njit

from ..blas import gemm
from ..hparams import HP
from .base import register
from .recurrent import Recurrent, sigmoid_span, tanh_span, total_grad
from .recurrent_torch import FLIP_VALID, GRU_RESET_FIRST


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


@njit(cache=True, nogil=True, error_model="numpy")
def _gru0_forward(xw, WT, bh, h0, mask, fast, S, G, HN, RH, A):
    """linear_before_reset = 0 (ONNX's default): n = tanh(W_in x_t + b_in + W_hn (r ⊙ h_{t−1}) + b_hn); as
    _gru_forward, and RH (T, B, H) ← r ⊙ h_{t−1}, HN ← W_hn (r ⊙ h_{t−1}) + b_hn (0 at padded steps)."""
    t, b, h3 = xw.shape
    h = h3 // 3
    for i in range(b):
        S[0, i] = h0
    for s in range(t):
        gemm(S[s], WT[:, :2 * h], A[:, :2 * h])                     # (B, H) @ (H, 2H): W_hr h, W_hz h
        for i in range(b):
            g, xi, ai, hp, rh = G[s, i], xw[s, i], A[i], S[s, i], RH[s, i]
            if not mask[s, i]:
                rh[:] = 0
                g[:] = 0
                continue
            for k in range(2 * h):
                g[k] = xi[k] + ai[k] + bh[k]
            sigmoid_span(g, 0, 2 * h, fast)                         # r, z
            for k in range(h):
                rh[k] = g[k] * hp[k]
        gemm(RH[s], WT[:, 2 * h:], A[:, 2 * h:])                    # (B, H) @ (H, H): W_hn (r ⊙ h_{t−1})
        for i in range(b):
            g, hn, xi, ai, hp, y = G[s, i], HN[s, i], xw[s, i], A[i], S[s, i], S[s + 1, i]
            if not mask[s, i]:
                y[:] = hp
                hn[:] = 0
                continue
            z, n = g[h:2 * h], g[2 * h:]
            for k in range(h):
                v = ai[2 * h + k] + bh[2 * h + k]
                hn[k] = v
                n[k] = xi[2 * h + k] + v
            tanh_span(n, 0, h, fast)
            for k in range(h):
                y[k] = (1 - z[k]) * n[k] + z[k] * hp[k]


@njit(cache=True, nogil=True, error_model="numpy")
def _gru0_backward(dy, last, W, S, G, mask, dA, D, gh, keep, drh):
    """linear_before_reset = 0: as _gru_backward; the input-side and hidden-side pre-activation gradients are equal
    (dA), ∂L/∂(r ⊙ h_{t−1}) = W_hnᵀ δn reaches r and h_{t−1}; drh (B, H) scratch."""
    t, b, h = D.shape
    gh[...] = 0
    for s in range(t - 1, -1, -1):
        for i in range(b):
            d3, ds, g, hp, ghi = dA[s, i], D[s, i], G[s, i], S[s, i], gh[i]
            if not mask[s, i]:                                      # identity step: gradient passes through
                d3[:] = 0
                ds[:] = 0
                keep[i] = ghi
                continue
            total_grad(ds, ghi, dy, last, s, i)
            z, n, kp = g[h:2 * h], g[2 * h:], keep[i]
            for k in range(h):
                d = ds[k]
                d3[2 * h + k] = d * (1 - z[k]) * (1 - n[k] * n[k])
                d3[h + k] = d * (hp[k] - n[k]) * z[k] * (1 - z[k])
                kp[k] = d * z[k]                                    # the direct path h_{t−1} → z ⊙ h_{t−1}
        gemm(dA[s, :, 2 * h:], W[2 * h:], drh)                      # (B, H) @ (H, H): W_hnᵀ δn = ∂L/∂(r ⊙ h)
        for i in range(b):
            if mask[s, i]:
                r, hp = G[s, i, :h], S[s, i]
                for k in range(h):
                    dA[s, i, k] = drh[i, k] * hp[k] * r[k] * (1 - r[k])
                    keep[i, k] += drh[i, k] * r[k]
        gemm(dA[s, :, :2 * h], W[:2 * h], gh)                       # (B, 2H) @ (2H, H): W_hrᵀ δr + W_hzᵀ δz
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
           "valid step; padded steps keep the state; linear_before_reset off: n = tanh(W_in x_t + b_in + W_hn (r⊙h_{t−1}) "
           "+ b_hn), ONNX's default")
    fused = None          # the per-layer path runs it (numba time loops)
    hparams = Recurrent.common + (HP("linear_before_reset", "bool", True, doc="r applies after the recurrent "
                                     "product, n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)) as PyTorch; off: "
                                     "n = tanh(W_in x + b_in + W_hn (r⊙h) + b_hn), ONNX's default"),)
    state_formula = "h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_(t−1)"
    n_gates = 3
    gate_names = ("reset r", "update z", "candidate n")
    onnx_order = (1, 0, 2)         # ONNX's gate order z, r, h
    onnx_op = "GRU"
    torch_class = "nn.GRU"
    taps_doc = {**Recurrent.taps_doc, "gates": "(B, T, 3, dirs·H) gate activations r, z, n per step (0 at padded steps)"}

    @property
    def onnx_attrs(self):
        return {"linear_before_reset": int(self.config["linear_before_reset"])}

    def run(self, sfx, xt, mask):
        t, b, _ = xt.shape
        h, dt = self.config["units"], xt.dtype
        if not self.config["linear_before_reset"]:
            S, G, HN, RH = (np.empty((t + 1, b, h), dt), np.empty((t, b, 3 * h), dt), np.empty((t, b, h), dt),
                            np.empty((t, b, h), dt))
            _gru0_forward(self.project(xt, sfx, "b_ih"), np.ascontiguousarray(self.p["W_hh" + sfx].T, dt),
                          self.weight("b_hh" + sfx, dt), self.state("h0", sfx, dt), mask, dt == np.float32, S, G, HN,
                          RH, np.empty((b, 3 * h), dt))
            return S, {"G": G, "HN": HN, "RH": RH, "taps": {"gates": G.reshape(t, b, 3, h)}}
        S, G, HN = np.empty((t + 1, b, h), dt), np.empty((t, b, 3 * h), dt), np.empty((t, b, h), dt)
        _gru_forward(self.project(xt, sfx, "b_ih"), np.ascontiguousarray(self.p["W_hh" + sfx].T, dt),
                     self.weight("b_hh" + sfx, dt), self.state("h0", sfx, dt), mask, dt == np.float32, S, G, HN,
                     np.empty((b, 3 * h), dt))
        return S, {"G": G, "HN": HN, "taps": {"gates": G.reshape(t, b, 3, h)}}

    def run_back(self, sfx, xt, mask, S, cache, dy, last):
        t, b, _ = xt.shape
        h, dt = self.config["units"], xt.dtype
        if not self.config["linear_before_reset"]:
            dA, D = np.empty((t, b, 3 * h), dt), np.empty((t, b, h), dt)
            gh, keep, drh = np.empty((b, h), dt), np.empty((b, h), dt), np.empty((b, h), dt)
            _gru0_backward(dy, last, self.weight("W_hh" + sfx, dt), S, cache["G"], mask, dA, D, gh, keep, drh)
            dA2 = dA.reshape(t * b, 3 * h)                                   # (T·b, 3H)
            gW = np.concatenate([dA2[:, :2 * h].T @ S[:t].reshape(t * b, h),    # (2H, T·b) @ (T·b, H)
                                 dA2[:, 2 * h:].T @ cache["RH"].reshape(t * b, h)])   # (H, T·b) @ (T·b, H): r ⊙ h
            db = dA2.sum(axis=0)
            return dA, D, {"W_hh" + sfx: gW, "b_hh" + sfx: db, "b_ih" + sfx: db, "h0" + sfx: gh.sum(axis=0)}
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
        if not self.config["linear_before_reset"]:                    # W_hn (r ⊙ h) + b_hn
            nh = (r * st[0]) @ p["W_hh"].chunk(3, 0)[2].T + p["b_hh"].chunk(3)[2]
        n = torch.tanh(ni + r * nh if self.config["linear_before_reset"] else ni + nh)
        return [(1 - z) * n + z * st[0]]

    def to_torch(self):
        if self.config["linear_before_reset"]:
            return super().to_torch()
        from ..torch_export.emitters import Emitted
        c, d = self.config, self.in_shapes[0][-1]
        opts = "".join(f", {k}=True" for k, v in (("return_sequences", c["return_sequences"]),
                                                  ("learn_h0", c["learn_h0"]), ("bidirectional", self.dirs == 2),
                                                  ("reverse", self.backs == (True,))) if v)
        names = {k + sfx: f"{v}_l0{tsfx}" for sfx, tsfx in zip(self.suffixes, ("", "_reverse"))
                 for k, v in self.torch_names().items()}
        names.update({"h0" + sfx: "h0" + tsfx for sfx, tsfx in zip(self.suffixes, ("", "_reverse")) if c["learn_h0"]})
        return Emitted(f"GRUResetFirst({d}, {c['units']}{opts})", names, helpers=("GRUResetFirst", "flip_valid"),
                       sources={"GRUResetFirst": GRU_RESET_FIRST, "flip_valid": FLIP_VALID},
                       call="{self}({x0}, {mask})", uses_mask=True)

    @classmethod
    def samples(cls):
        return Recurrent.samples() + [
            ({"units": 3, "linear_before_reset": False, "return_sequences": True, "learn_h0": True}, [(5, 2)],
             {"mask": True}),
            ({"units": 2, "linear_before_reset": False, "bidirectional": True}, [(4, 3)], {"mask": True}),
            ({"units": 2, "linear_before_reset": False, "direction": "reverse", "learn_h0": True}, [(4, 2)],
             {"mask": True})]
