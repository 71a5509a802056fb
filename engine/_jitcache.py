"""Invalidate numba's on-disk cache when any engine kernel source or the BLAS it calls changes.

numba keys a cached kernel on its own file only, but the fused training kernel inlines kernels of
other files (optimizers, losses, kernels, layers): after an edit or a package upgrade it would load
stale machine code. Kernels also call numpy's cblas by a symbol engine/blas.py registers only where
numpy's BLAS has one: loaded where it is missing, such a kernel would jump to nowhere. A hash of every
engine file that defines @njit kernels and of blas.BLAS_ID is stamped next to each cache directory;
on a mismatch that directory's engine entries are removed before any kernel loads.
"""
import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
STAMP = "layerboard-kernels.sha256"


def sources():
    """Engine .py files that define numba kernels, sorted."""
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts and "@njit" in p.read_text("utf-8"))


def digest(files, blas_id=""):
    """sha256 of the files' names and contents and of the BLAS the kernels call."""
    h = hashlib.sha256(blas_id.encode() + b"\0")
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _cache_dir(py_file):
    """The directory numba caches py_file's kernels in (its own choice of locator), or None."""
    from numba.core.caching import CacheImpl

    def probe():
        pass
    for cls in CacheImpl._locator_classes:
        try:
            loc = cls.from_function(probe, str(py_file))
        except Exception:                                   # a locator that does not apply here
            loc = None
        if loc is not None:
            return Path(loc.get_cache_path())
    return None


def refresh():
    """Remove cached engine kernels compiled from other sources than the current ones."""
    from .blas import BLAS_ID
    files = sources()
    want = digest(files, BLAS_ID)
    by_dir = {}
    for p in files:
        by_dir.setdefault(p.parent, []).append(p.stem)
    for d, stems in by_dir.items():
        cache = _cache_dir(d / f"{stems[0]}.py")
        if cache is None:
            continue
        stamp = cache / STAMP
        try:
            if stamp.read_text().strip() == want:
                continue
        except OSError:
            pass
        try:
            for f in cache.iterdir():
                if f.suffix in (".nbi", ".nbc") and f.name.split(".", 1)[0] in stems:
                    f.unlink(missing_ok=True)
            tmp = cache / f".{STAMP}.{os.getpid()}"
            tmp.write_text(want)
            os.replace(tmp, stamp)
        except OSError:                                     # read-only cache: numba recompiles in memory
            pass
