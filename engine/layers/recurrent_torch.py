"""The PyTorch modules the recurrent layers export to (the source texts the PyTorch code export writes)."""

TORCH_MODULE = '''class Recurrent(nn.Module):
    """nn.RNN / nn.LSTM / nn.GRU (batch_first) on variable-length batches: (B, T, D) → (B, T, dirs·H), or the final
    states (B, dirs·H): forward's at each sequence's last valid step, backward's at step 0. Padded steps (mask
    False) change no state and output 0; h0 (and c0) are learned initial states when learn_h0; reverse: the rnn
    reads each sequence from its last valid step back to its first (ONNX direction=reverse)."""

    def __init__(self, rnn, return_sequences=False, learn_h0=False, reverse=False):
        super().__init__()
        self.rnn, self.return_sequences, self.reverse = rnn, return_sequences, reverse
        H, sfx = rnn.hidden_size, ("", "_reverse")[:1 + rnn.bidirectional]
        self.states = [n + s for n in (("h0", "c0") if isinstance(rnn, nn.LSTM) else ("h0",)) for s in sfx]
        for n in self.states if learn_h0 else ():
            setattr(self, n, nn.Parameter(torch.zeros(H)))
        self.learn_h0 = learn_h0

    def forward(self, x, mask=None):
        B, T, _ = x.shape
        state = None
        if self.learn_h0:
            dirs = 1 + self.rnn.bidirectional
            v = [getattr(self, n).expand(B, -1) for n in self.states]
            state = tuple(torch.stack(v[i:i + dirs]).contiguous() for i in range(0, len(v), dirs))  # (dirs, B, H)
            state = state if len(state) > 1 else state[0]
        if self.reverse:
            x = flip_valid(x, mask)
        if mask is not None:
            lengths = mask.sum(1).cpu()
            x = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, h = self.rnn(x, state)
        if mask is not None:
            y = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)[0]   # (B, T, dirs·H)
        if self.return_sequences:
            return flip_valid(y, mask) if self.reverse else y
        h = h[0] if isinstance(h, tuple) else h                                        # (dirs, B, H)
        return h.transpose(0, 1).reshape(B, -1)                                        # (B, dirs·H)

'''

FLIP_VALID = '''def flip_valid(x, mask=None):
    """(B, T, F) with each sequence's valid steps (mask True, a prefix) in reverse order; padded steps stay."""
    B, T, F = x.shape
    t = torch.arange(T, device=x.device)
    n = mask.sum(1, keepdim=True) if mask is not None else torch.full((B, 1), T, device=x.device)
    idx = torch.where(t < n, n - 1 - t, t)                                         # (B, T)
    return x.gather(1, idx[..., None].expand(B, T, F))
'''

GRU_RESET_FIRST = '''class GRUResetFirst(nn.Module):
    """ONNX's default GRU (linear_before_reset = 0; nn.GRU is the other form): r, z = σ(W_i· x_t + b_i· + W_h· h + b_h·),
    n = tanh(W_in x_t + b_in + W_hn (r ⊙ h) + b_hn), h_t = (1 − z) ⊙ n + z ⊙ h; batch_first (B, T, D) → (B, T, dirs·H)
    or the final states (B, dirs·H). Padded steps (mask False) keep the state and output 0; reverse reads each
    sequence from its last valid step back; bidirectional: both."""

    def __init__(self, input_size, hidden_size, return_sequences=False, learn_h0=False, bidirectional=False,
                 reverse=False):
        super().__init__()
        self.return_sequences, self.learn_h0 = return_sequences, learn_h0
        self.dirs = [("", False), ("_reverse", True)] if bidirectional else [("", reverse)]
        k = hidden_size ** -0.5
        for sfx, _ in self.dirs:
            for n, shape in (("weight_ih", (3 * hidden_size, input_size)), ("weight_hh", (3 * hidden_size, hidden_size)),
                             ("bias_ih", (3 * hidden_size,)), ("bias_hh", (3 * hidden_size,))):
                setattr(self, f"{n}_l0{sfx}", nn.Parameter(torch.empty(shape).uniform_(-k, k)))
            if learn_h0:
                setattr(self, "h0" + sfx, nn.Parameter(torch.zeros(hidden_size)))
        self.hidden_size = hidden_size

    def forward(self, x, mask=None):
        B, T, _ = x.shape
        m = mask if mask is not None else torch.ones(B, T, dtype=torch.bool, device=x.device)
        outs, lasts = [], []
        for sfx, back in self.dirs:
            w_ih, w_hh = getattr(self, "weight_ih_l0" + sfx), getattr(self, "weight_hh_l0" + sfx)
            b_ih, b_hh = getattr(self, "bias_ih_l0" + sfx), getattr(self, "bias_hh_l0" + sfx)
            (w_hr, w_hz, w_hn), (b_hr, b_hz, b_hn) = w_hh.chunk(3, 0), b_hh.chunk(3)
            xs = flip_valid(x, m) if back else x
            h = (getattr(self, "h0" + sfx) if self.learn_h0 else x.new_zeros(self.hidden_size)).expand(B, -1)
            ys = []
            for t in range(T):
                xr, xz, xn = (xs[:, t] @ w_ih.T + b_ih).chunk(3, -1)
                r = torch.sigmoid(xr + h @ w_hr.T + b_hr)
                z = torch.sigmoid(xz + h @ w_hz.T + b_hz)
                n = torch.tanh(xn + (r * h) @ w_hn.T + b_hn)
                keep = m[:, t, None]
                h = torch.where(keep, (1 - z) * n + z * h, h)
                ys.append(h * keep)
            y = torch.stack(ys, 1)                                                     # (B, T, H)
            outs.append(flip_valid(y, m) if back else y)
            lasts.append(h)
        return torch.cat(outs if self.return_sequences else lasts, -1)
'''
