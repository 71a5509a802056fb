"""numba's start-up for the engine (engine/_jitload.py, engine/_jit.py, engine/_jitcache.py), in fresh interpreters:
cached kernels load without numba's implementation registries and every symbol they call resolves, numba is
imported without SciPy's package and PyYAML (unless a .numba_config.yaml asks for it), and stale cache entries
are still removed before the first kernel loads."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code, *args, cwd=ROOT, **env):
    e = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    e.update(env, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=e,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


FIRST_STEPS = """
import sys
import llvmlite.binding
from engine.session import prepare
from engine.project import Project
from resources import path
for ex in ("xor.json", "digits-mlp.json", "digits-cnn.json"):
    model, tr = prepare(Project.load(path("examples", ex)))
    ds, bs = tr.train, tr.batch_size
    tr.train_step(ds.x[:bs], ds.y[:bs])
from numba.core.registry import CPUDispatcher, cpu_target
engine = cpu_target.target_context.codegen()._engine
assert llvmlite.binding.address_of_symbol("layerboard_no_such_symbol") is None
loaded, lazy, missing, unknown, seen = 0, 0, set(), set(), set()
HEAVY = ("numba.np.arraymath", "numba.np.linalg", "numba.cpython.setobj", "numba.np.arrayobj", "scipy")
for name, mod in list(sys.modules.items()):
    if name.startswith("engine"):
        for v in list(vars(mod).values()):
            if isinstance(v, CPUDispatcher) and id(v) not in seen:
                seen.add(id(v))
                for cres in v.overloads.values():
                    loaded += 1
                    lazy += cres.library._shared_module is None     # its bitcode not parsed (engine/_jitload.py)
                    m = cres.library._get_module_for_linking()      # parsed now: what the object code was built from
                    for g in list(m.functions) + list(m.global_variables):
                        if g.is_declaration and not g.name.startswith("llvm.") and not (
                                llvmlite.binding.address_of_symbol(g.name) or engine.is_symbol_defined(g.name)):
                            missing.add(g.name)                     # called, and nowhere to be found
                        if not g.is_declaration and not engine.is_symbol_defined(g.name):
                            unknown.add(g.name)                     # defined, but numba does not know it is
import json
from numba.core import entrypoints                            # third-party numba extensions: not scanned for
heavy = [m for m in HEAVY if m in sys.modules] + ["numba extensions"] * entrypoints._already_initialized
print(json.dumps([loaded, lazy, sorted(missing), sorted(unknown), heavy]))
"""


def test_first_steps_load_cached_kernels_without_numbas_registries_and_every_symbol_they_call_resolves():
    """The examples' first steps load their kernels from numba's cache with only the NRT set up: numba's
    implementation registries (numba.np.arraymath, numba.np.linalg, …; numba.np.arrayobj, whose functions'
    Environments the kernels refer to) and SciPy stay unimported, numba extensions' entry points are not looked
    for (installed packages' metadata), and every external symbol of every loaded
    kernel is one that exists then (a missing one would be a jump to nowhere). Their bitcode
    is not parsed, and the names read from their object code are every name their bitcode defines. A numba
    not in _jitload.FAST_LOAD_NUMBA uses its own load: check it as here, then add it."""
    _run(FIRST_STEPS)                                      # fills numba's cache if it is cold (compiling imports all)
    loaded, lazy, missing, unknown, heavy = json.loads(_run(FIRST_STEPS))
    assert loaded >= 10 and lazy == loaded
    assert missing == [], f"unresolved symbols: {missing}"
    assert unknown == [], f"defined by a loaded kernel, not in numba's table (the ELF symbol table): {unknown}"
    assert heavy == [], f"imported by the first steps: {heavy}"


def test_numba_is_imported_without_scipy_and_yaml_which_import_normally_after(tmp_path):
    code = ("import sys\n"
            "from engine import _jitload\n"
            "_jitload.import_numba()\n"
            "import numba.core.config as c\n"
            "out = [m for m in ('scipy', 'yaml') if m in sys.modules], c._HAVE_YAML\n"
            "import scipy, yaml                                  # nothing left blocked\n"
            "print(out)")
    assert _run(code, cwd=tmp_path) == "([], False)"
    (tmp_path / ".numba_config.yaml").write_text("boundscheck: 0\n")
    assert _run(code, cwd=tmp_path) == "(['yaml'], True)"   # numba reads the file with PyYAML


def test_stale_cached_kernels_are_removed_when_the_first_kernel_is_used(tmp_path):
    """A cached kernel compiled from other sources (or another BLAS) is deleted before any kernel loads, now that
    numba is imported first and kernels are made one by one; entries with the current stamp stay."""
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from engine import _jit, _jitcache, _jitload, kernels\n"
            "_jitload.import_numba()\n"
            "d = _jitcache._cache_dir(Path(kernels.__file__))\n"
            "d.mkdir(parents=True, exist_ok=True)\n"
            "fake = [d / 'kernels.softmax_bwd-1.py311.nbi', d / 'kernels.softmax_bwd-1.py311.1.nbc']\n"
            "for f in fake: f.write_bytes(b'stale')\n"
            "(d / _jitcache.STAMP).write_text(sys.argv[1] if len(sys.argv) > 1 else 'other sources')\n"
            "kernels.softmax_bwd.signatures                       # first use: numba's set-up, then this kernel\n"
            "assert _jit.is_ready() and _jit.made(kernels.softmax_bwd)\n"
            "from engine.blas import BLAS_ID\n"
            "want = _jitcache.digest(_jitcache.sources(), BLAS_ID)\n"
            "print([f.exists() for f in fake], (d / _jitcache.STAMP).read_text() == want, want)")
    out = _run(code, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert out.startswith("[False, False] True"), out
    want = out.rsplit(" ", 1)[1]
    code = code.replace("sys.argv[1] if len(sys.argv) > 1 else 'other sources'", repr(want))
    assert _run(code, NUMBA_CACHE_DIR=str(tmp_path / "cache")).startswith("[True, True] True")


SAME = """
import sys
import numpy as np
from engine import _jitload
if sys.argv[1:] == ["numba"]:
    _jitload.FAST_LOAD_NUMBA = ()                          # numba's own cache load
from engine.session import prepare
from engine.project import Project
from resources import path
model, tr = prepare(Project.load(path("examples", "digits-cnn.json")))
ds, bs = tr.train, tr.batch_size
for i in range(2):
    tr.train_step(ds.x[i * bs:(i + 1) * bs], ds.y[i * bs:(i + 1) * bs])
w = [repr(float(np.abs(v).astype(np.float64).sum())) for v in model.weights().values()]
from numba import njit                                     # compiling after the loads: numba's whole context
@njit
def g(x):
    return np.sort(x).reshape(2, -1)[1].sum()
x = np.arange(12.0)[::-1].copy()
assert g(x) == 51.0
from numba.core import entrypoints
assert entrypoints._already_initialized                   # a compile still runs numba extensions' entry points
from engine.kernels import sq_norm                         # loaded by the steps, its bitcode not parsed yet
@njit
def h(a):
    return 2.0 * sq_norm(a)                                # links sq_norm's module into h: parsed on demand
assert h(np.arange(8, dtype=np.float32)) == 280.0
print(w)
"""


def test_the_fast_load_trains_exactly_as_numbas_own_and_compiling_after_it_works():
    """Two steps of digits-cnn give the same weights, bit for bit, with kernels loaded the fast way and numba's way;
    kernels compiled after the fast loads (numba's whole context, Environments of numba.np.arrayobj, a loaded
    kernel linked into a new one) are right."""
    assert _run(SAME) == _run(SAME, "numba")
