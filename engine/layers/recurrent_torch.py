"""The PyTorch module the recurrent layers export to (the source text the PyTorch code export writes)."""

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


def flip_valid(x, mask=None):
    """(B, T, F) with each sequence's valid steps (mask True, a prefix) in reverse order; padded steps stay."""
    B, T, F = x.shape
    t = torch.arange(T, device=x.device)
    n = mask.sum(1, keepdim=True) if mask is not None else torch.full((B, 1), T, device=x.device)
    idx = torch.where(t < n, n - 1 - t, t)                                         # (B, T)
    return x.gather(1, idx[..., None].expand(B, T, F))
'''
