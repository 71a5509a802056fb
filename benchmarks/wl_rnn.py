"""Workload d of shared/reference/benchmark-workloads.md: plain tanh RNN (input 8, hidden 64, T = 50), last
state → Dense(64→1), MSE, batch 32, Adam lr 1e-3; one step = zero grads + forward + loss + backward + step.

    python benchmarks/wl_rnn.py               # alternate engine / torch (default threads) / torch (1 thread),
                                              # each in its own process, and print the medians and ratios
    python benchmarks/wl_rnn.py engine|torch [threads]   # one side in this process: ms/step of one block set
"""
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recurrent import recurrent  # noqa: E402  (benchmarks/ is on the path: the script's folder, or bench.py's)

T, D, H, B = 50, 8, 64, 32
FLOP = 42.4e6          # per step, as torch's flop counter counts them (shared/reference/benchmark-workloads.md)

batch, engine_step, torch_step = recurrent("RNN", T, D, H, B, "d")

WORKLOADS = {"d": (engine_step, torch_step, FLOP, B)}     # discovered by benchmarks/bench.py


def time_side(side, threads=None, blocks=15, block=0.2):
    """Median ms/step over blocks of about `block` seconds, after warm-up, in this process."""
    if side == "torch":
        import torch
        if threads:
            torch.set_num_threads(threads)
        fn = torch_step()
        ctx = None
    else:
        from threadpoolctl import threadpool_limits
        fn = engine_step()
        ctx = threadpool_limits(limits=1, user_api="blas")          # training GEMMs on one BLAS thread
        ctx.__enter__()
    for _ in range(20):
        fn()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.3:
        fn()
        n += 1
    per = max(1, int(block / ((time.perf_counter() - t0) / n)))
    meds = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(per):
            fn()
        meds.append((time.perf_counter() - t0) / per * 1e3)
    return statistics.median(meds)


def main():
    if len(sys.argv) > 1:
        print(f"{time_side(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None):.4f}")
        return
    runs = {"engine": [], "torch": [], "torch-1": []}
    for _ in range(3):                                   # alternate, each side in a fresh process
        for key, args in (("engine", ["engine"]), ("torch", ["torch"]), ("torch-1", ["torch", "1"])):
            out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
            runs[key].append(float(out.stdout.split()[-1]))
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in med.items():
        print(f"d {k:8s} {v:7.3f} ms/step  {B / v * 1e3:8.0f} samples/s  {FLOP / v / 1e6:5.1f} GFLOP/s   runs {runs[k]}")
    print(f"ratio torch/engine: {med['torch'] / med['engine']:.2f}× (default threads), "
          f"{med['torch-1'] / med['engine']:.2f}× (1 thread)")


if __name__ == "__main__":
    main()
