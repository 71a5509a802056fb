"""glibc's malloc keeps freed training-size arrays for the next step instead of handing them back to the OS.

By default glibc serves blocks ≥ 128 KiB-32 MiB with mmap or trims the freed top of the heap, so every training
step's fresh outputs and gradients fault their pages in again: on the 2-core VM that was ~25% of workload e's
step (12.1 → 8.7 ms/step with these settings; 2026-12-07, bench.py --quick --only e, one core: 3.4-3.8 ms/step
with, 4.1-4.3 without). numpy allocates with malloc, so this reaches every array of the process: it is set when
training starts (Trainer.run), never on `import engine` (a notebook or the window that only loads a model keeps
glibc's defaults).
"""
import ctypes
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3          # mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory(mmap=32 << 20, trim=128 << 20):
    """Blocks < mmap bytes come from the heap; up to trim bytes of freed heap top are kept (set once per
    process). False if not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):                 # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap)) and bool(mallopt(M_TRIM_THRESHOLD, trim))
