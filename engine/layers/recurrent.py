"""The recurrent family's shared base: masks, two directions, batch slices on the training threads, outputs, taps,
ONNX and PyTorch export, and the float32 activations of the time loops. The layers: rnn.py, lstm.py, gru.py."""
import numpy as np
from .._jit import njit

from .. import parallel
from ..errors import ShapeError
from ..hparams import HP
from .base import Fix, Layer, Param, fmt
from .recurrent_torch import FLIP_VALID, TORCH_MODULE

# tanh for float32 as a rational function on [−7.9053, 7.9053] (Eigen's generic_fast_tanh_float, ≤ 2 ulp);
# libm's tanhf costs ~40× more and the time loops would spend most of their time there otherwise
_A32 = np.float32((4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
                   -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_B32 = np.float32((4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))

@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def tanh32(v):
    """tanh of v to float32 precision, in float32 arithmetic without branches (loops over it vectorise); the
    polynomials' multiply-adds as FMAs (a fifth less time, within 1 ulp of the separate roundings)."""
    c = np.float32(7.90531110763549805)
    v = min(max(v, -c), c)
    v2 = v * v
    p = v * (_A32[0] + v2 * (_A32[1] + v2 * (_A32[2] + v2 * (_A32[3] + v2 * (_A32[4] + v2 * (_A32[5] + v2 * _A32[6]))))))
    q = _B32[0] + v2 * (_B32[1] + v2 * (_B32[2] + v2 * _B32[3]))
    return v if abs(v) < np.float32(0.0004) else p / q


@njit(cache=True, nogil=True, error_model="numpy")
def tanh_span(a, lo, hi, fast):
    """a[lo:hi] ← tanh(a[lo:hi]) in place: the float32 rational form when fast, else libm's."""
    b = a[lo:hi]                                  # indices from 0: no wraparound checks, the loop vectorises
    if fast:
        for k in range(b.shape[0]):
            b[k] = tanh32(b[k])
    else:
        for k in range(b.shape[0]):
            b[k] = np.tanh(b[k])


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid_span(a, lo, hi, fast):
    """a[lo:hi] ← σ(a[lo:hi]) = 1/(1 + e^(−a)) in place; fast (float32): ½ + ½·tanh(a/2) through the rational tanh."""
    b = a[lo:hi]
    if fast:
        half = np.float32(0.5)
        for k in range(b.shape[0]):
            b[k] = half + half * tanh32(half * b[k])
    else:
        for k in range(b.shape[0]):
            b[k] = 1.0 / (1.0 + np.exp(-b[k]))


@njit(cache=True, nogil=True, error_model="numpy")
def total_grad(ds, gh, dy, last, s, i):
    """ds (H,) ← ∂L/∂h_s of sequence i in total: gh (H,) from step s+1 plus the output's own gradient, dy (T, B, H)
    at every step when last[i] < 0, else dy (1, B, H) at step last[i] only."""
    if last[i] < 0 or last[i] == s:
        up = dy[s if last[i] < 0 else 0, i]
        for k in range(ds.shape[0]):
            ds[k] = gh[k] + up[k]
    else:
        ds[:] = gh


def reversal(m):
    """(T, B) step index reading each sequence's valid steps backwards (padded steps stay where they are), as
    pack_padded_sequence's reverse direction does; its own inverse. m: (B, T) bool."""
    b, t = m.shape
    order = np.argsort(~m, axis=1, kind="stable")                          # (B, T): valid steps first, in order
    rank = np.cumsum(m, axis=1) - 1                                        # (B, T): k for the k-th valid step
    back = np.take_along_axis(order, np.clip(m.sum(1, keepdims=True) - 1 - rank, 0, t - 1), axis=1)
    return np.ascontiguousarray(np.where(m, back, np.arange(t)).T)         # (T, B)


def gather(arrays, runs, perms):
    """(T, B, …, dirs·H) from the runs' (T, b_chunk, …, H) arrays (in the order of runs: direction k, batch slice);
    a backwards direction's steps put back in place by its perms[k] (perms None: arrays without a time axis)."""
    out = []
    for k in range(max(r[0] for r in runs) + 1):
        vs = [a for a, r in zip(arrays, runs) if r[0] == k]
        v = vs[0] if len(vs) == 1 else np.concatenate(vs, axis=1)
        perm = None if perms is None else perms[k]
        out.append(v if perm is None else v[perm, np.arange(perm.shape[1])])
    return out[0] if len(out) == 1 else np.concatenate(out, -1)


class Taps(dict):
    """Taps assembled when first read: a view reads them a few times an epoch, training steps never."""

    def __getitem__(self, k):
        v = super().__getitem__(k)
        if callable(v):
            v = v()
            self[k] = v
        return v

    def get(self, k, default=None):
        return self[k] if k in self else default


class Recurrent(Layer):
    """Shared by RNN, LSTM and GRU: (T, D) → (T, dirs·H) or (dirs·H,), masks, two directions, taps, exporters.

    A subclass declares its gates (rows of its weights per unit), its initial states and, for one direction's
    parameters (names ending in sfx: "" forward, "_rev" backward) on one batch slice, time-major:
    run(sfx, xt (T, b, D), mask (T, b)) -> (S (T+1, b, H) states, cache; cache["taps"]: (T, b, …, H) tensors) and
    run_back(sfx, xt, mask, S, cache, dy, last) -> (∂L/∂ of the input pre-activations (T, b, n·H), ∂L/∂h_t
    (T, b, H), {parameter: this slice's share of its gradient}). The base runs the slices on the granted threads,
    reads the backward direction's sequences backwards, and adds the shares in a fixed order."""

    category = "recurrent"
    fused = None          # not in the fused kernel: the per-layer path runs it
    reads_lengths = True
    n_gates = 1           # rows of the weights per unit (LSTM 4, GRU 3)
    gate_names = ()       # names of the gates in the gates tap
    states = ("h0",)      # initial states, learned with learn_h0
    w_in = "W_ih"         # the input weights (n_gates·H, D)
    onnx_order = ()       # ONNX's gate order as indices of ours (LSTM: i, o, f, c; GRU: z, r, h)
    onnx_op = "RNN"
    torch_class = "nn.RNN"
    state_formula = "h_t"  # how h_t is computed, for the hidden-state view ({f}: the activation)
    common = (HP("units", "int", 32, min=1, max=1 << 14, doc="Hidden size H"),
              HP("return_sequences", "bool", False, doc="Output h_t for every step (T, H) instead of the last (H,)"),
              HP("learn_h0", "bool", False, doc="Learn the initial state (else 0)"),
              HP("bidirectional", "bool", False, doc="A second layer reads each sequence backwards over its valid "
                 "steps; outputs [forward, backward] (2H)"),
              HP("direction", "choice", "forward", choices=("forward", "reverse"),
                 doc="reverse: read each sequence from its last valid step back to its first (ONNX direction=reverse)"))
    taps_doc = {"hidden": "(B, T, dirs·H) hidden states h_t after forward (0 at padded steps)",
                "grad_hidden": "(B, T, dirs·H) ∂L/∂h_t after backward, through the δ recurrence (0 at padded steps)"}

    @property
    def dirs(self):
        return 2 if self.config["bidirectional"] else 1

    @property
    def backs(self):
        """Per direction: whether it reads each sequence backwards over its valid steps."""
        return (False, True) if self.dirs == 2 else (self.config["direction"] == "reverse",)

    @property
    def suffixes(self):
        return ("", "_rev")[:self.dirs]

    def compute_output_shape(self, in_shapes):
        (s,) = in_shapes
        if self.dirs == 2 and self.config["direction"] == "reverse":
            raise ShapeError(f"{self.where}: direction reverse and bidirectional together; bidirectional already "
                             "reads backwards in its second half: set direction to forward")
        if len(s) != 2:                       # a vector: F steps of one feature; an image: its rows as steps
            seq = (s[0], 1) if len(s) == 1 else (int(np.prod(s[:-1])), s[-1])
            fix = Fix("insert_before", f"insert a Reshape to {fmt(seq)} before it", "Reshape", (("shape", seq),))
            raise ShapeError(f"{self.where} needs a sequence (steps, features) but got {fmt(s)}: {fix.text}"
                             + (" (a recurrent layer before it gives a sequence with return_sequences)"
                                if len(s) == 1 else ""), fix=fix)
        h = self.config["units"] * self.dirs
        return (s[0], h) if self.config["return_sequences"] else (h,)

    def params(self, in_shapes):
        d, h = in_shapes[0][-1], self.config["units"]
        ps = {}
        for sfx in self.suffixes:
            ps.update({k + sfx: v for k, v in self.direction_params(d, h).items()})
            if self.config["learn_h0"]:
                ps.update({k + sfx: Param((h,), "zeros") for k in self.states})
        return ps

    def direction_params(self, d, h):
        """One direction's tensors in PyTorch's layout: the gates stacked along rows, two bias vectors."""
        n = self.n_gates
        return {"W_ih": Param((n * h, d), "glorot_uniform", decay=True),   # input weights (n·H, D)
                "W_hh": Param((n * h, h), "glorot_uniform", decay=True),   # recurrent weights (n·H, H)
                "b_ih": Param((n * h,), "zeros"), "b_hh": Param((n * h,), "zeros")}

    def formulas(self, in_shapes):
        (t, d), h, n = in_shapes[0], self.config["units"], self.n_gates
        two, s = "2·" if self.dirs == 2 else "", len(self.states)
        return {"shape": self._shape_line(in_shapes),
                "params": self._params_line(in_shapes, f"{n}·(H·(D+H) + 2H)", f"{n}·({h}·({d}+{h}) + 2·{h})",
                                            f"{s}H" if s > 1 else "H", f"{s}·{h}" if s > 1 else f"{h}"),
                "macs": f"{two}T·{n}·H·(D+H) = {two}{t}·{n}·{h}·({d}+{h}) = {self.macs(in_shapes):,}"}

    def macs(self, in_shapes):
        (t, d), h = in_shapes[0], self.config["units"]
        return self.dirs * t * self.n_gates * (h * d + h * h)

    def work(self, in_shapes):
        """Per sample: the time-major input T·D, the gate projections and the states of every direction."""
        (t, d), h = in_shapes[0], self.config["units"]
        return t * d + self.dirs * (t * self.n_gates * h + (t + 1) * h)

    def compute_mask(self, in_masks):
        return in_masks[0] if self.config["return_sequences"] else None

    def _params_line(self, in_shapes, sym, num, state_sym, state_num):
        """"2·(core + states) = 2·(numbers) = count": per direction, the core formula and the learned initial states."""
        if self.config["learn_h0"]:
            sym, num = f"{sym} + {state_sym}", f"{num} + {state_num}"
        if self.dirs == 2:
            sym, num = f"2·({sym})", f"2·({num})"
        return f"{sym} = {num} = {self.param_count(in_shapes):,}"

    def _shape_line(self, in_shapes):
        d2 = "2H" if self.dirs == 2 else "H"
        return (f"(T, D) → {f'(T, {d2})' if self.config['return_sequences'] else f'({d2},)'} = "
                f"{fmt(self.compute_output_shape(in_shapes))}")

    # ---- compute ----
    def project(self, xt, sfx, *biases):
        """(T, B, n_gates·H): W_in x_t + the biases for every step as one GEMM."""
        t, b, d = xt.shape
        p = self.p
        xw = xt.reshape(t * b, d) @ p[self.w_in + sfx].T                     # (T·B, D) @ (D, n·H)
        for k in biases:
            xw += p[k + sfx]
        return xw.reshape(t, b, -1)

    def state(self, name, sfx, dt):
        """An initial state (H,): learned, or 0."""
        v = self.p.get(name + sfx)
        return np.zeros(self.config["units"], dt) if v is None else np.ascontiguousarray(v, dt)

    def weight(self, name, dt):
        return np.ascontiguousarray(self.p[name], dt)

    def valid(self, b, t):
        """The input's (B, T) mask of valid steps, None when every step is; sets self.mask (T, B) and self.last (B,),
        each sequence's last valid step (all valid: arrays kept between steps, never written)."""
        m = self.in_masks[0] if self.in_masks else None
        if m is None:
            full = self.__dict__.setdefault("_full", {})
            if (t, b) not in full:                                            # kept between steps, never written
                full[t, b] = np.ones((t, b), np.bool_), np.full(b, t - 1, np.int64)
            self.mask, self.last = full[t, b]
        else:
            self.mask = np.ascontiguousarray(m.T, dtype=np.bool_)             # (T, B)
            self.last = (t - 1 - np.argmax(m[:, ::-1], axis=1)).astype(np.int64)
        return m

    def forward(self, x, training=False):
        b, t, d = x.shape
        m = self.valid(b, t)
        xt = np.ascontiguousarray(x.transpose(1, 0, 2))                       # (T, B, D) time-major
        self.perm = reversal(self.mask.T if m is None else m) if any(self.backs) else None   # (T, B)
        self.perms = [self.perm if bk else None for bk in self.backs]
        cols = np.arange(b)
        jobs = []                                                             # (direction, batch slice) pairs
        for k, bk in enumerate(self.backs):
            xk = xt[self.perm, cols] if bk else xt                            # (T, B, D) read backwards when bk
            jobs += [(k, slice(lo, hi), xk) for lo, hi in self.parts(b)]
        self.runs = [None] * len(jobs)

        def go(j):
            k, c, xk = jobs[j]
            xc, mc = np.ascontiguousarray(xk[:, c]), np.ascontiguousarray(self.mask[:, c])
            self.runs[j] = (k, c, xc, mc) + self.run(self.suffixes[k], xc, mc)   # S (T+1, b, H), cache
        parallel.run(go, range(len(jobs)))
        runs, perm = self.runs, self.perms
        valid = 1 if m is None else m[:, :, None]
        hidden = lambda: gather([r[4][1:] for r in runs], runs, perm).transpose(1, 0, 2) * valid
        self.taps = Taps(hidden=hidden)                                       # (B, T, dirs·H), 0 at padded steps
        for name in runs[0][5].get("taps", {}):                               # (T, B, …, H), 0 at padded steps
            self.taps[name] = lambda name=name: np.moveaxis(gather([r[5]["taps"][name] for r in runs], runs, perm), 0, 1)
        if self.config["return_sequences"]:
            return self.taps["hidden"]
        last = [(S[t] if m is None else S[self.last[c] + 1, np.arange(c.stop - c.start)])[None]
                for _, c, _, _, S, _ in runs]
        return gather(last, runs, None)[0]                                    # (B, dirs·H)

    def parts(self, b):
        """Batch slices run on the granted threads (each sequence's time loop is independent): about 32 sequences
        each, fixed by b alone, so any thread count gives the same result."""
        return parallel.chunks(b, 1, target=32)

    def backward(self, dy):
        t, b = self.mask.shape
        h, dt, cols = self.config["units"], self.runs[0][2].dtype, np.arange(b)
        seqs = self.config["return_sequences"]
        if seqs:
            last, dyt = np.full(b, -1, np.int64), dy.transpose(1, 0, 2)       # (T, B, dirs·H)
        else:
            last, dyt = self.last, dy.reshape(1, b, -1)                       # (1, B, dirs·H)
        dys = [dyt[..., k * h:(k + 1) * h] for k in range(self.dirs)]
        if seqs:                                                              # in the order a backwards layer read
            dys = [v[self.perm, cols] if bk else v for v, bk in zip(dys, self.backs)]
        out = [None] * len(self.runs)

        def go(j):
            k, c, xc, mc, S, cache = self.runs[j]
            sfx, (tc, bc, d) = self.suffixes[k], xc.shape
            dA, D, g = self.run_back(sfx, xc, mc, S, cache, np.ascontiguousarray(dys[k][:, c], dtype=dt), last[c])
            dA2 = dA.reshape(tc * bc, -1)                                     # (T·b, n·H)
            if self.w_in + sfx not in g:                                      # (n·H, T·b) @ (T·b, D)
                g[self.w_in + sfx] = dA2.T @ xc.reshape(tc * bc, d)
            dx = (dA2 @ self.p[self.w_in + sfx]).reshape(tc, bc, d) if self.need_dx else None   # (T·b, n·H) @ (n·H, D)
            out[j] = (D, g, dx)
        parallel.run(go, range(len(self.runs)))
        for k, v in self.g.items():                                           # the runs' shares in their order
            shares = [o[1][k] for o in out if k in o[1]]
            v[...] = shares[0]
            for s in shares[1:]:
                v += s
        runs, perm = self.runs, self.perms
        self.taps["grad_hidden"] = lambda: gather([o[0] for o in out], runs, perm).transpose(1, 0, 2)   # (B, T, dirs·H)
        if not self.need_dx:
            return (None,)
        dx = gather([o[2] for o in out], runs, perm)                          # (T, B, dirs·D)
        d = dx.shape[-1] // self.dirs
        return ((dx[..., :d] + dx[..., d:] if self.dirs == 2 else dx).transpose(1, 0, 2),)   # (B, T, D)

    @classmethod
    def samples(cls):
        return [({"units": 3}, [(4, 2)]),
                ({"units": 3}, [(5, 2)], {"mask": True}),
                ({"units": 3, "return_sequences": True, "learn_h0": True}, [(5, 3)], {"mask": True}),
                ({"units": 2, "bidirectional": True}, [(5, 2)], {"mask": True}),
                ({"units": 2, "bidirectional": True, "return_sequences": True, "learn_h0": True}, [(4, 3)],
                 {"mask": True}),
                ({"units": 3, "direction": "reverse"}, [(5, 2)], {"mask": True}),
                ({"units": 2, "direction": "reverse", "return_sequences": True, "learn_h0": True}, [(4, 3)],
                 {"mask": True})]

    # ---- exporters ----
    def onnx_weights(self, sfx):
        """(W [n·H, D], R [n·H, H], B [2·n·H]) of one direction in the ONNX operator's gate order."""
        h, p = self.config["units"], self.p
        order = np.concatenate([np.arange(h) + j * h for j in self.onnx_order])
        return (p["W_ih" + sfx][order], p["W_hh" + sfx][order],
                np.concatenate([p["b_ih" + sfx][order], p["b_hh" + sfx][order]]))

    onnx_attrs = {}

    def to_onnx(self, ctx, ins):
        """ONNX RNN / LSTM / GRU (time-major), sequence_lens = lengths, direction bidirectional when set."""
        n, h, dirs = self.name, self.config["units"], self.dirs
        xt = ctx.op("Transpose", ins, f"{n}/time_major", perm=[1, 0, 2])                         # (T, B, D)
        W, R, B = (np.stack(v) for v in zip(*(self.onnx_weights(s) for s in self.suffixes)))
        args = [xt, ctx.const(f"{n}/W", W), ctx.const(f"{n}/R", R), ctx.const(f"{n}/B", B), ctx.lengths()]
        if self.config["learn_h0"]:                                                              # (dirs, B, H)
            b = ctx.op("Gather", [ctx.op("Shape", ins, f"{n}/xshape"), ctx.const(f"{n}/i0", [0], np.int64)], f"{n}/b")
            shape = ctx.op("Concat", [ctx.const(f"{n}/dirs", [dirs], np.int64), b,
                                      ctx.const(f"{n}/h", [h], np.int64)], f"{n}/h0shape", axis=0)
            for s in self.states:
                v = np.stack([self.p[s + sfx] for sfx in self.suffixes])[:, None]                 # (dirs, 1, H)
                args.append(ctx.op("Expand", [ctx.const(f"{n}/{s}", v), shape], f"{n}/{s}b"))
        y, yh = f"{n}/Y", f"{n}/Y_h"
        ctx.nodes.append(ctx.h.make_node(self.onnx_op, args, [y, yh], name=f"{n}/{self.onnx_op.lower()}",
                                         hidden_size=h, direction="bidirectional" if dirs == 2 else
                                         self.config["direction"],
                                         **self.onnx_attrs))
        if self.config["return_sequences"]:                                                      # Y (T, dirs, B, H)
            ys = ctx.op("Transpose", [y], f"{n}/Yt", perm=[2, 0, 1, 3])                          # (B, T, dirs, H)
            return ctx.op("Reshape", [ys, ctx.const(f"{n}/shape", [0, 0, dirs * h], np.int64)], n)
        hs = ctx.op("Transpose", [yh], f"{n}/Y_ht", perm=[1, 0, 2])                              # (B, dirs, H)
        return ctx.op("Reshape", [hs, ctx.const(f"{n}/shape", [0, dirs * h], np.int64)], n)     # (B, dirs·H)

    def torch_names(self):
        """Our parameter name (without direction suffix) -> its name under the torch module (l0 weights)."""
        return {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}

    torch_opts = ""       # extra constructor arguments of the torch module

    def to_torch(self):
        from ..torch_export.emitters import Emitted
        c, d = self.config, self.in_shapes[0][-1]
        rnn = (f"{self.torch_class}({d}, {c['units']}{self.torch_opts}, batch_first=True"
               f"{', bidirectional=True' if self.dirs == 2 else ''})")
        opts = "".join([", return_sequences=True" if c["return_sequences"] else "",
                        ", learn_h0=True" if c["learn_h0"] else "", ", reverse=True" if self.backs == (True,) else ""])
        names = {}
        for sfx, tsfx in zip(self.suffixes, ("", "_reverse")):
            for k, v in self.torch_names().items():
                names[k + sfx] = (f"rnn.{v}_l0{tsfx}" if isinstance(v, str) else
                                  (tuple(f"rnn.{t}_l0{tsfx}" for t in v[0]),) + tuple(v[1:]))
            names.update({s + sfx: s + tsfx for s in self.states})
        flip = ("flip_valid",) if self.backs == (True,) else ()             # reverse: valid steps flipped around rnn
        return Emitted(f"Recurrent({rnn}{opts})", names, helpers=("Recurrent",) + flip,
                       sources={"Recurrent": TORCH_MODULE, "flip_valid": FLIP_VALID},
                       call="{self}({x0}, {mask})", uses_mask=True)

    def torch_reference(self, xs, p, torch):
        """The gate equations step by step in torch (full-length sequences; masks: tests/test_lstm_gru.py)."""
        x, h, outs, lasts = xs[0], self.config["units"], [], []
        for sfx, bk in zip(self.suffixes, self.backs):
            xk = x.flip(1) if bk else x
            st = [(p[s + sfx] if s + sfx in p else torch.zeros(h, dtype=x.dtype)).expand(len(x), -1)
                  for s in self.states]
            hs = []
            for t in range(x.shape[1]):
                st = self.torch_step(xk[:, t], st, {k[:len(k) - len(sfx)] if sfx else k: v for k, v in p.items()
                                                   if k.endswith(sfx)}, torch)
                hs.append(st[0])
            y = torch.stack(hs, 1)
            outs.append(y.flip(1) if bk else y)
            lasts.append(st[0])
        return torch.cat(outs, -1) if self.config["return_sequences"] else torch.cat(lasts, -1)
