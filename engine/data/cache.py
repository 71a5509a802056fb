"""The columnar cache: a parsed or encoded table kept once as Arrow IPC / .npy files, memory-mapped on reuse.

Folder: $LAYERBOARD_CACHE, else $XDG_CACHE_HOME/layerboard, else ~/.cache/layerboard; one sub-folder per
source file, one entry per (file size, modification time, options). Entries of an older version of the file
are removed when a new one is written; when the folder grows past its limit ($LAYERBOARD_CACHE_LIMIT, e.g.
"20G", "500M" or bytes; default 20 GiB) the least recently used entries are removed. The user's files are only
ever read."""
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

LIMIT = 20 << 30      # bytes the cache folder may hold (unless $LAYERBOARD_CACHE_LIMIT says otherwise)
VERSION = 4          # bump when the layout or the encoding of an entry changes


def root():
    """The cache folder (not created)."""
    if os.environ.get("LAYERBOARD_CACHE"):
        return Path(os.environ["LAYERBOARD_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "layerboard"


def _stamp(path):
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def entry(path, kind, options):
    """(folder of the entry, its key) for source file `path`, a kind ('parsed', 'table') and JSON-able options."""
    src = str(Path(path).resolve())
    key = hashlib.sha1(json.dumps([VERSION, kind, _stamp(path), options], sort_keys=True, default=str)
                       .encode()).hexdigest()[:20]
    return root() / hashlib.sha1(src.encode()).hexdigest()[:16] / f"{kind}-{key}", key


def lookup(path, kind, options):
    """The entry's folder when it is complete (has meta.json), else None."""
    d, _ = entry(path, kind, options)
    m = d / "meta.json"
    if not m.is_file():
        return None
    try:
        os.utime(m)                                  # used now: the last to go when the folder is pruned
    except OSError:
        pass
    return d


class Writer:
    """Builds an entry in a temporary folder and moves it into place on commit (a crash leaves no half entry)."""

    def __init__(self, path, kind, options):
        self.src, self.kind = Path(path), kind
        self.final, _ = entry(path, kind, options)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.final.parent))

    def array(self, name, shape, dtype):
        """A writable .npy memory map of the entry."""
        return np.lib.format.open_memmap(self.dir / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def commit(self, meta):
        meta = dict(meta, source=str(self.src.resolve()), **_stamp(self.src))
        (self.dir / "meta.json").write_text(json.dumps(meta, default=_plain))
        stale = [p for p in self.final.parent.iterdir() if p.is_dir() and p != self.dir and _stale(p)]
        if self.final.exists():                               # another process wrote it meanwhile
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            os.replace(self.dir, self.final)
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        prune(keep=self.final)
        return self.final

    def abort(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def limit():
    """The cache folder's size limit in bytes."""
    import re
    m = re.fullmatch(r"([\d.]+)\s*([KMGT]?)B?", os.environ.get("LAYERBOARD_CACHE_LIMIT", "").strip().upper())
    try:
        return int(float(m[1]) * 1024 ** " KMGT".index(m[2] or " ")) if m else LIMIT
    except ValueError:
        return LIMIT


def _size(d):
    return sum(f.stat().st_size for f in d.iterdir() if f.is_file())


def prune(keep=None):
    """Remove the least recently used finished entries until the folder fits its limit (never `keep`).
    Another process mapping a removed entry keeps reading it (the files go when it lets go of them)."""
    try:
        entries = [(m.stat().st_mtime, d, _size(d)) for d in root().glob("*/*") if (m := d / "meta.json").is_file()]
    except OSError:
        return
    total, cap = sum(s for _, _, s in entries), limit()
    for _, d, s in sorted(entries, key=lambda e: e[0]):
        if total <= cap:
            break
        if keep is not None and d == keep:
            continue
        shutil.rmtree(d, ignore_errors=True)
        total -= s
        if not any(d.parent.iterdir()):
            shutil.rmtree(d.parent, ignore_errors=True)


def _stale(d):
    """True for a finished entry of an older version of its source file, or an abandoned temporary folder."""
    m = d / "meta.json"
    if not m.is_file():
        return d.name.startswith(".tmp-") and not _alive(d)
    try:
        meta = json.loads(m.read_text())
        return _stamp(meta["source"]) != {"size": meta["size"], "mtime_ns": meta["mtime_ns"]}
    except (OSError, ValueError, KeyError):
        return True


def _alive(d, hours=6):
    """A temporary folder touched in the last hours may belong to a process still writing it."""
    import time
    try:
        return time.time() - d.stat().st_mtime < hours * 3600
    except OSError:
        return False


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def meta(d):
    return json.loads((Path(d) / "meta.json").read_text())


def array(d, name):
    """A read-only memory map of an entry's array."""
    return np.load(Path(d) / f"{name}.npy", mmap_mode="r")
