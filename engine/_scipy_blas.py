"""Load SciPy's cython_blas alone, before numba asks for it, so a new process skips scipy.linalg's import.

numba imports `scipy.linalg.cython_blas` when it first loads its typing registries (the first kernel a process
loads or compiles), and that runs scipy/linalg/__init__.py: 0.3 s on an idle 2-core machine, over 1 s at load 10,
mostly scipy's array-API shims importing numpy.f2py. cython_blas itself is one extension module with no Python
imports; loaded from its file under its own name it is the module a later `import scipy.linalg` uses too (a
one-shot import hook then sets it as scipy.linalg's attribute, as a normal submodule import would).
"""
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

NAME = "scipy.linalg.cython_blas"


class _Attach:
    """Meta-path finder for scipy.linalg only: once that package has run, set its cython_blas attribute."""

    def find_spec(self, name, path=None, target=None):
        if name != "scipy.linalg":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                if NAME in sys.modules:
                    module.cython_blas = sys.modules[NAME]
            spec.loader.exec_module = exec_module
        return spec


def preload():
    """Put scipy.linalg.cython_blas into sys.modules without importing scipy.linalg (nothing when it is there
    already, when SciPy is missing, or when anything goes wrong: numba then imports it the usual way)."""
    if NAME in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("scipy")
        if spec is None or not spec.submodule_search_locations:
            return
        d = Path(next(iter(spec.submodule_search_locations))) / "linalg"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            f = d / f"cython_blas{suffix}"
            if f.is_file():
                break
        else:
            return
        s = importlib.util.spec_from_file_location(NAME, f)
        mod = importlib.util.module_from_spec(s)
        sys.modules[NAME] = mod
        s.loader.exec_module(mod)
        sys.meta_path.insert(0, _Attach())
    except Exception:                                   # any surprise: leave it to numba's own import
        sys.modules.pop(NAME, None)
