"""Native waits for engine.parallel's pool (Linux): counters polled in machine code without the GIL, then futexes.

A thread that blocks lets its vCPU halt; on a VM without guest halt-polling each wake-up is a VM exit (~15 µs), and
a thread returning to Python while another holds the GIL blocks too. So the pool's threads poll int64 counters
here for a bounded time (TSC cycles: never busy when idle) and then sleep on a futex, all without the GIL; the
caller publishes a loop only once it has released the GIL, so a spinning worker takes the GIL at once.
"""
import ctypes
import platform
import sys

from ._jit import intrinsic, njit, on_ready, types

_MACHINE = platform.machine().lower()
X86 = _MACHINE in ("x86_64", "amd64")
SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(_MACHINE)
SYS_YIELD = {"x86_64": 24, "amd64": 24, "aarch64": 124, "arm64": 124}.get(_MACHINE)
SYMBOL = "layerboard_syscall"
FUTEX_WAIT, FUTEX_WAKE = 128, 129          # FUTEX_PRIVATE_FLAG | FUTEX_WAIT / FUTEX_WAKE


def _syscall_address():
    try:
        return ctypes.cast(ctypes.CDLL(None).syscall, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


AVAILABLE = sys.platform.startswith("linux") and SYS_FUTEX is not None and bool(_syscall_address())


def _add_symbol():
    if AVAILABLE:
        from llvmlite import binding
        binding.add_symbol(SYMBOL, _syscall_address())


on_ready(_add_symbol)


def _ptr(context, builder, aryty, ary, i):
    from numba.core import cgutils
    a = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, a, [i])


@intrinsic
def load(typingctx, a, i):
    """a[i] of an int64 array, read atomically (sequentially consistent): never hoisted out of a polling loop."""
    sig = types.int64(a, types.intp)

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_ptr(context, builder, signature.args[0], args[0], args[1]), "seq_cst", 8)
    return sig, codegen


@intrinsic
def add(typingctx, a, i, v):
    """a[i] += v atomically (sequentially consistent); the value before."""
    sig = types.int64(a, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _ptr(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")
    return sig, codegen


@intrinsic
def pause_cycles(typingctx):
    """The cycle counter after a spin-loop hint (x86 `pause`)."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        if X86:
            builder.call(builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(
                ir.VoidType(), [])), [])
        i64 = ir.IntType(64)
        return builder.call(builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=ir.FunctionType(i64, [])),
                            [])
    return sig, codegen


@intrinsic
def sched_yield(typingctx):
    """syscall(SYS_sched_yield): a polling thread lets other runnable threads of its CPU go first (on a busy
    machine one of them may be the thread it waits for)."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        i64 = ir.IntType(64)
        fn = builder.module.globals.get(SYMBOL) or ir.Function(builder.module, ir.FunctionType(i64, [i64], var_arg=True),
                                                               SYMBOL)
        return builder.call(fn, [ir.Constant(i64, SYS_YIELD)])
    return sig, codegen


@intrinsic
def futex(typingctx, a, i, op, v, timeout):
    """syscall(SYS_futex, &a[i] (its low 32 bits), op, v, timeout) for an int64 array a; timeout: an int64 array
    (seconds, nanoseconds) for a wait."""
    sig = types.int64(a, types.intp, types.int64, types.int64, timeout)

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fn = builder.module.globals.get(SYMBOL) or ir.Function(builder.module, ir.FunctionType(i64, [i64], var_arg=True),
                                                               SYMBOL)
        addr = builder.ptrtoint(_ptr(context, builder, signature.args[0], args[0], args[1]), i64)
        ts = builder.ptrtoint(_ptr(context, builder, signature.args[4], args[4], ir.Constant(i64, 0)), i64)
        return builder.call(fn, [ir.Constant(i64, SYS_FUTEX), addr, builder.trunc(args[2], i32),
                                 builder.trunc(args[3], i32), ts])
    return sig, codegen


# the pool's counters (engine/parallel.py): GEN the loop's number, LEFT threads still on it, SLEEPERS workers asleep
# on GEN, WAITING the caller asleep on LEFT, SEEN the last number a worker saw, TIMEOUT (s, ns) of a futex wait
GEN, LEFT, SLEEPERS, WAITING, SEEN, TIMEOUT = 0, 1, 2, 3, 4, 6


@njit(cache=True, nogil=True)
def cycles():
    """The cycle counter now (0 where the target has none: spins are then off)."""
    return pause_cycles()


@njit(cache=True, nogil=True)
def relax(k):
    """Turn k of a polling loop: from the 64th on, yield the CPU to any other runnable thread first (on a busy
    machine one of them may be the thread we wait for); the cycle counter."""
    if k >= 64:
        sched_yield()
    return pause_cycles()


@njit(cache=True, nogil=True)
def next_job(sig, seen, spin):
    """A worker waiting for the loop after `seen`: poll GEN for `spin` cycles, then sleep on it; the new number."""
    end = pause_cycles() + spin
    v = load(sig, GEN)
    k = 0
    while v == seen and relax(k) < end:
        v = load(sig, GEN)
        k += 1
    if v == seen:
        add(sig, SLEEPERS, 1)
        v = load(sig, GEN)
        while v == seen:
            futex(sig, GEN, FUTEX_WAIT, seen & 0xFFFFFFFF, sig[TIMEOUT:])
            v = load(sig, GEN)
        add(sig, SLEEPERS, -1)
    add(sig, SEEN, v - load(sig, SEEN))
    return v


@njit(cache=True, nogil=True)
def finish(sig, seen, spin):
    """A worker's end of loop `seen`: count itself out (waking a sleeping caller when it was the last), then
    next_job."""
    if add(sig, LEFT, -1) == 1 and load(sig, WAITING) != 0:
        futex(sig, LEFT, FUTEX_WAKE, 1, sig[TIMEOUT:])
    return next_job(sig, seen, spin)


@njit(cache=True, nogil=True)
def start(sig, v, spin, extra):
    """The caller publishes loop v once it has released the GIL and wakes sleeping workers; then polls until a
    worker saw it or `spin` cycles passed, and `extra` cycles more, so that the worker takes the GIL and starts its
    part while we hold none."""
    add(sig, GEN, v - load(sig, GEN))
    if load(sig, SLEEPERS) != 0:
        futex(sig, GEN, FUTEX_WAKE, 1 << 30, sig[TIMEOUT:])
        return
    end = pause_cycles() + spin
    k = 0
    while load(sig, SEEN) != v and relax(k) < end:
        k += 1
    if load(sig, SEEN) == v:
        end = pause_cycles() + extra
        while pause_cycles() < end:
            pass


@njit(cache=True, nogil=True)
def join(sig, spin):
    """The caller's end of a loop: count itself out, poll until every thread is out or `spin` cycles passed, then
    sleep until the last worker wakes it."""
    if add(sig, LEFT, -1) == 1:
        return
    end = pause_cycles() + spin
    k = 0
    while load(sig, LEFT) != 0 and relax(k) < end:
        k += 1
    add(sig, WAITING, 1)
    v = load(sig, LEFT)
    while v != 0:
        futex(sig, LEFT, FUTEX_WAIT, v, sig[TIMEOUT:])
        v = load(sig, LEFT)
    add(sig, WAITING, -1)
