"""Time stamps of a column: ISO 8601, M/D/Y H:M, D.M.Y, Y-M-D H:M:S, Unix seconds; 24:00 as the next day's 00:00.

Each stamp becomes two int64 second counts: `utc` (the instant, for ordering) and `wall` (the clock reading
where the stamp was taken, for hour-of-day features). Stamps without a zone are wall-clock readings taken as
written; the machine's time zone is never consulted."""
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError

# tried in this order; a column takes the first format that reads every one of its stamps
FORMATS = ("iso", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S",
           "%d.%m.%Y", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%m/%d/%y %H:%M", "%m/%d/%y")
NAMES = ("time", "date", "datetime", "timestamp", "time_hour")
LOOKS = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
ZONE = r"(?:Z|[+-]\d\d:?\d\d)$"
DAY = 86400


class Stamps:
    """utc, wall: (N,) int64 seconds; fmt: the format read ('unix' for numbers)."""

    def __init__(self, utc, wall, fmt):
        self.utc, self.wall, self.fmt = utc, wall, fmt

    def hour(self):
        """Hour of day (N,) float64 on the local clock, 0 ≤ h < 24."""
        return (self.wall % DAY) / 3600.0


def _seconds(a):
    """int64 seconds of a timestamp array (nulls → int64 min)."""
    return pc.cast(pc.cast(a, pa.timestamp("s")), pa.int64()).to_numpy(zero_copy_only=False)


def _read(s, fmt):
    """int64 wall-clock seconds of strings s (no nulls) in format fmt, or None if any one does not read."""
    try:
        if fmt == "iso":
            s = pc.replace_substring_regex(s, r"^(\d{4}-\d\d-\d\d)[T ](\d\d)$", r"\1 \2:00")   # 'YYYY-MM-DD HH'
            t = pc.cast(s, pa.timestamp("s"))
        else:
            t = pc.strptime(s, format=fmt, unit="s")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return _seconds(t)


def parse(col, fmt=None, tz=None, where="", at=None):
    """Stamps of an Arrow array (strings, numbers or timestamps) without nulls; DataError naming the first
    stamp that does not read. fmt: a strptime format such as '%d/%m/%Y %H:%M'; tz: the zone of stamps without
    one (e.g. 'America/New_York'; Unix seconds are UTC and shown on that zone's clock); at(i): where stamp i is in
    the file ('line N'; default: the line of data row i under a header)."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.null_count:
        i = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise DataError(f"{where}, {_line(at, i)}: the time stamp is missing")
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        utc = pc.cast(col, pa.float64()).to_numpy().round().astype(np.int64)
        return Stamps(utc, _zoned(utc, tz), "unix")
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if getattr(t, "tz", None):
            wall = _seconds(pc.local_timestamp(col))
            return Stamps(_seconds(col), wall, "iso")
        wall = _seconds(col)
        return Stamps(_utc(wall, tz), wall, "iso")
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise DataError(f"{where}: a {t} column is not a time column")
    s = pc.utf8_trim_whitespace(col)
    late = pc.match_substring_regex(s, r"(^|[ T])24:00(:00)?($|[^\d])").to_numpy(zero_copy_only=False)
    if late.any():                                                   # 24:00 → 00:00 of the next day
        s = pc.replace_substring_regex(s, r"(^|[ T])24:00", r"\100:00")
    zoned = pc.match_substring_regex(s, ZONE).to_numpy(zero_copy_only=False)
    offset = np.zeros(len(s), np.int64)
    if zoned.any():
        offset = _offsets(s, zoned)
        s = pc.replace_substring_regex(s, r"\s*" + ZONE, "")
    wall, used = None, None
    for f in ([fmt] if fmt else FORMATS):
        wall = _read(s, f)
        if wall is not None:
            used = f
            break
    if wall is None:
        bad = _first_bad(s, fmt)
        raw = col[bad].as_py()
        tried = f"the format {fmt!r}" if fmt else "ISO 8601, M/D/Y H:M, D.M.Y, Y-M-D H:M:S or Unix seconds"
        raise DataError(f"{where}, {_line(at, bad)}: {raw!r} is not a time stamp ({tried}); "
                        f"give \"time_format\", e.g. \"%d/%m/%Y %H:%M\"")
    wall = wall + DAY * late
    if zoned.any():
        return Stamps(wall - offset, wall, used)
    return Stamps(_utc(wall, tz), wall, used)


def _first_bad(s, fmt):
    """Index of the first stamp that no format (or fmt) reads; else of the first one that the format of the
    first stamp does not read (the column mixes formats)."""
    fmts = [fmt] if fmt else FORMATS
    reads = lambda part, fs: any(_read(part, f) is not None for f in fs)           # noqa: E731
    first = next((f for f in fmts if _read(s.slice(0, 1), f) is not None), None)
    for i in range(0, len(s), 4096):
        part = s.slice(i, 4096)
        if reads(part, [first] if first else fmts):
            continue
        for k in range(len(part)):
            if not reads(part.slice(k, 1), [first] if first else fmts):
                return i + k
    return 0


def _offsets(s, zoned):
    """(N,) int64 seconds east of UTC from each stamp's 'Z' or '+HH:MM' suffix."""
    m = pc.extract_regex(pc.if_else(pa.array(zoned), s, "+00:00"), r"(?P<s>[+-])(?P<h>\d\d):?(?P<m>\d\d)$")
    out = np.zeros(len(zoned), np.int64)
    ok = m.is_valid().to_numpy(zero_copy_only=False)                  # 'Z' does not match: offset 0
    if ok.any():
        m = m.filter(pa.array(ok))
        h, mi = (pc.cast(pc.struct_field(m, k), pa.int64()).to_numpy() for k in ("h", "m"))
        sign = np.where(pc.equal(pc.struct_field(m, "s"), "-").to_numpy(zero_copy_only=False), -1, 1)
        out[ok] = sign * (h * 3600 + mi * 60)
    return out


def _zoned(utc, tz):
    """Wall-clock seconds in zone tz of UTC instants (tz None: UTC)."""
    if not tz:
        return utc
    try:
        return _seconds(pc.local_timestamp(pa.array(utc, pa.timestamp("s", tz=tz))))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataError(f"unknown time zone {tz!r}: {e}") from None


def _utc(wall, tz):
    """UTC instants of wall-clock readings in zone tz (tz None: the readings as they are)."""
    if not tz:
        return wall
    try:
        return _seconds(pc.assume_timezone(pa.array(wall, pa.timestamp("s")), tz, ambiguous="earliest",
                                           nonexistent="earliest"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataError(f"unknown time zone {tz!r}: {e}") from None


def _line(at, i):
    """Where stamp i is: at(i), or the line of data row i under a header."""
    return at(i) if at is not None else f"line {i + 2}"


def looks_like_time(name, col):
    """True when a string column is probably time stamps: a time-like name or a date-like first value."""
    if name.lower() in NAMES:
        return True
    v = next((x for x in col.slice(0, 20).to_pylist() if x), None)
    return bool(v and LOOKS.match(v))


def first_back(utc):
    """Index of the first row whose stamp is not after the previous one, or None when strictly in order."""
    d = np.diff(utc)
    bad = np.flatnonzero(d <= 0)
    return int(bad[0]) + 1 if bad.size else None
