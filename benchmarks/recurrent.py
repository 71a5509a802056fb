"""The recurrent workloads' shared builders: Input (T, D) → RNN/LSTM(H) → last state → Dense(H→1), MSE,
Adam lr 1e-3, batch B; one step = zero grads + forward + loss + backward + step (every step full length: no mask)."""
import numpy as np


def recurrent(kind, T, D, H, B, wl):
    """(batch, engine step builder, torch step builder) of workload `wl` with a `kind` layer ("RNN", "LSTM")."""

    def batch(seed=0):
        rng = np.random.default_rng(seed)
        return rng.normal(0, 1, (B, T, D)).astype(np.float32), rng.normal(0, 1, (B, 1)).astype(np.float32)

    def engine_step():
        """Trainer.train_step on a Model built from a Graph (every step full length: no mask)."""
        from engine import Graph
        from engine.data import Dataset
        from engine.model import Model
        from steps import adam_step
        x, y = batch()
        g = Graph()
        g.chain(("x", "Input", {"shape": [T, D]}), (kind.lower(), kind, {"units": H}), ("out", "Dense", {"units": 1}))
        m = Model(g, dtype=np.float32, seed=0)
        return adam_step(m, Dataset(x, y, "regression", f"workload {wl}"), "mse", B, (x, y))

    def torch_step():
        try:
            import torch
        except ImportError:
            return None
        torch.manual_seed(0)
        nn = torch.nn
        rnn, head = getattr(nn, kind)(D, H, batch_first=True), nn.Linear(H, 1)
        opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=1e-3)
        xn, yn = batch()
        x, y = torch.from_numpy(xn), torch.from_numpy(yn)
        lossf = nn.MSELoss()

        def step():
            opt.zero_grad()
            _, hn = rnn(x)
            hn = hn[0] if kind == "LSTM" else hn           # LSTM: (h_n, c_n)
            lossf(head(hn[0]), y).backward()
            opt.step()
        return step

    return batch, engine_step, torch_step
