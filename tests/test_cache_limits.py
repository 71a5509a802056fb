"""The columnar cache: compressed Feather decompressed into it (then memory-mapped), uncompressed Arrow mapped
in place, and the folder kept under its size limit by removing the least recently used entries."""
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from engine.data import cache, load
from engine.data import table as tbl


@pytest.fixture(autouse=True)
def folder(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("LAYERBOARD_CACHE", str(d))
    return d


def frame(n=50_000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": x @ [1.0, -2.0, 0.5]})


def mapped(t):
    """True when every column buffer of the table lies in a memory-mapped file (not the process's heap)."""
    maps = [(int(a, 16), int(b, 16)) for a, b in
            (ln.split()[0].split("-") for ln in open("/proc/self/maps") if ln.split()[-1].endswith(".arrow")
             or ln.split()[-1].endswith(".feather"))]
    addrs = [b.address for col in t.columns for ch in col.chunks for b in ch.buffers() if b is not None and b.size]
    return bool(addrs) and all(any(lo <= a < hi for lo, hi in maps) for a in addrs)


def test_compressed_feather_is_decompressed_into_the_cache_and_mapped(tmp_path, folder):
    p = tmp_path / "z.feather"
    feather.write_feather(frame(), p, compression="zstd", chunksize=10_000)
    before = p.read_bytes()
    t = tbl.read(p)
    assert t.num_rows == 50_000 and mapped(t)
    assert list(folder.rglob("table.arrow"))                      # the uncompressed copy lives in the cache
    ds = load({"kind": "arrow", "path": str(p), "target": "y"})
    assert len(ds) == 50_000 and np.allclose(np.asarray(ds.x)[:3], np.c_[frame()["a"][:3], frame()["b"][:3],
                                                                           frame()["c"][:3]])
    assert p.read_bytes() == before


def test_uncompressed_arrow_is_mapped_in_place(tmp_path, folder):
    p = tmp_path / "u.feather"
    feather.write_feather(frame(), p, compression="uncompressed")
    t = tbl.read(p)
    assert mapped(t) and not list(folder.rglob("table.arrow"))


def test_cache_keeps_under_its_limit_least_recently_used_first(tmp_path, folder, monkeypatch):
    files = []
    for i in range(3):
        p = tmp_path / f"d{i}.csv"
        p.write_text("a,b,y\n" + "\n".join(f"{j},{j % 7},{j % 3}" for j in range(20_000)) + "\n")
        files.append(p)
    load({"kind": "csv", "path": str(files[0]), "target": "y"})
    size = lambda d: sum(f.stat().st_size for f in d.iterdir())                 # noqa: E731
    (parsed,) = [m.parent for m in folder.rglob("meta.json") if m.parent.name.startswith("parsed-")]
    (table,) = [m.parent for m in folder.rglob("meta.json") if m.parent.name.startswith("table-")]
    p, t = size(parsed), size(table)
    assert p > t / 2
    for f in (files[1], files[0]):                      # d0 used again after d1: its encoded entry is newer
        time.sleep(0.02)
        load({"kind": "csv", "path": str(f), "target": "y"})
    # room for one parsed and two and a half encoded entries: d2's entries push out d0's and d1's parses and
    # d1's encoding (least recently used first), never d0's encoding (used after them)
    monkeypatch.setenv("LAYERBOARD_CACHE_LIMIT", str(int(p + 2.5 * t)))
    time.sleep(0.02)
    load({"kind": "csv", "path": str(files[2]), "target": "y"})
    left = {(cache.meta(m.parent)["source"], m.parent.name.split("-")[0]) for m in folder.rglob("meta.json")}
    d0, d2 = (str(files[i].resolve()) for i in (0, 2))
    assert left == {(d0, "table"), (d2, "parsed"), (d2, "table")}          # d1 and d0's unused parse went
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) <= cache.limit()


def test_limit_parsing(monkeypatch):
    for text, want in (("2G", 2 << 30), ("500 MB", 500 << 20), ("1000", 1000), ("lots", cache.LIMIT)):
        monkeypatch.setenv("LAYERBOARD_CACHE_LIMIT", text)
        assert cache.limit() == want
