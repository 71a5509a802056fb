"""Every "line N" in a message is the line in the file: blank lines and quoted line breaks in cells counted;
rows of Parquet/Arrow files are "row N"; series loaders fill missing values on request or name the line."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import DataError
from engine.data import load
from engine.data import table as tbl


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERBOARD_CACHE", str(tmp_path / "cache"))


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


# header on line 1; blank lines 3 and 5; a quoted cell over lines 6-7; {bad} on line 9 (data row 5: not 5 + 2)
TRICKY = ('a,note,y\n'
          '1,plain,0\n'
          '\n'
          '2,plain,1\n'
          '\n'
          '3,"two\nlines",0\n'
          '4,plain,1\n'
          '{bad},plain,0\n'
          '6,plain,1\n')


def line_of(text, needle):
    return next(i for i, s in enumerate(text.split("\n"), 1) if needle in s)


def test_bad_number_names_its_real_line(tmp_path):
    text = TRICKY.replace("{bad}", "5") + "oops,plain,1\n7,plain,0\n" * 2
    p = write(tmp_path, text)
    with pytest.raises(DataError) as e:
        load({"kind": "csv", "path": str(p), "target": "y", "columns": {"a": "number", "note": "ignore"}})
    assert f"line {line_of(text, 'oops')}," in str(e.value) and "'oops'" in str(e.value)
    assert line_of(text, "oops") == 11                    # data row 8: not 8 + 2


def test_infinity_names_its_real_line(tmp_path):
    text = TRICKY.replace("{bad}", "inf")
    p = write(tmp_path, text)
    with pytest.raises(DataError, match=r"line 9, column 'a': infinity"):
        load({"kind": "csv", "path": str(p), "target": "y", "columns": {"note": "ignore"}})


def test_wrong_number_of_values_names_its_real_line(tmp_path):
    text = TRICKY.replace("{bad}", "5,extra")
    p = write(tmp_path, text)
    with pytest.raises(DataError, match=r"line 9: 4 values but the header has 3 columns"):
        load({"kind": "csv", "path": str(p), "target": "y"})


def test_bad_time_stamp_after_dropped_rows_names_its_line(tmp_path):
    text = ("when,x,y\n"
            "2020-01-01 00:00,1,\n"                  # no target: dropped before the stamps are read
            "\n"
            '2020-01-01 01:00,"2",1\n'
            "2020-01-01 02:00,3,0\n"
            "\n"
            "not a time,4,1\n"
            "2020-01-01 04:00,5,0\n")
    p = write(tmp_path, text)
    with pytest.raises(DataError) as e:
        load({"kind": "csv", "path": str(p), "target": "y", "columns": {"when": "datetime", "x": "number"},
              "time_format": "%Y-%m-%d %H:%M"})
    assert "line 7:" in str(e.value) and "'not a time'" in str(e.value)


def test_order_note_names_real_lines(tmp_path):
    text = ("time,x,y\n2020-01-01 00:00,1,1.5\n\n2020-01-01 02:00,2,2.5\n"
            '2020-01-01 01:00,3,"3.5"\n2020-01-01 03:00,4,4.5\n')
    ds = load({"kind": "csv", "path": str(write(tmp_path, text)), "target": "y"})
    note = next(c for c in ds.report if c["name"] == "time")["note"]
    assert note == "not in time order: line 5 is not after line 4"


def test_parquet_rows_are_rows(tmp_path):
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": ["1", "2", "x"], "y": [0.0, 1.0, 0.0]}), p)
    with pytest.raises(DataError, match=r"row 3, column 'a'"):
        load({"kind": "csv", "path": str(p), "target": "y", "columns": {"a": "number"}})


def test_quoted_line_breaks_across_parse_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(tbl, "PART", 64)                   # many parts: cuts fall inside quoted cells
    rows = [f'{i},"line one\nline two {i}",{i % 2}' for i in range(60)]
    p = write(tmp_path, "a,note,y\n" + "\n".join(rows) + "\n")
    t = tbl.read(p)
    assert t.num_rows == 60
    assert t.column("note")[37].as_py() == "line one\nline two 37"
    assert tbl.at(p, 37) == f"line {2 + 2 * 37}"


def test_series_missing_named_or_filled(tmp_path):
    text = ("time,temp\n2020-01-01 00:00,1\n\n2020-01-01 01:00,\n2020-01-01 02:00,3\n"
            "2020-01-01 03:00,NA\n2020-01-01 04:00,NA\n2020-01-01 05:00,9\n2020-01-01 06:00,10\n")
    p = write(tmp_path, text)
    ref = {"kind": "series", "path": str(p), "target": "temp", "window": 2}
    with pytest.raises(DataError, match=r"line 4, column 'temp': the value is missing.*ffill"):
        load(ref)
    ff = load(dict(ref, missing="ffill"))
    assert np.allclose(np.asarray(ff.x)[:, :, 0].ravel()[:6], [1, 1, 1, 3, 3, 3])
    assert any("3 missing values filled (ffill)" in n for n in ff.notes)
    lin = load(dict(ref, missing="interpolate"))
    assert np.allclose(np.asarray(lin.x)[:, 0, 0], [1, 2, 3, 5, 7, 9][:len(lin)])
    const = load(dict(ref, missing=0))
    assert np.asarray(const.x)[1, 0, 0] == 0.0
    with pytest.raises(DataError, match="unknown missing-value strategy 'median'"):
        load(dict(ref, missing="median"))


def test_series_out_of_order_names_real_line(tmp_path):
    text = "time,temp\n2020-01-01 00:00,1\n\n\n2020-01-01 02:00,2\n2020-01-01 01:00,3\n2020-01-01 03:00,4\n"
    with pytest.raises(DataError, match=r"line 6: time stamp '2020-01-01 01:00' is not after"):
        load({"kind": "series", "path": str(write(tmp_path, text)), "target": "temp", "window": 1})


def test_text_loader_unlabelled_lines(tmp_path):
    text = 'text,label\n"a good\nfilm",pos\n\nbad film,\nok film,neg\n'
    ds = load({"kind": "text", "path": str(write(tmp_path, text))})
    assert ds.notes and "(line 5)" in ds.notes[0]
