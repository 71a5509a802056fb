"""What a two-thread step did, for the fast/slow mode (benchmarks/mode_probe.py, bench.py --diag): per-thread CPU
time, sleeps (voluntary context switches: futex or GIL waits) and preemptions from /proc, and per-loop timings from
engine.parallel.trace(). Counts, not wall times: they show the mode's cause even on a loaded machine."""
import os
import statistics
import threading
import time


def task_stats():
    """{tid: (name, cpu ns, run-queue wait ns, voluntary switches, involuntary switches, last vCPU)} (Linux)."""
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        p = f"/proc/self/task/{tid}"
        try:
            name = open(f"{p}/comm").read().strip()
            run, wait, _ = (int(v) for v in open(f"{p}/schedstat").read().split())
            st = {ln.split(":")[0]: ln.split(":")[1].strip() for ln in open(f"{p}/status")}
            cpu = int(open(f"{p}/stat").read().rsplit(")", 1)[1].split()[36])
        except (OSError, ValueError, IndexError, KeyError):
            continue
        out[int(tid)] = (name, run, wait, int(st["voluntary_ctxt_switches"]), int(st["nonvoluntary_ctxt_switches"]),
                         cpu)
    return out


def per_thread(s0, s1, steps):
    """{"main" or thread name: {cpu_us, wait_us, sleeps, preempted (per step), vcpu}} of the threads that ran."""
    me = threading.get_native_id()
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for tid, v in s1.items():
        if tid in s0:
            d = [(v[i] - s0[tid][i]) / steps for i in (1, 2, 3, 4)]
            if d[0] > 0 or tid == me:
                out["main" if tid == me else names.get(tid, f"{v[0]}:{tid}")] = {
                    "cpu_us": round(d[0] / 1e3, 1), "wait_us": round(d[1] / 1e3, 1), "sleeps": round(d[2], 2),
                    "preempted": round(d[3], 2), "vcpu": v[5]}
    return out


def describe(loops, per_step):
    """Per loop of the step (medians over steps, µs): gap_before (since the previous loop ended), dur, wake (publish
    → the first item of another thread), tail (the caller's items done → all done), items by the caller and the
    others, item_us per item index, asleep (share of loops whose workers slept at publish)."""
    med = lambda v: round(statistics.median(v), 1) if v else None      # noqa: E731
    out = []
    for k in range(per_step):
        ls = loops[k::per_step]
        prev = [loops[i - 1]["end"] for i in range(k, len(loops), per_step) if i > 0]
        gap = [(lp["start"] - p) / 1e3 for lp, p in zip(ls[1:] if k == 0 else ls, prev)]
        wake, tail, mine, theirs, asleep, dur, per_item = [], [], [], [], [], [], {}
        for lp in ls:
            w = [it for it in lp["items"] if it[0] != lp["caller"]]
            if w:
                wake.append((min(it[1] for it in w) - lp["start"]) / 1e3)
            tail.append((lp["end"] - lp["own_done"]) / 1e3)
            dur.append((lp["end"] - lp["start"]) / 1e3)
            mine.append(len(lp["items"]) - len(w))
            theirs.append(len(w))
            asleep.append(lp["asleep"] > 0)
            for it in lp["items"]:
                per_item.setdefault(it[3], []).append((it[2] - it[1]) / 1e3)
        out.append({"gap_before": med(gap), "dur": med(dur), "wake": med(wake), "tail": med(tail),
                    "caller_items": med(mine), "worker_items": med(theirs),
                    "item_us": [med(per_item[i]) for i in sorted(per_item)],
                    "asleep": round(sum(asleep) / max(1, len(asleep)), 2)})
    return out


def pair_speed(reps=30, n=256):
    """Median µs of a one-thread n×n float32 GEMM on each of the first two allowed vCPUs alone, then on both at once:
    equal times when the two are separate cores; ~2× on both at once when the host runs them as SMT siblings of one
    core (or on one core). None without two allowed vCPUs or where pinning fails."""
    try:
        cpus = sorted(os.sched_getaffinity(0))[:2]
    except (AttributeError, OSError):
        return None
    if len(cpus) < 2:
        return None
    import numpy as np
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)

    def on(cpu, out, go):
        try:
            os.sched_setaffinity(threading.get_native_id(), {cpu})
            c = np.empty_like(a)
            np.matmul(a, a, out=c)
        except OSError:
            out["failed"] = True
        try:
            go.wait(5)
        except threading.BrokenBarrierError:
            return
        ts = []
        for _ in range(reps):
            t = time.perf_counter_ns()
            np.matmul(a, a, out=c)
            ts.append((time.perf_counter_ns() - t) / 1e3)
        out[cpu] = round(statistics.median(ts), 1)

    def run(cs):
        out, go = {}, threading.Barrier(len(cs))
        ts = [threading.Thread(target=on, args=(c, out, go), daemon=True) for c in cs]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        return None if out.get("failed") or any(c not in out for c in cs) else [out[c] for c in cs]
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):                # each GEMM on its own thread only
        alone = [run([c]) for c in cpus]
        together = run(cpus)
    if together is None or None in alone:
        return None
    return {"cpus": cpus, "alone_us": alone[0] + alone[1], "together_us": together}
