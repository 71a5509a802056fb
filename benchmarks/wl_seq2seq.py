"""Workload g (issue 24): a transformer encoder–decoder, one training step with teacher forcing.

Source and target token ids (length 24 each, 32-token vocabularies), learned embeddings and positions (d_model 64),
2 encoder blocks (self-attention, 4 heads, FFN 64→128→64 with ReLU, each with a residual Add and post-LayerNorm) and
2 decoder blocks (causal self-attention, cross-attention to the encoder's output, FFN, the same), Dense(64→32), softmax
cross-entropy over every target step; batch 64, Adam lr 1e-3. The PyTorch twin is nn.Transformer (batch_first,
post-norm, dropout 0, no final encoder/decoder LayerNorm, so that both compute the same layers) with a causal
target mask.

    python benchmarks/bench.py --only g          # alternating engine / PyTorch processes
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

S = T = 24
D, HEADS, FF, V, B, BLOCKS = 64, 4, 128, 32, 64, 2


def batch(seed=0):
    """(source ids (B, S) float32, targets (B, T) int64 in 4…V−1 ending with <end> = 3)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(4, V, (B, T))
    y[:, -1] = 3
    return rng.integers(4, V, (B, S)).astype(np.float32), y


def engine_step():
    """Trainer.train_step on the Model of engine.seq2seq.transformer: the code real training runs."""
    from engine.data import Dataset
    from engine.model import Model
    from engine.seq2seq import transformer
    from steps import adam_step
    x, y = batch()
    m = Model(transformer(S, T, V, V, d=D, heads=HEADS, enc=BLOCKS, dec=BLOCKS, ff=FF), dtype=np.float32, seed=0)
    voc = [str(i) for i in range(V)]
    data = Dataset(x, y, "multiclass", "workload g", voc, lengths=np.full(B, S), target_lengths=np.full(B, T),
                   target_vocab=voc, vocab=voc)
    return adam_step(m, data, "cce", B)                 # the trainer's teacher-forced batch, every step valid


def torch_step():
    try:
        import torch
    except ImportError:
        return None
    nn = torch.nn
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embed, self.tgt_embed = nn.Embedding(V, D), nn.Embedding(V, D)
            self.src_pos, self.tgt_pos = nn.Parameter(torch.zeros(S, D)), nn.Parameter(torch.zeros(T, D))
            enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, HEADS, FF, 0.0, batch_first=True), BLOCKS,
                                        enable_nested_tensor=False)
            dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, HEADS, FF, 0.0, batch_first=True), BLOCKS)
            self.tf = nn.Transformer(D, HEADS, custom_encoder=enc, custom_decoder=dec, batch_first=True)
            self.out = nn.Linear(D, V)
            self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(T))

        def forward(self, src, tgt):
            h = self.tf(self.src_embed(src) + self.src_pos, self.tgt_embed(tgt) + self.tgt_pos,
                        tgt_mask=self.causal, tgt_is_causal=True)
            return self.out(h)                                               # (B, T, V) logits

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xn, yn = batch()
    src, y = torch.from_numpy(xn).long(), torch.from_numpy(yn)
    tgt = torch.cat([torch.full((B, 1), 2), y[:, :-1]], 1)                  # teacher forcing: <start>, y shifted

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(src, tgt).reshape(-1, V), y.reshape(-1)).backward()
        opt.step()
    return step


def _flop():
    """Forward multiply-adds ×2 ×3 (forward and backward) of the engine's graph, per step."""
    from engine.model import Model
    from engine.seq2seq import transformer
    m = Model(transformer(S, T, V, V, d=D, heads=HEADS, enc=BLOCKS, dec=BLOCKS, ff=FF))
    return 6.0 * B * sum(i.macs for i in m.infos.values())


FLOP = 1717.6e6       # per step: _flop() (the graph's forward multiply-adds × 2 × 3)
WORKLOADS = {"g": (engine_step, torch_step, FLOP, B)}     # discovered by benchmarks/bench.py
