"""The Arrow data layer: column types and roles, overrides, missing values, time stamps, the cache, series
windows as views, `layerboard data` and "shape": "auto"."""
import gzip
import json
import os
import time

import numpy as np
import pyarrow as pa
import pytest

from engine import DataError
from engine.cli import main
from engine.data import load
from engine.data import table as tbl
from engine.data.dataset import Rows
from engine.data.timestamps import parse


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("LAYERBOARD_CACHE", str(d))
    return d


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


PENGUINS = ("id,island,bill,year,when,species\n"
            + "\n".join(f"p{i},{['Biscoe', 'Dream', 'Torgersen'][i % 3]},{30 + i % 11}.5,{2007 + i % 3},"
                        f"2020-01-{1 + i // 24:02d} {i % 24:02d}:00,{['Adelie', 'Gentoo'][i % 2]}"
                        for i in range(48)) + "\n")


def col(ds, name):
    return next(c for c in ds.report if c["name"] == name)


def test_defaults_number_category_id_time(tmp_path):
    ds = load({"kind": "csv", "path": str(write(tmp_path, PENGUINS)), "target": "species"})
    kinds = {c["name"]: (c["type"], c["role"]) for c in ds.report}
    assert kinds == {"id": ("category", "ignore"), "island": ("category", "feature"), "bill": ("number", "feature"),
                     "year": ("number", "feature"), "when": ("datetime", "time"), "species": ("category", "target")}
    assert "id" in col(ds, "id")["note"]
    assert ds.features == ["island=Biscoe", "island=Dream", "island=Torgersen", "bill", "year"]
    x = np.asarray(ds.x)
    assert x.shape == (48, 5) and np.array_equal(x[:3, :3], np.eye(3)) and x[4, 3] == 34.5
    assert ds.task == "binary" and ds.classes == ["Adelie", "Gentoo"] and list(ds.y[:4]) == [0, 1, 0, 1]


def test_overrides_of_types_and_roles(tmp_path):
    p = str(write(tmp_path, PENGUINS))
    ds = load({"kind": "csv", "path": p, "target": "species",
               "columns": {"year": "category", "island": "ignore", "when": "feature", "id": {"role": "ignore"}}})
    assert ds.features == ["bill", "year=2007", "year=2008", "year=2009", "when hour sin", "when hour cos",
                           "when year sin", "when year cos"]
    x = np.asarray(ds.x)
    np.testing.assert_allclose(x[6, 4:6], [1, 0], atol=1e-6)                     # 06:00: sin 90°, cos 90°
    ds = load({"kind": "csv", "path": p, "target": "bill"})
    assert ds.task == "regression" and "species=Adelie" in ds.features
    with pytest.raises(DataError, match=r"column 'year': unknown type 'colour'") as e:
        load({"kind": "csv", "path": p, "target": "species", "columns": {"year": "colour"}})
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="no column named 'nope'"):
        load({"kind": "csv", "path": p, "target": "species", "columns": {"nope": "ignore"}})


def test_text_column_becomes_tokens(tmp_path):
    rows = [f"this review says the food was {'great' if i % 2 else 'bad'} and the staff were kind {i},"
            f"{'pos' if i % 2 else 'neg'},{i}" for i in range(20)]
    ds = load({"kind": "csv", "path": str(write(tmp_path, "review,label,n\n" + "\n".join(rows))), "target": "label"})
    assert col(ds, "review")["type"] == "text" and col(ds, "n")["role"] == "ignore"
    assert ds.vocab[:2] == ["<pad>", "<unk>"] and ds.lengths.max() == 13 and ds.classes == ["neg", "pos"]


