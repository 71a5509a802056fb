"""numba on first use: `import engine` declares its kernels without importing numba (the window and the CLI's
non-training commands never need it); a kernel is made when it is first used, so a process makes (and loads from
numba's cache) only the kernels it runs.

`njit`, `overload` and `intrinsic` here take numba's arguments. Until it is made a kernel is a `Kernel` that
stands for numba's dispatcher. `ready()` (once, under a lock) drops cached kernels of changed sources
(engine/_jitcache.py), imports numba (engine/_jitload.py) and runs the hooks (overloads, BLAS symbols); the first
use of a `Kernel` (a call, an attribute, typing inside another kernel) then makes its dispatcher and puts it in
place of the `Kernel` wherever the engine's modules hold it (module globals, class attributes), so that kernels
calling kernels see numba's own objects and later calls cost nothing extra. A `Kernel` kept elsewhere (a default
argument, a plan's tuple, a test's variable) becomes, once made, an instance of its own subclass whose `__call__`
is the dispatcher itself: later calls run no Python code of ours (≈200 ns a call, as the dispatcher's own,
against ≈360 through `Kernel.__call__`); it forwards attributes and types as its dispatcher inside other
kernels. `make_all()` makes every declared kernel.
"""
import importlib
import sys
import threading

_kernels = {}           # id → Kernel not made yet
_eager = []             # made by ready(): intrinsics (numba types a global intrinsic only once it is registered)
_hooks = []             # run once numba is imported, before any kernel is made
_lock = threading.RLock()
_ready = False
_places = {}            # id of a Kernel not made yet → [(module dict or class, name)] where the engine holds it
_scanned = set()        # engine modules looked through for Kernels
_modules_seen = 0       # len(sys.modules) at the last look


class Kernel:
    """A numba kernel declared before numba is imported; made on first use."""

    def __init__(self, make, py_func):
        self._make, self._real = make, None
        self.__name__ = getattr(py_func, "__name__", "kernel")
        self.__qualname__ = getattr(py_func, "__qualname__", self.__name__)
        self.__module__ = getattr(py_func, "__module__", None)
        self.__doc__ = getattr(py_func, "__doc__", None)
        self.__wrapped__ = py_func

    def real(self):
        """numba's dispatcher (or intrinsic) for this kernel, made now if it is not yet."""
        if self._real is None:
            _make(self)
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


def _declare(make, py_func, eager=False):
    k = Kernel(make, py_func)
    with _lock:
        _kernels[id(k)] = k
        if eager and not _ready:
            _eager.append(k)
            return k
    return k.real() if eager else k              # an intrinsic declared after numba: numba's object itself


def njit(*args, **options):
    """numba.njit, made on first use (as a bare decorator or with numba's options)."""
    if len(args) == 1 and callable(args[0]) and not options:
        f = args[0]
        return _declare(lambda: _dispatcher(f), f)

    def wrap(f):
        return _declare(lambda: _dispatcher(f, *args, **options), f)
    return wrap


def _dispatcher(f, *args, **options):
    from ._jitload import engine_cache
    return engine_cache(_numba().njit(*args, **options)(f) if args or options else _numba().njit(f))


def intrinsic(f):
    """numba.extending.intrinsic, made when numba is imported."""
    return _declare(lambda: importlib.import_module("numba.extending").intrinsic(f), f, eager=True)


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
    """Import numba and run the hooks (once; later calls return at once). Kernels are made on first use."""
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        from . import _jitcache, _jitload, _scipy_blas
        _jitload.import_numba()
        _jitcache.refresh()                  # before any kernel loads: drop cached kernels of changed sources
        if not _jitload.fast_load():         # numba's own load imports scipy.linalg for cython_blas: load it alone
            _scipy_blas.preload()
        while _hooks:
            _hooks.pop(0)()
        _ready = True
        while _eager:
            _make(_eager.pop())


def made(k):
    """Whether the kernel k (a Kernel or numba's object) has been made."""
    return not isinstance(k, Kernel) or k._real is not None


def make_all():
    """Make every declared kernel (tools and tests that need numba's dispatchers for all of them)."""
    ready()
    with _lock:
        for k in list(_kernels.values()):
            _make(k)


def _make(k):
    if not _ready:
        ready()
    with _lock:
        if k._real is not None:
            return
        k._real = k._make()
        # held anywhere before it was made (a default argument, a container): calls go straight to the dispatcher
        k.__class__ = type(Kernel.__name__, (Kernel,), {"__slots__": (), "__call__": staticmethod(k._real)})
        _kernels.pop(id(k), None)
        _look()
        for where, name in _places.pop(id(k), ()):
            _put(where, name, k)


def _put(where, name, k):
    """Put k's dispatcher in place of k (a module's dict, or a class for a kernel kept as a class attribute)."""
    if type(where) is dict:
        if where.get(name) is k:
            where[name] = k._real
    elif vars(where).get(name) is k:
        setattr(where, name, k._real)


def _look():
    """Note where engine modules imported since the last look hold kernels; made ones are replaced at once."""
    global _modules_seen
    if len(sys.modules) == _modules_seen:
        return
    _modules_seen = len(sys.modules)
    for name, mod in list(sys.modules.items()):
        if name in _scanned or mod is None or not (name == "engine" or name.startswith("engine.")):
            continue
        if getattr(getattr(mod, "__spec__", None), "_initializing", False):
            _modules_seen = -1                           # still running its body: look again next time
            continue
        _scanned.add(name)
        d = getattr(mod, "__dict__", None) or {}
        for key, v in list(d.items()):
            if isinstance(v, Kernel):
                _note(d, key, v)
            elif isinstance(v, type) and v.__module__ == name:      # kernels kept as class attributes
                for a, kv in list(vars(v).items()):
                    if isinstance(kv, Kernel):
                        _note(v, a, kv)


def _note(where, name, k):
    if k._real is not None:
        _put(where, name, k)
    else:
        _places.setdefault(id(k), []).append((where, name))
