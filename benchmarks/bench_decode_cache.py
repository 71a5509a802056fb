"""Decoding CPU time with the encoder's output cached (engine.seq2seq.Step.bind) against re-running the whole model
for every generated token: greedy and beam 4 over 256 validation pairs of the dates example (trained 60 steps),
one thread, alternating runs, the same tokens asserted.

    python benchmarks/bench_decode_cache.py
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from engine.decode import beam, greedy  # noqa: E402
from engine.parallel import thread_limits  # noqa: E402
from engine.project import Project  # noqa: E402
from engine.seq2seq import model_step  # noqa: E402
from engine.session import prepare  # noqa: E402


def main(reps=3, n=256, batch=64):
    model, tr = prepare(Project.load(ROOT / "resources" / "examples" / "dates-translation.json"))
    rng = np.random.default_rng(0)
    for _ in range(60):
        xb, yb, mb = tr._batch(tr.train, np.sort(rng.choice(len(tr.train), 64, replace=False)))
        tr.train_step(xb, yb, mb)
    src, lg, T = np.asarray(tr.val.x[:n]), tr.val.lengths[:n], tr.val.y.shape[1]
    with thread_limits(1):
        for k in (1, 4):
            cpu, outs = {True: [], False: []}, {}
            for _ in range(reps):
                for cache in (True, False):
                    step, out = model_step(model, cache=cache), []
                    t = time.process_time()
                    for i in range(0, n, batch):
                        s, ln = src[i:i + batch], lg[i:i + batch]
                        out += greedy(step, s, ln, T) if k == 1 else beam(step, s, ln, T, k)
                    cpu[cache].append(time.process_time() - t)
                    outs[cache] = out
            assert outs[True] == outs[False], "cached decoding gave other tokens"
            a, b = min(cpu[True]), min(cpu[False])
            print(f"{'greedy' if k == 1 else f'beam {k}'}: cached {a:.3f} s CPU, whole model {b:.3f} s CPU, "
                  f"{b / a:.2f}x ({n} pairs, {np.mean([len(o) for o in outs[True]]):.1f} tokens each)")


if __name__ == "__main__":
    main()