def test_empty_column_and_numbers_with_a_bad_cell(tmp_path):
    ds = load({"kind": "csv", "path": str(write(tmp_path, "a,e,b\n1,,0\n2,,1\n3,,0\n")), "target": "b"})
    assert col(ds, "e")["type"] == "empty" and col(ds, "e")["role"] == "ignore" and ds.features == ["a"]
    with pytest.raises(DataError, match=r"line 4, column 'a': 'x' is not a number"):
        load({"kind": "csv", "path": str(write(tmp_path, "a,b\n1,0\n2,1\nx,0\n", "u.csv")), "target": "b"})


MISSING = "a,c,y\n1,r,0\n,g,1\n3,,0\nNaN,g,1\n5,r,\n7,null,0\n9,g,1\n11,r,0\n"


def test_missing_values_default_report_and_training_median(tmp_path):
    ds = load({"kind": "csv", "path": str(write(tmp_path, MISSING)), "target": "y"})
    assert ds.features == ["a", "a (was missing)", "c=g", "c=r", "c=missing"] and len(ds) == 7
    a, c, y = col(ds, "a"), col(ds, "c"), col(ds, "y")
    assert (a["missing"], a["filled"], a["strategy"]) == (2, 2, "median")
    assert (c["missing"], c["filled"], c["strategy"]) == (2, 2, "level")
    assert (y["missing"], y["dropped"]) == (1, 1)
    x = np.asarray(ds.x)
    np.testing.assert_array_equal(x[:, 1], [0, 1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(x[:, 4], [0, 0, 1, 0, 1, 0, 0])
    assert x[1, 0] == np.median([1, 3, 7, 9, 11])                               # all rows before a split
    tr, va = ds.split(0.4, seed=1)
    seen = tr.x.base[tr.x.idx, 0]
    med = np.median(seen[~np.isnan(seen)])
    assert tr.x.fill[0] == va.x.fill[0] == np.float32(med)
    filled = tr.x[:]
    assert not np.isnan(filled).any() and np.all(filled[np.isnan(seen), 0] == np.float32(med))


@pytest.mark.parametrize("how,expect", [("mean", np.mean([1, 3, 7, 9, 11])), (-1, -1.0)])
def test_missing_strategies_mean_and_constant(tmp_path, how, expect):
    ds = load({"kind": "csv", "path": str(write(tmp_path, MISSING)), "target": "y", "missing": {"a": how}})
    assert np.isclose(ds.x[1, 0], expect) and col(ds, "a")["strategy"] == how


def test_missing_strategy_drop_rows(tmp_path):
    ds = load({"kind": "csv", "path": str(write(tmp_path, MISSING)), "target": "y", "missing": "drop"})
    assert len(ds) == 3 and ds.features == ["a", "c=g", "c=r"]
    assert col(ds, "a")["dropped"] + col(ds, "c")["dropped"] + col(ds, "y")["dropped"] == 5
    with pytest.raises(DataError, match="unknown missing-value strategy 'guess'"):
        load({"kind": "csv", "path": str(write(tmp_path, MISSING)), "target": "y", "missing": "guess"})


@pytest.mark.parametrize("stamps,fmt,hours,days", [
    (["2013-01-01T06:00:00", "2013-01-01T07:30:00"], None, [6, 7.5], [0, 0]),
    (["01/31/1988 23:00", "01/31/1988 24:00"], None, [23, 0], [0, 1]),                   # 24:00: next day
    (["31.12.2020", "01.01.2021"], None, [0, 0], [0, 1]),
    (["2020-03-01 05:00:00", "2020-03-01 06:00:00"], None, [5, 6], [0, 0]),
    ([0, 90000], None, [0, 1], [0, 1]),                                                  # Unix seconds
    (["03/04/2020", "03/05/2020"], None, [0, 0], [0, 1]),                               # M/D/Y by default
    (["03/04/2020", "03/05/2020"], "%d/%m/%Y", [0, 0], [0, 30]),                        # explicit D/M/Y
])
def test_time_formats(stamps, fmt, hours, days):
    s = parse(pa.array(stamps), fmt)
    np.testing.assert_allclose(s.hour(), hours)
    assert list(s.wall // 86400 - s.wall[0] // 86400) == days                         # calendar days


def test_time_zones_are_the_stamps_own_not_the_machines(monkeypatch):
    s = parse(pa.array(["2020-01-01T05:00:00+02:00", "2020-01-01T05:00:00Z", "2020-01-01T05:00:00-05:30"]))
    np.testing.assert_allclose(s.hour(), [5, 5, 5])                                     # the local clock
    assert list(s.utc - s.utc[1]) == [-7200, 0, 19800]                                  # one instant each
    ny = parse(pa.array([1593619200]), tz="America/New_York")                          # 16:00 UTC in July
    assert ny.hour()[0] == 12
    before = parse(pa.array(["2020-07-01 12:00"])).hour()
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert parse(pa.array(["2020-07-01 12:00"])).hour()[0] == before[0] == 12
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_unused_bad_time_column_never_blocks_and_disorder_is_noted(tmp_path):
    p = write(tmp_path, "time,a,y\nsoon,1,0\nlater,2,1\n2020-01-01,3,0\n2020-01-02,4,1\n")
    assert load({"kind": "csv", "path": str(p), "target": "y"}).features == ["a"]
    p = write(tmp_path, "time,a,y\n2020-01-01 01:00,1,0\n2020-01-01 03:00,2,1\n2020-01-01 02:00,3,0\n", "o.csv")
    ds = load({"kind": "csv", "path": str(p), "target": "y"})
    assert col(ds, "time")["note"] == "not in time order: line 4 is not after line 3" and len(ds) == 3


def series(tmp_path, n=60, back=False):
    hours = list(range(n))
    if back:
        hours[10], hours[11] = hours[11], hours[10]
    return write(tmp_path, "time,temp,hum\n" + "\n".join(
        f"2024-01-{1 + h // 24:02d} {h % 24:02d}:00,{np.sin(h / 5):.4f},{h % 7}" for h in hours), "s.csv")


def test_series_out_of_order_refused_unless_sort(tmp_path):
    p = str(series(tmp_path, back=True))
    with pytest.raises(DataError, match=r"s\.csv, line 13: time stamp '2024-01-01 10:00' is not after .*\"sort\": true"):
        load({"kind": "series", "path": p, "target": "temp", "window": 4})
    ds = load({"kind": "series", "path": p, "target": "temp", "window": 4, "sort": True})
    np.testing.assert_allclose(ds.x[8, :, 0], np.sin(np.arange(8, 12) / 5), atol=1e-4)


def test_series_windows_are_views(tmp_path):
    ds = load({"kind": "series", "path": str(series(tmp_path, n=300)), "target": "temp", "window": 100,
               "hour_features": True})
    assert ds.x.shape == (200, 100, 4) and np.shares_memory(ds.x[0], ds.x[1])
    assert not ds.x.flags.owndata and ds.x.strides[0] == ds.x.strides[1]          # next window = one row on
    tr, va = ds.split(0.2)
    assert np.shares_memory(tr.x, ds.x) and np.shares_memory(va.x, ds.x)
    np.testing.assert_allclose(ds.x[0, 13, 2:], [np.sin(2 * np.pi * 13 / 24), np.cos(2 * np.pi * 13 / 24)],
                               atol=1e-6)                                               # hour of the stamp
    mean, _ = tr.step_standardizer()
    np.testing.assert_allclose(mean, np.asarray(tr.x, np.float64).reshape(-1, 4).mean(0), rtol=1e-5, atol=1e-6)


def test_cache_reused_then_invalidated_when_the_file_changes(tmp_path, cache, monkeypatch):
    p = write(tmp_path, "a,b,y\n1,2,0\n3,4,1\n")
    assert np.asarray(load({"kind": "csv", "path": str(p), "target": "y"}).x).tolist() == [[1, 2], [3, 4]]
    entries = sorted(d.name.split("-")[0] for d in next(cache.iterdir()).iterdir())
    assert entries == ["parsed", "table"]

    def no_parsing(*a, **k):
        raise AssertionError("parsed again")
    monkeypatch.setattr(tbl, "_csv", no_parsing)
    ds = load({"kind": "csv", "path": str(p), "target": "y"})
    assert isinstance(ds.x, Rows) and isinstance(ds.x.base, np.memmap) and not ds.x.base.flags.writeable
    monkeypatch.undo()
    monkeypatch.setenv("LAYERBOARD_CACHE", str(cache))
    before = p.read_text()
    p.write_text("a,b,y\n5,6,0\n7,8,1\n9,9,0\n")
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert np.asarray(load({"kind": "csv", "path": str(p), "target": "y"}).x).tolist() == [[5, 6], [7, 8], [9, 9]]
    assert len(list(next(cache.iterdir()).iterdir())) == 2                              # old entries removed
    assert before != p.read_text()


def test_other_formats_read_the_same(tmp_path):
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
    t = pa.table({"a": [1.0, 2.0, None, 4.0], "k": ["u", "v", "u", "v"], "y": [0, 1, 0, 1]})
    pq.write_table(t, tmp_path / "t.parquet")
    feather.write_feather(t, tmp_path / "t.feather")
    (tmp_path / "t.tsv").write_text("a\tk\ty\n1\tu\t0\n2\tv\t1\n\tu\t0\n4\tv\t1\n")
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"a,k,y\n1,u,0\n2,v,1\n,u,0\n4,v,1\n"))
    xs = [np.asarray(load({"kind": "csv", "path": str(tmp_path / f), "target": "y"}).x)
          for f in ("t.parquet", "t.feather", "t.tsv", "t.csv.gz")]
    for x in xs:
        np.testing.assert_array_equal(x, xs[0])
    assert xs[0].shape == (4, 4) and xs[0][2, 0] == 2 and xs[0][2, 1] == 1


def test_parse_by_parts_equals_the_whole_file_parse(tmp_path, monkeypatch):
    rows = [f"{i},{i % 3},{i % 2}" for i in range(3000)] + ["1.5,x,0"]                 # a later block: text
    p = write(tmp_path, "a,k,y\n" + "\n".join(rows) + "\n")
    ref = {"kind": "csv", "path": str(p), "target": "y", "columns": {"k": "category"}}
    whole = load(ref)
    monkeypatch.setattr(tbl, "PART", 4096)
    monkeypatch.setattr(tbl, "BLOCK", 4096)
    monkeypatch.setenv("LAYERBOARD_CACHE", str(tmp_path / "other"))
    streamed = load(ref)
    assert streamed.features == whole.features == ["a", "k=0", "k=1", "k=2", "k=x"]
    np.testing.assert_array_equal(np.asarray(streamed.x), np.asarray(whole.x))


def test_bad_rows_one_line(tmp_path):
    with pytest.raises(DataError, match=r"b\.csv, line 4: 1 values but the header has 2 columns"):
        load({"kind": "csv", "path": str(write(tmp_path, "a,b\n1,2\n3,4\n5\n", "b.csv")), "target": "b"})


def test_subsets_of_a_table_are_gathered_per_batch(tmp_path):
    p = write(tmp_path, "a,b,y\n" + "\n".join(f"{i},{-i},{i % 2}" for i in range(100)))
    ds = load({"kind": "csv", "path": str(p), "target": "y"})
    tr, va = ds.split(0.2, seed=0)
    assert isinstance(tr.x, Rows) and tr.x.base is ds.x.base and len(tr) == 80
    j = np.array([5, 0, 7])
    np.testing.assert_array_equal(tr.x[j][:, 0], tr.x.idx[j])
    assert tr.x[j].flags.c_contiguous and tr.x[j].flags.writeable


def project(tmp_path, shape="auto"):
    write(tmp_path, MISSING, "m.csv")
    d = {"format": "layerboard-project", "version": 1, "name": "m",
         "graph": {"nodes": [{"name": "input", "type": "Input", "config": {"shape": shape, "standardize": True}},
                             {"name": "out", "type": "Dense", "config": {"units": 1}},
                             {"name": "sig", "type": "Sigmoid", "config": {}}],
                   "edges": [{"src": "input", "dst": "out"}, {"src": "out", "dst": "sig"}]},
         "training": {"loss": "bce", "epochs": 1, "batch_size": 2, "validation_split": 0.3},
         "dataset": {"kind": "csv", "path": "m.csv", "target": "y"}, "runs": []}
    (tmp_path / "m.json").write_text(json.dumps(d))
    return str(tmp_path / "m.json")


def test_layerboard_data_prints_the_report_and_rows_as_fed(tmp_path, capsys):
    assert main(["data", project(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["column", "type", "role", "missing"]
    assert out[1].split()[:7] == ["a", "number", "feature", "2", "median", "2", "0"]
    assert out[3].split()[:7] == ["y", "number", "target", "1", "0", "1", "0"]
    assert "7 samples of shape (5,)" in out[4] and "binary" in out[4]
    assert out[6].split() == ["feature", "#0", "#1", "#2", "#3", "#4"]
    assert out[8].split() == ["a", "(was", "missing)", "0", "1", "0", "1", "0"]


def test_shape_auto_takes_the_encoded_sample_shape(tmp_path, capsys):
    assert main(["summary", project(tmp_path)]) == 0
    assert "(5,)" in capsys.readouterr().out.splitlines()[1]
    assert main(["train", project(tmp_path), "--epochs", "1"]) == 0
    assert "completed after 1 epoch (" in capsys.readouterr().out          # not "1 epochs"


def test_encoding_block_by_block_equals_one_block(tmp_path, monkeypatch):
    from engine.data import columns
    p = str(write(tmp_path, PENGUINS.replace(",Biscoe,30.5,", ",,30.5,").replace(",34.5,", ",,")))
    ref = {"kind": "csv", "path": p, "target": "species", "columns": {"when": "feature"}, "missing": {"year": "drop"}}
    one = load(ref)
    monkeypatch.setattr(columns, "CHUNK", 7)
    monkeypatch.setenv("LAYERBOARD_CACHE", str(tmp_path / "blocks"))
    many = load(ref)
    assert many.features == one.features and "island=missing" in one.features and "bill (was missing)" in one.features
    np.testing.assert_array_equal(np.asarray(many.x), np.asarray(one.x))
    np.testing.assert_array_equal(many.y, one.y)
    assert many.report == one.report and col(one, "bill")["filled"] == 4


def test_input_statistics_and_predictions_read_table_rows_in_blocks(tmp_path):
    from engine.graph import Graph
    from engine.model import Model
    rng = np.random.default_rng(0)
    v = rng.normal(3, 2, (300, 2))
    p = write(tmp_path, "a,b,y\n" + "\n".join(f"{a:.5f},{b:.5f},{i % 2}" for i, (a, b) in enumerate(v)))
    tr, _ = load({"kind": "csv", "path": str(p), "target": "y"}).split(0.2, seed=0)
    g = Graph()
    g.chain(("x", "Input", {"shape": [2], "standardize": True}), ("o", "Dense", {"units": 1}))
    m = Model(g)
    m.layers["x"].adapt(tr.x)                                                    # Rows: read in blocks
    plain = np.asarray(tr.x)
    np.testing.assert_allclose(m.layers["x"].p["mean"], plain.mean(0), rtol=1e-5)
    np.testing.assert_allclose(m.layers["x"].p["std"], plain.std(0), rtol=1e-4)
    np.testing.assert_allclose(m.predict(tr.x, batch_size=7), m.predict(plain), rtol=1e-6)
