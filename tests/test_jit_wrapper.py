"""A kernel captured before its first use (a default argument, a container, a module alias outside the engine)
calls numba's dispatcher directly from its second call on: no Python code of engine/_jit.py runs."""
import sys

import numpy as np

from engine import _jit


def _calls_into_wrapper(fn, *args):
    """(result, whether any Python code of engine/_jit.py ran during fn(*args))."""
    seen = []

    def prof(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == _jit.__file__:
            seen.append(frame.f_code.co_name)
    sys.setprofile(prof)
    try:
        out = fn(*args)
    finally:
        sys.setprofile(None)
    return out, seen


def test_a_kernel_captured_before_its_first_use_stops_going_through_the_wrapper():
    def twice(a):
        return 2.0 * a[0]
    k = _jit.njit(cache=False, nogil=True)(twice)
    assert isinstance(k, _jit.Kernel) and not _jit.made(k)

    def run(a, kernel=k):                                  # captured as a default argument, before first use
        return kernel(a)
    held = (k,)                                            # and in a container
    a = np.array([1.5, 0.0])
    out, seen = _calls_into_wrapper(run, a)                # the first call makes it (through the wrapper)
    assert out == 3.0 and seen and _jit.made(k)
    out, seen = _calls_into_wrapper(run, a)
    assert out == 3.0 and seen == []                       # the second one: numba's dispatcher alone
    out, seen = _calls_into_wrapper(held[0], np.array([-1.0]))
    assert out == -2.0 and seen == []
    assert isinstance(k, _jit.Kernel) and k.py_func is twice           # still forwards attributes
    assert k.signatures                                    # (numba's dispatcher's)


def test_a_made_kernel_kept_outside_types_inside_another_kernel():
    def inc(a):
        a[0] += 1.0
    k = _jit.njit(cache=False, nogil=True)(inc)
    a = np.zeros(1)
    k(a)                                                   # made

    def outer(a):
        k(a)
        k(a)
    _jit.njit(cache=False)(outer)(a)                       # typed as its dispatcher inside another kernel
    assert a[0] == 3.0
