"""Workload f (issue 22): LSTM (input 32, hidden 128, T = 64), last state → Dense(128→1), MSE, batch 64, Adam lr 1e-3;
one step = zero grads + forward + loss + backward + step. Timed by bench.py:

    python benchmarks/bench.py --only f
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recurrent import recurrent  # noqa: E402  (benchmarks/ is on the path: the script's folder, or bench.py's)

T, D, H, B = 64, 32, 128, 64
# per step, counted by hand (torch's flop counter does not see aten::lstm): forward 2·T·B·4H·(D+H) = 671 MFLOP,
# backward twice that (∂x, ∂h_{t−1}, ∂W_ih, ∂W_hh), the head and Adam negligible
FLOP = 3 * 2 * T * B * 4 * H * (D + H)

batch, engine_step, torch_step = recurrent("LSTM", T, D, H, B, "f")

WORKLOADS = {"f": (engine_step, torch_step, FLOP, B)}     # discovered by benchmarks/bench.py
