"""numba on first use: `import engine` declares its kernels without importing numba (the window and the CLI's
non-training commands never need it); the first kernel called, or `ready()`, imports numba and makes them all.

`njit`, `overload` and `intrinsic` here take numba's arguments. Until `ready()` a kernel is a `Kernel` that
stands for numba's dispatcher; `ready()` then (once, under a lock) loads SciPy's cython_blas alone, drops cached
kernels of changed sources (engine/_jitcache.py), runs the hooks (overloads, BLAS symbols), makes every
dispatcher and puts it in place of its `Kernel` in the engine's modules, so that kernels calling kernels see
numba's own objects. A `Kernel` kept elsewhere (a test's variable) forwards calls and attributes, and types as
its dispatcher inside other kernels.
"""
import importlib
import sys
import threading

_kernels = []           # Kernel objects not made yet
_hooks = []             # run once numba is imported, before any kernel is made
_lock = threading.RLock()
_ready = False


class Kernel:
    """A numba kernel declared before numba is imported; made by ready()."""

    def __init__(self, make, py_func):
        self._make, self._real = make, None
        self.__name__ = getattr(py_func, "__name__", "kernel")
        self.__qualname__ = getattr(py_func, "__qualname__", self.__name__)
        self.__module__ = getattr(py_func, "__module__", None)
        self.__doc__ = getattr(py_func, "__doc__", None)
        self.__wrapped__ = py_func

    def real(self):
        """numba's dispatcher (or intrinsic) for this kernel."""
        if self._real is None:
            ready()
        return self._real

    def __call__(self, *args, **kwargs):
        return (self._real or self.real())(*args, **kwargs)

    def __getattr__(self, name):                 # signatures, py_func, … of the dispatcher
        if name.startswith("__") or name in ("_make", "_real"):
            raise AttributeError(name)
        return getattr(self.real(), name)

    @property
    def _numba_type_(self):                      # referenced from another kernel: numba types the dispatcher
        from numba import typeof
        return typeof(self.real())

    def __repr__(self):
        return f"<kernel {self.__module__}.{self.__qualname__}{'' if self._real is None else ' (made)'}>"


def _declare(make, py_func):
    if _ready:
        return make()
    k = Kernel(make, py_func)
    with _lock:
        if _ready:
            return make()
        _kernels.append(k)
    return k


def njit(*args, **options):
    """numba.njit, made on first use (as a bare decorator or with numba's options)."""
    if len(args) == 1 and callable(args[0]) and not options:
        f = args[0]
        return _declare(lambda: _numba().njit(f), f)

    def wrap(f):
        return _declare(lambda: _numba().njit(*args, **options)(f), f)
    return wrap


def intrinsic(f):
    """numba.extending.intrinsic, made on first use."""
    return _declare(lambda: importlib.import_module("numba.extending").intrinsic(f), f)


def overload(func, **options):
    """numba.extending.overload, registered when numba is imported (before any kernel is typed)."""
    def wrap(impl):
        on_ready(lambda: importlib.import_module("numba.extending").overload(func, **options)(impl))
        return impl
    return wrap


def on_ready(fn):
    """Run fn() once numba is imported, before any kernel is made (now if it is)."""
    with _lock:
        if not _ready:
            _hooks.append(fn)
            return
    fn()


class _Lazy:
    """A numba module imported on first attribute access (numba.types, numba.core.errors)."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


types = _Lazy("numba.core.types")
errors = _Lazy("numba.core.errors")


def _numba():
    import numba
    return numba


def is_ready():
    return _ready


def ready():
    """Import numba and make every declared kernel (once; later calls return at once)."""
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        from . import _jitcache, _scipy_blas
        _scipy_blas.preload()                # numba's first kernel load then skips importing scipy.linalg
        _jitcache.refresh()                  # before any kernel loads: drop cached kernels of changed sources
        _numba()
        while _hooks:
            _hooks.pop(0)()
        made = {}
        for k in _kernels:
            k._real = k._make()
            made[id(k)] = k
        for name, mod in list(sys.modules.items()):      # kernels calling kernels find numba's dispatchers
            if mod is None or not (name == "engine" or name.startswith("engine.")):
                continue
            d = getattr(mod, "__dict__", None) or {}
            for key, v in list(d.items()):
                if type(v) is Kernel and id(v) in made:
                    d[key] = v._real
                elif isinstance(v, type) and v.__module__ == name:      # kernels kept as class attributes
                    for a, kv in list(vars(v).items()):
                        if type(kv) is Kernel and id(kv) in made:
                            setattr(v, a, kv._real)
        _kernels.clear()
        _ready = True
