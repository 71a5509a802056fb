"""Tables read with Apache Arrow (CSV, TSV, .gz, Parquet, Arrow/Feather IPC), kept parsed in the cache."""
import gzip
import mmap
import threading
import weakref
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc

from ..errors import DataError
from . import cache

NULLS = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "#N/A", "?"]
PART = 8 << 20             # bytes of a CSV parsed at a time (the peak memory of a parse: a few parts)
BLOCK = 1 << 20            # Arrow's block within a part (its threads parse the blocks in parallel)


def kind_of(path):
    """'parquet', 'arrow' or 'csv' from the file name."""
    name = Path(path).name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".arrow", ".feather", ".ipc")):
        return "arrow"
    return "csv"


def read(path, delimiter=None):
    """The file as an Arrow table (memory-mapped from the cache or the file itself when possible)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"cannot read {path}: no such file")
    kind = kind_of(path)
    if kind == "arrow" and not _compressed(path):
        return _open_ipc(path, path)                           # the user's file itself, memory-mapped
    opts = {"delimiter": delimiter}
    hit = cache.lookup(path, "parsed", opts)
    if hit is not None:
        return _open_ipc(hit / "table.arrow", path)
    w = cache.Writer(path, "parsed", opts)
    try:
        if kind == "parquet":
            _parquet(path, w.dir / "table.arrow")
        elif kind == "arrow":                                  # compressed: decompressed into the cache
            _decompress(path, w.dir / "table.arrow")
        else:
            _csv(path, w.dir / "table.arrow", delimiter)
        d = w.commit({"kind": kind})
    except BaseException:
        w.abort()
        raise
    return _open_ipc(d / "table.arrow", path)


class Cancelled(DataError):
    """Reading was cancelled (by the hook of `reporting`)."""


_hook = threading.local()


@contextmanager
def reporting(fn):
    """Within the block, this thread's reads and encodings call fn(what, fraction done); fn may raise
    Cancelled to stop (the cache is left as it was)."""
    old = getattr(_hook, "fn", None)
    _hook.fn = fn
    try:
        yield
    finally:
        _hook.fn = old


def progress(what, fraction):
    fn = getattr(_hook, "fn", None)
    if fn is not None:
        fn(what, fraction)


_maps = weakref.WeakValueDictionary()      # file mappings that tables read by this process point into


def _open_ipc(f, path):
    try:
        with open(f, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        _maps[id(mm)] = mm
        t = ipc.open_file(pa.py_buffer(mm)).read_all()          # zero-copy: the columns live in the mapping
    except (pa.ArrowInvalid, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable Arrow/Feather file: {e}") from None
    if t.num_rows == 0:
        raise DataError(f"{path}: needs a header row and at least one data row")
    seen = set()
    for n in t.column_names:
        if n in seen:
            raise DataError(f"{path}: two columns are named {n!r}; give each column its own name")
        seen.add(n)
    if any(pa.types.is_dictionary(f.type) for f in t.schema):          # categorical columns: plain values
        t = t.cast(pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                              for f in t.schema]))
    return t


def evict():
    """Let the kernel take back the pages of mapped tables this process has read (they are read again from
    the file when touched): a pass over a large table then holds a block's pages at a time, not the file's."""
    for mm in list(_maps.values()):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def _compressed(path):
    """True when an Arrow IPC file's record batches are compressed (their columns cannot be mapped)."""
    try:
        with open(path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        buf = pa.py_buffer(mm)
        r = ipc.open_file(buf)
        for i in range(r.num_record_batches):
            b = r.get_batch(i)
            for c in b.columns:
                for x in c.buffers():
                    if x is not None and x.size:        # a decompressed buffer lives outside the mapping
                        return not buf.address <= x.address < buf.address + buf.size
        return False
    except (pa.ArrowInvalid, OSError, ValueError):
        return False                                     # _open_ipc names the problem


def _decompress(path, out):
    """Write an Arrow IPC file's batches uncompressed to out, one batch in memory at a time."""
    try:
        with pa.memory_map(str(path)) as src:
            r = ipc.open_file(src)
            with ipc.new_file(str(out), r.schema) as w:
                for i in range(r.num_record_batches):
                    progress("reading", i / max(r.num_record_batches, 1))
                    w.write_batch(r.get_batch(i))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path} is not a readable Arrow/Feather file: {e}") from None


