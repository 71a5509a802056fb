"""The digits-cnn epoch of `layerboard train` by part: CPU time per layer group (forward, backward), loss,
optimizer, divergence checks, augmentation, validation; and the batch-parallel loops per epoch by call site.

    python benchmarks/profile_epoch.py [--threads 1] [--epochs 3]   (from the worktree root; CPU time, not wall)

Parts are timed with the calling thread's CPU time (time.thread_time), so on two threads a part's own figure is
the main thread's share; the process CPU and the wall time of each epoch are printed next to them."""
import argparse
import collections
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--wall", action="store_true", help="time the parts in wall time, not the main thread's CPU")
    ap.add_argument("--kernels", action="store_true", help="also time the numba kernels the conv groups call")
    ap.add_argument("--project", default=os.path.join(ROOT, "resources", "examples", "digits-cnn.json"))
    a = ap.parse_args(argv)
    from engine import parallel, divergence, trainer as trainer_mod
    from engine.project import Project
    from engine.session import prepare
    m, tr = prepare(Project.load(a.project))
    tr.threads = a.threads
    tr.cfg = dict(tr.cfg, epochs=a.epochs)
    clock = time.perf_counter if a.wall else time.thread_time
    spent = collections.defaultdict(float)
    depth = [0]

    def wrap(obj, meth, key, outer=False):
        f = getattr(obj, meth)

        def timed(*args, **kw):
            if depth[0] and not outer:
                return f(*args, **kw)
            t = clock()
            depth[0] += 1
            try:
                return f(*args, **kw)
            finally:
                depth[0] -= 1
                spent[key] += clock() - t
        setattr(obj, meth, timed)

    def kernel(f, key):
        def timed(*args):
            t = clock()
            try:
                return f(*args)
            finally:
                spent[key] += clock() - t
        return timed

    for g in m.groups.values():
        wrap(g, "forward", "train F " + "+".join(g.nodes))
        wrap(g, "backward", "train B " + "+".join(g.nodes))
    for name, layer in m.layers.items():
        if name not in m.inner:
            wrap(layer, "forward", f"train F {name}")
            wrap(layer, "backward", f"train B {name}")
    wrap(tr.opt, "step", "optimizer")
    loss = tr.loss

    class Timed:
        """The loss with its calls timed."""
        def __getattr__(self, k):
            return getattr(loss, k)

        def __call__(self, *args, **kw):
            t = clock()
            try:
                return loss(*args, **kw)
            finally:
                spent["loss"] += clock() - t
    tr.loss = Timed()
    wrap(tr, "evaluate", "validation (evaluate)")
    wrap(tr, "_predicts_well", "divergence: _predicts_well")
    wrap(tr, "_copy", "divergence: weight copies")
    if hasattr(tr, "_snapshot"):
        wrap(tr, "_snapshot", "divergence: weight snapshot after each step")
    wrap(tr, "_correct", "accuracy")
    wrap(tr, "_emit", "events")
    if tr.augment is not None:
        wrap(tr, "augment", "augmentation (main thread)")
    if a.kernels:                                       # numba dispatchers looked up at call time
        from engine.layers import conv_gemm, conv_kernels, norm_kernels
        for mod in (conv_gemm, conv_kernels, norm_kernels):
            for name in dir(mod):
                f = getattr(mod, name)
                if hasattr(f, "py_func"):
                    setattr(mod, name, kernel(f, f"  kernel {mod.__name__.rsplit('.', 1)[-1]}.{name}"))
    sq = trainer_mod.sq_norm
    trainer_mod.sq_norm = lambda v: (spent.__setitem__("sq_norm", spent["sq_norm"] - clock()),
                                     sq(v), spent.__setitem__("sq_norm", spent["sq_norm"] + clock()))[1]
    sites, run = collections.Counter(), parallel._pool.run

    def counted(fn, items, threads):
        if min(threads, len(items)) > 1:
            st = traceback.extract_stack()[-4:-1]
            sites[" < ".join(f"{os.path.basename(f.filename)}:{f.name}" for f in reversed(st))] += 1
        return run(fn, items, threads)
    parallel._pool.run = counted
    marks = []

    def on(ev):
        if ev.kind == "epoch_end":
            marks.append((time.perf_counter(), time.process_time(), clock(), dict(spent), sum(sites.values())))
    tr.subscribe(on)
    marks.append((time.perf_counter(), time.process_time(), clock(), {}, 0))
    tr.run()
    print(f"load average {os.getloadavg()[0]:.2f}; threads {a.threads}; {tr.steps_per_epoch} steps per epoch")
    for e in range(1, len(marks)):
        (w0, p0, c0, s0, l0), (w1, p1, c1, s1, l1) = marks[e - 1], marks[e]
        print(f"epoch {e}: wall {w1 - w0:.3f} s, process CPU {p1 - p0:.3f} s, main thread CPU {c1 - c0:.3f} s, "
              f"loops {l1 - l0}")
    (w0, p0, c0, s0, l0), (w1, p1, c1, s1, l1) = marks[-2], marks[-1]
    tot = c1 - c0
    print("last epoch, main thread CPU by part:")
    for k in sorted(s1, key=lambda k: -(s1[k] - s0.get(k, 0))):
        v = s1[k] - s0.get(k, 0)
        print(f"  {k:60s} {v * 1e3:8.1f} ms {100 * v / tot:5.1f} %")
    print(f"  {'rest':60s} {(tot - sum(s1[k] - s0.get(k, 0) for k in s1)) * 1e3:8.1f} ms")
    print(f"loops in the last epoch by site: {l1 - l0}")
    for k, v in sites.most_common():
        print(f"  {v / (len(marks) - 1):8.1f}/epoch  {k}")


if __name__ == "__main__":
    main()
