"""Workload c's training step: CPU time per layer group (forward, backward), loss and optimizer on one thread,
and the batch-parallel loops (engine/parallel.py) per step on two threads, by call site; then the serial part (CPU
time outside any loop) against each loop's, with its best two-thread share.

    python benchmarks/profile_c.py [steps]       (from the worktree root; compare CPU time, not wall time)
"""
import collections
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]


def main(n=300):
    import wl_cnn
    from engine import parallel
    from engine._malloc import keep_freed_memory
    from engine.trainer import thread_limits
    step = wl_cnn.engine_callables()[0]
    tr, m, clock = step.trainer, step.trainer.model, time.process_time
    keep_freed_memory()
    spent = collections.defaultdict(float)

    def wrap(obj, meth, key):
        f = getattr(obj, meth)

        def timed(*a, **k):
            t = clock()
            r = f(*a, **k)
            spent[key] += clock() - t
            return r
        setattr(obj, meth, timed)

    for g in m.groups.values():
        wrap(g, "forward", "F " + "+".join(g.nodes))
        wrap(g, "backward", "B " + "+".join(g.nodes))
    for name, layer in m.layers.items():
        if name not in m.inner:
            wrap(layer, "forward", f"F {name}")
            wrap(layer, "backward", f"B {name}")
    wrap(tr.opt, "step", "optimizer")
    wrap(tr, "loss", "loss")
    wrap(tr, "train_step", "TOTAL")
    sites, run = collections.Counter(), parallel._pool.run

    def counted(fn, items, threads):
        if min(threads, len(items)) > 1:
            st = traceback.extract_stack()[-4:-1]
            sites[" < ".join(f"{os.path.basename(f.filename)}:{f.name}" for f in reversed(st))] += 1
        return run(fn, items, threads)
    parallel._pool.run = counted
    with thread_limits(1):
        for _ in range(30):
            step()
        spent.clear()
        for _ in range(n):
            step()
    total = spent.pop("TOTAL")
    print(f"load average {os.getloadavg()[0]:.2f}; CPU ms per step on one thread ({n} steps)")
    for k, v in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {k:40s} {v / n * 1e3:7.3f}")
    print(f"  {'rest (Python, loss glue, gradient norm)':40s} {(total - sum(spent.values())) / n * 1e3:7.3f}")
    print(f"  {'step':40s} {total / n * 1e3:7.3f}")
    with thread_limits(2):
        for _ in range(5):
            step()
        sites.clear()
        for _ in range(20):
            step()
    print(f"parallel loops per step on two threads: {sum(sites.values()) / 20:g}")
    for k, v in sites.most_common():
        print(f"  {v / 20:g}  {k}")
    serial_and_parallel(step, n)


def serial_and_parallel(step, n):
    """One thread: CPU time inside each batch-parallel loop (its items in turn) and outside any loop (serial on two
    threads too); a loop's two-thread share is its items dealt greedily to two threads (the longer side)."""
    from engine import parallel
    from engine.trainer import thread_limits
    clock, inside, two, items = time.process_time, collections.Counter(), collections.Counter(), {}
    run = parallel.run

    def timed(fn, its):
        its, t, sides = list(its), [], [0.0, 0.0]
        for it in its:
            c = clock()
            fn(it)
            t.append(clock() - c)
            sides[int(sides[1] < sides[0])] += t[-1]
        st = traceback.extract_stack()[-3:-1]
        key = " < ".join(f.name for f in reversed(st))
        inside[key] += sum(t)
        two[key] += max(sides)
        items[key] = max(items.get(key, 0), len(its))
    parallel.run = timed
    try:
        with thread_limits(1):
            for _ in range(10):
                step()
            inside.clear(), two.clear()
            t = clock()
            for _ in range(n):
                step()
            total = clock() - t
    finally:
        parallel.run = run
    par, crit = sum(inside.values()), sum(two.values())
    print(f"serial and parallel (one thread, CPU ms per step; load {os.getloadavg()[0]:.2f})")
    print(f"  {'outside any loop (serial)':44s} {(total - par) / n * 1e3:7.3f}")
    for k in inside:
        print(f"  loop {k:39s} {inside[k] / n * 1e3:7.3f}  items ≤ {items[k]}, two threads {two[k] / n * 1e3:.3f}")
    print(f"  {'step':44s} {total / n * 1e3:7.3f}; on two threads at best {(total - par + crit) / n * 1e3:.3f} "
          f"(serial {(total - par) / (total - par + crit) * 100:.0f} %)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