def _parquet(path, out):
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path, memory_map=True)
        with ipc.new_file(str(out), pf.schema_arrow) as w:
            for b in pf.iter_batches(batch_size=1 << 20):
                w.write_batch(b)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path} is not a readable Parquet file: {e}") from None


def _delimiter(path, delimiter):
    if delimiter:
        return delimiter
    name = path.name.lower().removesuffix(".gz")
    return "\t" if name.endswith((".tsv", ".tab")) else ","


def _csv(path, out, delimiter):
    """Parse a CSV (plain or gzip) into an Arrow IPC file, PART bytes of it at a time (each part with Arrow's
    threads): every column a float64 or a string. Types come from the first part; a column that later holds
    a value its type cannot read is read again as text."""
    sep = _delimiter(path, delimiter)
    bad = []
    parse = pcsv.ParseOptions(delimiter=sep, invalid_row_handler=lambda r: bad.append(r) or "skip")
    conv = dict(null_values=NULLS, strings_can_be_null=True, quoted_strings_can_be_null=True,
                timestamp_parsers=["never"])                # time stamps stay text: read with their own zone
    types = {}
    try:
        for _ in range(64):
            bad.clear()
            try:
                _parts(path, out, parse, conv, types)
                _check_rows(path, bad, sep)
                return
            except pa.ArrowInvalid as e:
                col = _failed_column(str(e), list(types))
                if col is None or types[col] == pa.string():
                    raise
                types[col] = pa.string()
        raise DataError(f"{path}: could not settle the column types")
    except pa.ArrowInvalid as e:
        msg = str(e)
        if "Empty CSV file" in msg:
            raise DataError(f"{path}: needs a header row and at least one data row") from None
        raise DataError(f"{path} is not a readable CSV text file: {msg.splitlines()[0]}") from None
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _parts(path, out, parse, conv, types):
    """Write the file's rows to the IPC file out, a part at a time; `types` (name: Arrow type) is filled from
    the first part when empty."""
    size = max(path.stat().st_size, 1)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw) if gz else raw
        head = f.readline()
        rest, w = b"", None
        try:
            while True:
                block = f.read(PART)
                progress("reading", min(raw.tell() / size, 1.0))
                data = rest + block
                cut = _record_end(data) if block else len(data)             # whole records only
                data, rest = data[:cut], data[cut:]
                if data.strip():
                    t = pcsv.read_csv(pa.BufferReader(head + data), read_options=pcsv.ReadOptions(block_size=BLOCK),
                                      parse_options=parse,
                                      convert_options=pcsv.ConvertOptions(column_types=types or None, **conv))
                    if not types:
                        types.update((fl.name, _wide(fl.type)) for fl in t.schema)
                    t = t.cast(pa.schema([pa.field(n, types[n]) for n in t.column_names]))
                    w = w or ipc.new_file(str(out), t.schema)
                    w.write_table(t, max_chunksize=1 << 20)
                if not block:
                    break
        finally:
            if w is not None:
                w.close()
    if w is None:
        pcsv.read_csv(pa.BufferReader(head), parse_options=parse)          # an empty file: Arrow says so
        raise DataError(f"{path}: needs a header row and at least one data row")


def _wide(t):
    """Numbers as float64 (a later part may hold fractions), everything else as it was inferred."""
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
        return pa.float64() if not pa.types.is_null(t) else pa.string()
    return t


def _failed_column(msg, names):
    import re
    m = re.search(r"In CSV column #(\d+)", msg)
    return names[int(m.group(1))] if m and int(m.group(1)) < len(names) else None


