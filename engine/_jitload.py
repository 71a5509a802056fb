"""numba for the engine's kernels, imported on first use (engine/_jit.py) at the least start-up cost.

- `import numba` runs without two optional imports it does not need here: PyYAML (read only for a
  .numba_config.yaml in the working directory, so it is imported when one is there) and SciPy's package (only
  its version is checked; numba imports scipy.linalg itself when it compiles linear algebra).
- An engine kernel found in numba's cache is loaded with only numba's runtime (NRT) set up. numba's own load
  first refreshes its whole typing and target contexts: about 250 implementation registries imported and
  installed, a third of a first training step's time, which only compiling needs (numba's compiler refreshes
  them itself). A loaded kernel calls only symbols that exist before that refresh: numba's C helpers and
  built-in exceptions (registered with its first context), the NRT (set up here), the C library's maths and
  the BLAS symbols of engine/blas.py; tests/test_jit_lazy.py checks every symbol of every loaded kernel.
  The load also rebuilds the Environments of numba's own functions without importing their modules, reads
  the names the kernel defines from its object code instead of parsing its bitcode (parsed if a compile links
  the kernel into another) and leaves out numba's timing of each LLVM call (a compile's statistics); a kernel's
  first call skips numba's scan of installed packages for numba extensions (a compile still runs it).
  All of it is used with the numba versions it was checked with (FAST_LOAD_NUMBA); with others, numba's load.
"""
import contextlib
import importlib.abc
import os
import struct
import sys
import threading

FAST_LOAD_NUMBA = ("0.68.",)     # numba versions whose cache load was checked to need only the NRT
_OPTIONAL = {"scipy", "yaml"}    # imported by `import numba` for what the engine does not use


class _Skip(importlib.abc.MetaPathFinder):
    """While numba is imported: the optional modules (by exact name) are missing to this thread only."""

    def __init__(self, names):
        self.names, self.thread = names, threading.get_ident()

    def find_spec(self, name, path=None, target=None):
        if name in self.names and threading.get_ident() == self.thread:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def import_numba():
    """import numba (once), without its optional imports the engine does not need."""
    if "numba" in sys.modules:
        return sys.modules["numba"]
    names = {n for n in _OPTIONAL if n not in sys.modules}
    if os.path.exists(".numba_config.yaml"):             # numba reads it with PyYAML
        names.discard("yaml")
    skip = _Skip(names)
    sys.meta_path.insert(0, skip)
    try:
        import numba
    finally:
        sys.meta_path.remove(skip)
    return numba


def fast_load():
    """Whether engine kernels load from the cache with only the NRT set up (this numba was checked)."""
    import numba
    return numba.__version__.startswith(FAST_LOAD_NUMBA)


_cache_class = None


def engine_cache(dispatcher):
    """Give a cache=True dispatcher of the engine the fast cache load (when this numba allows it)."""
    global _cache_class
    from numba.core.caching import FunctionCache
    if type(getattr(dispatcher, "_cache", None)) is not FunctionCache or not fast_load():
        return dispatcher
    if _cache_class is None:
        _cache_class = _make_cache_class(FunctionCache)
    dispatcher._cache.__class__ = _cache_class
    # numba runs third-party numba extensions' entry points before a dispatcher's first call: a scan of every
    # installed package's metadata (~7 ms, more with more packages); the engine's kernels use none of them, and
    # numba's compiler still runs them when one is compiled (its context refresh)
    dispatcher._compilation_chain_init_hook = _no_extensions
    return dispatcher


def _no_extensions():
    pass


@contextlib.contextmanager
def _untimed_llvm():
    """Without numba's timing of each LLVM call: a compile times its LLVM lock through two callbacks on
    llvmlite's lock around every call (events broadcast to a timer), a sixth of a cached kernel's load, which
    makes thousands of small calls. The callbacks are set aside while the lock is free and put back after."""
    from llvmlite.binding import ffi
    lock = getattr(getattr(ffi, "lib", None), "_lock", None)
    cbs, rlock = getattr(lock, "_cblist", None), getattr(lock, "_lock", None)
    if not isinstance(cbs, list) or rlock is None:             # another llvmlite: numba's timing stays
        yield
        return
    with rlock:
        kept = list(cbs)
        cbs[:] = [cb for cb in cbs if getattr(cb[0], "__module__", None) != "numba.core.base"]
    try:
        yield
    finally:
        with rlock:
            cbs[:] = kept


