"""Where one training step of workload e goes: one-thread CPU time per group / layer forward and backward, the loss,
the squared gradient norm, the optimizer, and the Python between them; and the batch-parallel loops per step.

    python benchmarks/profile_e.py [--steps 200] [--threads 1]

CPU time (time.process_time_ns) is what the load changes least; the loop count is exact. Each wrapped call costs
≈ 1 µs of its own, counted in "between".
"""
import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kernels", action="store_true", help="also time the kernels inside the loops (shown indented)")
    a = ap.parse_args(argv)
    import wl_transformer as wl
    from engine import losses, optimizers, parallel, trainer
    from engine._malloc import keep_freed_memory
    from engine.parallel import thread_limits

    step = wl.engine_step()
    keep_freed_memory()                                            # as Trainer.run and bench.py
    tr, m = step.trainer, step.trainer.model
    clock = time.process_time_ns
    tot, loops = defaultdict(int), [0]

    def wrap(obj, attr, key):
        fn = getattr(obj, attr)

        def timed(*args, **kw):
            t = clock()
            try:
                return fn(*args, **kw)
            finally:
                tot[key] += clock() - t
        setattr(obj, attr, timed)

    for first, g in m.groups.items():
        name = f"{type(g).__name__}({first})"
        wrap(g, "forward", name + " fwd")
        wrap(g, "backward", name + " bwd")
    inner = {v for g in m.groups.values() for v in g.nodes}
    for n, layer in m.layers.items():
        if n not in inner:
            wrap(layer, "forward", f"{layer.type}({n}) fwd")
            wrap(layer, "backward", f"{layer.type}({n}) bwd")
    if a.kernels:                                                  # kernels called from Python inside the loops,
        from engine.layers import attention, fusion_block, fusion_ffn, fusion_sublayer   # wrapped where they are
        for mod, names in ((attention, ("rows_fwd", "rows_bwd", "stack_qkv")), (fusion_ffn, ("rows_fwd", "rows_bwd")),
                           (fusion_sublayer, ("_ln_fwd", "_ln_bwd")),     # called (never engine.kernels' own names:
                           (fusion_block, ("_weighted_sum", "_spread", "sum_runs"))):   # kernels calling them)
            for k in names:
                wrap(mod, k, f"    kernel {mod.__name__.rsplit('.', 1)[1]}.{k}")
    wrap(tr, "loss", "loss")
    wrap(tr.opt, "step", "optimizer")
    wrap(trainer, "sq_norm", "sq_norm")
    run = parallel._pool.run

    def counted(fn, items, n):
        loops[0] += len(items) > 1
        t = clock()
        try:
            return run(fn, items, n)
        finally:
            tot["  (of which inside parallel.run)"] -= clock() - t      # shown apart, not double-counted
            inloop[0] += clock() - t
    parallel._pool.run = counted
    inloop = [0]
    with thread_limits(a.threads):
        for _ in range(20):
            step()
        tot.clear()
        loops[0] = inloop[0] = 0
        t0 = clock()
        for _ in range(a.steps):
            step()
        whole = (clock() - t0) / a.steps / 1e3
    tot.pop("  (of which inside parallel.run)", None)
    parts = {k: v / a.steps / 1e3 for k, v in tot.items()}
    kern = {k: parts.pop(k) for k in list(parts) if k.startswith("    ")}
    print(f"threads {a.threads}, {a.steps} steps: whole step {whole:.0f} µs CPU, parallel loops per step "
          f"{loops[0] / a.steps:g}")
    for k, v in parts.items():
        print(f"  {k:45s} {v:7.0f} µs")
    for k, v in kern.items():
        print(f"  {k:45s} {v:7.0f} µs")
    print(f"  {'  inside parallel.run loops (all of the above)':45s} {inloop[0] / a.steps / 1e3:7.0f} µs")
    print(f"  {'between (Python, model.forward/backward)':45s} {whole - sum(parts.values()):7.0f} µs")


if __name__ == "__main__":
    main()