def _check_rows(path, bad, sep):
    """One line naming the first row with a wrong number of values (found by reading the text again)."""
    if not bad:
        return
    for line, r in records(path, sep):
        if line == 0:
            header = r
        elif len(r) != len(header):
            raise DataError(f"{path}, line {line}: {len(r)} values but the header has {len(header)} columns")
    raise DataError(f"{path}: {len(bad)} rows do not have the header's {len(header)} columns "
                    f"(first: {bad[0].text[:60]!r})")


def _record_end(data):
    """Bytes of data up to its last line break outside a quoted cell (a cell may hold line breaks)."""
    cut = data.rfind(b"\n") + 1
    while cut and data.count(b'"', 0, cut) % 2:                 # inside quotes: an earlier line break
        cut = data.rfind(b"\n", 0, cut - 1) + 1
    return cut


MAX_CELL = 64 << 20          # characters in one CSV cell when the text is read again for a line number


def records(path, sep=None):
    """(file line where the record starts, cells) of each non-blank record of a CSV (plain or gzip), as Arrow
    reads them: blank lines skipped, quoted cells across lines; the header is yielded with line 0."""
    import csv
    import io
    path = Path(path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw) if gz else raw
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text, delimiter=_delimiter(path, sep))
        limit = csv.field_size_limit(MAX_CELL)
        try:
            start, header = 1, True
            for r in reader:
                if r:
                    yield (0 if header else start), r
                    header = False
                start = reader.line_num + 1
        finally:
            csv.field_size_limit(limit)


def at(path, row, sep=None):
    """'line N' (the file line of data row `row`, counted from 0, in a CSV) or 'row N' (Parquet, Arrow)."""
    row = int(row)
    if kind_of(path) != "csv":
        return f"row {row + 1}"
    left = row
    try:
        for line, _ in records(path, sep):
            if line and left == 0:
                return f"line {line}"
            left -= 1 if line else 0
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error, ValueError):
        pass
    return f"data row {row + 1}"


def header_check(table, path, names):
    """DataError unless every name is a column."""
    for n in names:
        if n not in table.column_names:
            raise DataError(f"{path}: no column named {n!r}; columns are {', '.join(table.column_names)}")


NUM = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def numbers(table, name, path, what="is not a number (mark the column 'category' or 'ignore' in \"columns\")",
            first=0):
    """(N,) float64 of a column with NaN for missing cells; DataError at the first cell that is not a
    number or is infinite (table: rows from data row `first` on)."""
    c = table.column(name)
    if pa.types.is_string(c.type) or pa.types.is_large_string(c.type):
        s = pc.utf8_trim_whitespace(c)
        ok = pc.or_kleene(pc.is_null(s), pc.match_substring_regex(s, NUM)).to_numpy(zero_copy_only=False)
        if not ok.all():
            i = int(np.argmin(ok))
            raise DataError(f"{path}, {at(path, first + i)}, column {name!r}: {c[i].as_py().strip()!r} {what}")
        c = pc.cast(s, pa.float64())
    elif pa.types.is_boolean(c.type) or pa.types.is_integer(c.type) or pa.types.is_decimal(c.type):
        c = pc.cast(c, pa.float64())
    elif not pa.types.is_floating(c.type):
        raise DataError(f"{path}: column {name!r} holds {c.type}, not numbers")
    v = c.to_numpy() if c.null_count == 0 and isinstance(c, pa.Array) else \
        np.asarray(pc.fill_null(c, np.nan).to_numpy(), np.float64)
    inf = np.isinf(v)
    if inf.any():
        i = int(np.argmax(inf))
        raise DataError(f"{path}, {at(path, first + i)}, column {name!r}: infinity is not a usable value")
    return v


def numeric_share(col):
    """Share of the non-missing cells of a string column that read as numbers."""
    s = pc.utf8_trim_whitespace(col)
    n = len(s) - s.null_count
    return pc.sum(pc.match_substring_regex(s, NUM)).as_py() / n if n else 0.0