@contextlib.contextmanager
def _module_free_envs():
    """Environments of numba's own functions without importing their modules. A kernel's cached code refers to the
    Environment (constants, globals) of every function compiled into it, numba's implementations (numba.np.arrayobj,
    numba.cpython.unicode, …) included; numba rebuilds each over its module's dict, importing the module (~20 ms
    of a first step). Compiled nopython code reads only an Environment's constants, and its globals only in object
    mode, which numba's implementations never use: such an Environment gets its module's name for globals."""
    from numba.core import environment as E
    full = E._rebuild_env

    def rebuild(modname, consts, env_name):
        if modname in sys.modules or not modname.startswith("numba.") or E.lookup_environment(env_name) is not None:
            return full(modname, consts, env_name)
        env = E.Environment({"__name__": modname})
        env.consts[:] = consts
        env.env_name = env_name
        E.Environment._memo[env_name] = env
        return env
    E._rebuild_env = rebuild                        # pickle finds it by name while the cached kernel is read
    try:
        yield
    finally:
        E._rebuild_env = full


def elf_defined(obj):
    """Names of the symbols an ELF-64 little-endian object file defines (its symbol table), or None for another
    format."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", obj, 0x28)                     # section headers
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    for i in range(shnum):
        at = shoff + i * shentsize
        if struct.unpack_from("<I", obj, at + 4)[0] != 2:              # SHT_SYMTAB
            continue
        off, size = struct.unpack_from("<QQ", obj, at + 0x18)
        link, = struct.unpack_from("<I", obj, at + 0x28)               # its string table
        entsize, = struct.unpack_from("<Q", obj, at + 0x38)
        strings, = struct.unpack_from("<Q", obj, shoff + link * shentsize + 0x18)
        names = set()
        for o in range(off + entsize, off + size, entsize):            # entry 0 is the null symbol
            name, info, _, section = struct.unpack_from("<IBBH", obj, o)
            if section and name and info & 0xF not in (3, 4):          # defined; not a section or file symbol
                s = strings + name
                names.add(obj[s:obj.index(b"\0", s)].decode())
        return names
    return None


_lazy_classes = {}


def _lazy_library(cls):
    """cls (numba's JIT code library) whose module for linking into other code is parsed when first asked for."""
    if cls not in _lazy_classes:
        import llvmlite.binding as ll

        class Lazy(cls):
            def _get_module_for_linking(self):
                if self._shared_module is None and self._lazy_bitcode is not None:
                    self._shared_module, self._lazy_bitcode = ll.parse_bitcode(self._lazy_bitcode), None
                return super()._get_module_for_linking()
        Lazy.__name__ = Lazy.__qualname__ = f"Lazy{cls.__name__}"
        _lazy_classes[cls] = Lazy
    return _lazy_classes[cls]


@contextlib.contextmanager
def _bitcode_on_demand(codegen):
    """A cached kernel without parsing its LLVM bitcode. numba caches a kernel as object code plus the bitcode of its
    module, which it parses at once (a third of a first step) for two uses: the names the object defines, and
    linking the kernel into another one being compiled. Here the names come from the object's ELF symbol table and
    the bitcode is parsed if some compile links the kernel; other object formats go numba's way."""
    full = codegen.unserialize_library

    def unserialize(state):
        name, kind, data = state
        names = elf_defined(data[0]) if kind == "object" else None
        if names is None:
            return full(state)
        lib = codegen.create_library(name)
        lib.__class__ = _lazy_library(type(lib))
        lib._lazy_bitcode = data[1]
        lib.enable_object_caching()
        lib._set_compiled_object(data[0])
        lib._finalize_final_module()
        codegen._engine._defined_symbols |= names
        return lib
    before = vars(codegen).get("unserialize_library")     # a load within a load: the outer one's
    codegen.unserialize_library = unserialize
    try:
        yield
    finally:
        if before is None:
            del codegen.unserialize_library
        else:
            codegen.unserialize_library = before


def _make_cache_class(FunctionCache):
    from numba.core.runtime import nrt

    class EngineCache(FunctionCache):
        """numba's function cache; loads with the NRT set up instead of the whole context refreshed."""

        def load_overload(self, sig, target_context):
            nrt.rtsys.initialize(target_context)             # what numba's refresh does first; idempotent
            with self._guard_against_spurious_io_errors(), _untimed_llvm(), _module_free_envs(), \
                    _bitcode_on_demand(target_context.codegen()):
                cres = self._load_overload(sig, target_context)
                if cres is None:                             # numba compiles next; its refresh then needs
                    from . import _scipy_blas                # scipy's cython_blas: load it alone
                    _scipy_blas.preload()
                return cres
            return None                                      # an I/O error the guard swallowed
    return EngineCache


def warm():
    """Do now (in a background thread) the set-up numba's first kernel load needs: the NRT, whose functions LLVM
    compiles with the interpreter free; with a numba not checked for the fast load, its whole context."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target
    with global_compiler_lock:                         # a kernel load in another thread waits for it
        if fast_load():
            from numba.core.runtime import nrt
            nrt.rtsys.initialize(cpu_target.target_context)
        else:
            cpu_target.typing_context.refresh()
            cpu_target.target_context.refresh()
