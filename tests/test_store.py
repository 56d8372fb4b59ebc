"""BarStore: Parquet bars partitioned by symbol and UTC date, atomic appends, dedupe on read."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from scalper import store as store_mod
from scalper.store import BarStore, resolve_uri
from scalper.types import BAR_COLUMNS, NS_PER_MINUTE, Bar, BarBatch

DAY = 24 * 60 * NS_PER_MINUTE
T0 = int(pd.Timestamp("2024-01-02", tz="UTC").value)  # midnight UTC
PART_NAME = re.compile(r"^part-\d{6}-\d+-\d+-[0-9a-f]{8}\.parquet$")


def make_bars(start_ns: int, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.1, n))
    open_ = close + rng.normal(0, 0.05, n)
    high = np.maximum(open_, close) + rng.random(n) * 0.1
    low = np.minimum(open_, close) - rng.random(n) * 0.1
    vwap = (open_ + close) / 2
    vwap[::7] = np.nan  # unknown vwap is allowed
    trades = rng.integers(0, 50, n).astype(np.int64)
    trades[::11] = -1  # unknown trade count is allowed
    return pd.DataFrame(
        {
            "timestamp": start_ns + np.arange(n, dtype=np.int64) * NS_PER_MINUTE,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.random(n) * 10,
            "trades": trades,
            "vwap": vwap,
        }
    )


def data_files(root: Path) -> list[Path]:
    """Every non-hidden file under the root (what a reader could pick up)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
    )


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


# ------------------------------------------------------------------ round trip and layout


def test_round_trip_equals_input_exactly_including_dtypes(tmp_path):
    store = BarStore(str(tmp_path))
    bars = make_bars(T0 + 5 * NS_PER_MINUTE, 300)
    assert store.append("ES", bars) == 300
    out = store.read("ES")
    assert list(out.columns) == list(BAR_COLUMNS)
    assert out.dtypes.astype(str).tolist() == ["int64"] + ["float64"] * 5 + ["int64", "float64"]
    assert isinstance(out.index, pd.RangeIndex)
    assert_same(out, bars)


def test_round_trip_from_bar_list_and_bar_batch(tmp_path):
    store = BarStore(str(tmp_path))
    df = make_bars(T0, 20)
    rows = df.to_dict("records")
    bars = [
        Bar(
            "ES",
            int(r["timestamp"]),
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
            int(r["trades"]),
            r["vwap"],
        )
        for r in rows[:10]
    ]
    batch = BarBatch(
        symbol="ES",
        ts=df["timestamp"].to_numpy()[10:],
        open=df["open"].to_numpy()[10:],
        high=df["high"].to_numpy()[10:],
        low=df["low"].to_numpy()[10:],
        close=df["close"].to_numpy()[10:],
        volume=df["volume"].to_numpy()[10:],
        trades=df["trades"].to_numpy()[10:],
        vwap=df["vwap"].to_numpy()[10:],
    )
    assert store.append("ES", bars) == 10
    assert store.append("ES", batch) == 10
    assert_same(store.read("ES"), df)


def test_tz_aware_datetime_timestamps_are_stored_as_int64_ns(tmp_path):
    store = BarStore(str(tmp_path))
    bars = make_bars(T0, 5)
    as_dates = bars.assign(timestamp=pd.to_datetime(bars["timestamp"], utc=True).dt.tz_convert("US/Eastern"))
    store.append("ES", as_dates)
    assert_same(store.read("ES"), bars)


def test_partition_layout_on_disk(tmp_path):
    store = BarStore(str(tmp_path))
    bars = make_bars(T0 + 60 * NS_PER_MINUTE, 10)
    store.append("ES", bars)
    files = data_files(tmp_path)
    assert len(files) == 1
    f = files[0]
    assert f.parent == tmp_path / "symbol=ES" / "date=2024-01-02"
    assert PART_NAME.match(f.name), f.name
    first, last = int(bars["timestamp"].iloc[0]), int(bars["timestamp"].iloc[-1])
    assert f.name.startswith(f"part-000000-{first}-{last}-")
    # The symbol is the partition key, not a column in the file; timestamp is plain int64 ns.
    schema = pq.read_schema(f)
    assert schema.names == list(BAR_COLUMNS)
    assert str(schema.field("timestamp").type) == "int64"
    # A second append to the same partition gets the next write sequence number.
    store.append("ES", make_bars(T0 + 120 * NS_PER_MINUTE, 3))
    names = sorted(p.name for p in data_files(tmp_path))
    assert [n[:11] for n in names] == ["part-000000", "part-000001"]


def test_pyarrow_dataset_reads_the_store_with_hive_partitioning(tmp_path):
    store = BarStore(str(tmp_path))
    store.append("ES", make_bars(T0, 10))
    store.append("BTC/USDT:USDT", make_bars(T0, 4))
    assert (tmp_path / "symbol=BTC%2FUSDT%3AUSDT").is_dir()
    table = ds.dataset(str(tmp_path), partitioning="hive").to_table()
    counts = table.group_by("symbol").aggregate([("timestamp", "count")]).to_pydict()
    assert dict(zip(counts["symbol"], counts["timestamp_count"], strict=True)) == {
        "ES": 10,
        "BTC/USDT:USDT": 4,
    }
    assert set(store.dataset().to_table().column("date").to_pylist()) == {"2024-01-02"}
    assert store.symbols() == ["BTC/USDT:USDT", "ES"]
    assert len(store.read("BTC/USDT:USDT")) == 4


def test_batch_across_midnight_writes_two_date_partitions(tmp_path):
    store = BarStore(str(tmp_path))
    bars = make_bars(T0 - 30 * NS_PER_MINUTE, 60)  # 23:30 on Jan 1 to 00:29 on Jan 2
    assert store.append("ES", bars) == 60
    by_dir = {f.parent.name: f for f in data_files(tmp_path)}
    assert sorted(by_dir) == ["date=2024-01-01", "date=2024-01-02"]
    assert pq.read_metadata(by_dir["date=2024-01-01"]).num_rows == 30
    assert pq.read_metadata(by_dir["date=2024-01-02"]).num_rows == 30
    assert store.dates("ES") == ["2024-01-01", "2024-01-02"]
    assert_same(store.read("ES"), bars)


# ------------------------------------------------------------------ reading


def test_read_range_is_start_inclusive_end_exclusive_and_lists_only_partitions_in_range(
    tmp_path, monkeypatch
):
    store = BarStore(str(tmp_path))
    bars = make_bars(T0, 5 * 1440, seed=3)  # five full days
    store.append("ES", bars)
    listed: list[str] = []
    real = BarStore._list_parts

    def spy(self, pdir):
        listed.append(pdir.rsplit("/", 1)[-1])
        return real(self, pdir)

    monkeypatch.setattr(BarStore, "_list_parts", spy)
    start = T0 + DAY + 90 * NS_PER_MINUTE
    end = T0 + 2 * DAY + 10 * NS_PER_MINUTE
    out = store.read("ES", start, end)
    ts = bars["timestamp"]
    assert_same(out, bars[(ts >= start) & (ts < end)])
    assert out["timestamp"].iloc[0] == start
    assert out["timestamp"].iloc[-1] == end - NS_PER_MINUTE
    assert listed == ["date=2024-01-03", "date=2024-01-04"]

    listed.clear()
    assert_same(store.read("ES", start_ns=T0 + 4 * DAY), bars[ts >= T0 + 4 * DAY])
    assert listed == ["date=2024-01-06"]
    listed.clear()
    assert_same(store.read("ES", end_ns=T0 + DAY), bars[ts < T0 + DAY])  # midnight is exclusive
    assert listed == ["date=2024-01-02"]
    assert store.read("ES", start, start).empty
    # A bounded range past the last stored date (partitions that do not exist) is fine.
    listed.clear()
    tail_range = store.read("ES", T0 + 4 * DAY + 1380 * NS_PER_MINUTE, T0 + 9 * DAY)
    assert_same(tail_range, bars[-60:])
    assert listed[0] == "date=2024-01-06"


def test_bars_before_1970_round_trip(tmp_path):
    store = BarStore(str(tmp_path))
    bars = make_bars(-30 * NS_PER_MINUTE, 60)
    store.append("ES", bars)
    assert store.dates("ES") == ["1969-12-31", "1970-01-01"]
    assert_same(store.read("ES"), bars)
    assert_same(store.read("ES", -NS_PER_MINUTE, NS_PER_MINUTE), bars[29:31])
    assert store.last_timestamp("ES") == 29 * NS_PER_MINUTE


def test_read_of_unknown_symbol_is_an_empty_typed_frame(tmp_path):
    out = BarStore(str(tmp_path)).read("NOPE")
    assert out.empty
    assert list(out.columns) == list(BAR_COLUMNS)
    assert out.dtypes.astype(str).tolist() == ["int64"] + ["float64"] * 5 + ["int64", "float64"]


def test_tail_across_several_dates_reads_newest_partitions_first_and_stops(tmp_path, monkeypatch):
    store = BarStore(str(tmp_path))
    parts = [make_bars(T0 + d * DAY + 600 * NS_PER_MINUTE, 100, seed=d) for d in range(6)]
    for p in parts:
        store.append("ES", p)
    listed: list[str] = []
    real = BarStore._list_parts

    def spy(self, pdir):
        listed.append(pdir.rsplit("/", 1)[-1])
        return real(self, pdir)

    monkeypatch.setattr(BarStore, "_list_parts", spy)
    out = store.tail("ES", 250)
    assert_same(out, pd.concat(parts)[-250:])
    assert listed == ["date=2024-01-07", "date=2024-01-06", "date=2024-01-05"]
    assert len(store.tail("ES", 10_000)) == 600
    assert store.tail("ES", 0).empty
    assert store.tail("NOPE", 5).empty


def test_symbols_and_last_timestamp(tmp_path):
    store = BarStore(str(tmp_path))
    assert store.symbols() == []
    assert store.last_timestamp("ES") is None
    store.append("ES", make_bars(T0, 10))
    store.append("ES", make_bars(T0 + 3 * DAY, 7))
    store.append("NQ", make_bars(T0, 2))
    assert store.symbols() == ["ES", "NQ"]
    assert store.last_timestamp("ES") == T0 + 3 * DAY + 6 * NS_PER_MINUTE
    assert store.last_timestamp("NQ") == T0 + NS_PER_MINUTE


# ------------------------------------------------------------------ duplicates


def test_duplicate_reappend_after_restart_is_deduplicated_keeping_last_written(tmp_path):
    store = BarStore(str(tmp_path))
    first = make_bars(T0, 10, seed=1)
    store.append("ES", first)
    # A restarted writer re-sends bars 5..9 (with corrected values) and goes on to 14.
    second = make_bars(T0 + 5 * NS_PER_MINUTE, 10, seed=2)
    store.append("ES", second)
    out = store.read("ES")
    assert_same(out, pd.concat([first[:5], second]))
    assert out["timestamp"].is_unique

    # A fresh BarStore on the same root (a new process) re-sends the whole first batch:
    # it is now the last written copy of bars 0..9.
    again = BarStore(str(tmp_path))
    again.append("ES", first)
    assert_same(again.read("ES"), pd.concat([first, second[5:]]))
    assert_same(again.tail("ES", 3), second[-3:])


def test_last_written_copy_wins_even_when_it_covers_an_older_range(tmp_path):
    store = BarStore(str(tmp_path))
    store.append("ES", make_bars(T0, 100, seed=1))
    fix = make_bars(T0 + 10 * NS_PER_MINUTE, 5, seed=9)
    store.append("ES", fix)
    out = store.read("ES").set_index("timestamp")
    assert_same(out.loc[fix["timestamp"]].reset_index(), fix)


def test_compact_merges_a_partition_into_one_file_with_the_same_bars(tmp_path):
    store = BarStore(str(tmp_path))
    for k in range(5):
        store.append("ES", make_bars(T0 + k * 7 * NS_PER_MINUTE, 10, seed=k))  # overlapping
    before = store.read("ES")
    assert len(data_files(tmp_path)) == 5
    assert store.compact("ES", "2024-01-02") == len(before)
    files = data_files(tmp_path)
    assert len(files) == 1 and files[0].name.startswith("part-000004-")
    assert_same(store.read("ES"), before)
    later = make_bars(T0, 2, seed=42)
    store.append("ES", later)  # written after compaction: wins
    assert_same(store.read("ES")[:2], later)
    assert store.compact("ES", pd.Timestamp("2024-01-05").date()) == 0


# ------------------------------------------------------------------ atomicity


def test_crash_inside_the_parquet_writer_leaves_no_visible_partial_file(tmp_path, monkeypatch):
    store = BarStore(str(tmp_path))
    earlier = make_bars(T0, 50)
    store.append("ES", earlier)
    files_before = data_files(tmp_path)
    real = pq.write_table

    def broken(table, where, **kwargs):
        real(table, where, **kwargs)  # the whole file is in the sink ...
        where.truncate(where.tell() // 2)  # ... then half of it is lost
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        store.append("ES", make_bars(T0 + 50 * NS_PER_MINUTE, 50, seed=1))
    monkeypatch.undo()
    assert data_files(tmp_path) == files_before
    assert list((tmp_path / ".tmp").iterdir()) == []  # the temp file was removed
    assert_same(store.read("ES"), earlier)
    assert ds.dataset(str(tmp_path), partitioning="hive").count_rows() == 50


def test_crash_before_rename_leaves_no_visible_file(tmp_path, monkeypatch):
    store = BarStore(str(tmp_path))
    earlier = make_bars(T0, 50)
    store.append("ES", earlier)
    files_before = data_files(tmp_path)

    def broken(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(store_mod.os, "replace", broken)
    with pytest.raises(OSError, match="power cut"):
        store.append("ES", make_bars(T0 + 50 * NS_PER_MINUTE, 50, seed=1))
    monkeypatch.undo()
    assert data_files(tmp_path) == files_before
    assert_same(store.read("ES"), earlier)


def test_hard_crash_mid_append_leaves_only_an_ignored_temp_file(tmp_path):
    """A real process death (no cleanup code runs) between writing and renaming."""
    root = tmp_path / "bars"
    store = BarStore(str(root))
    earlier = make_bars(T0, 50)
    store.append("ES", earlier)
    later = tmp_path / "later.parquet"
    make_bars(T0 + 50 * NS_PER_MINUTE, 50, seed=1).to_parquet(later)
    script = textwrap.dedent(
        f"""
        import os, sys
        import pandas as pd
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from scalper.store import BarStore
        store = BarStore({str(root)!r})
        os.replace = lambda src, dst: os._exit(17)
        store.append("ES", pd.read_parquet({str(later)!r}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    leftovers = list((root / ".tmp").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-")
    assert leftovers[0].stat().st_size > 0
    # Readers ignore it.
    assert_same(store.read("ES"), earlier)
    assert_same(BarStore(str(root)).tail("ES", 100), earlier)
    assert ds.dataset(str(root), partitioning="hive", format="parquet").count_rows() == 50
    # Opening a store removes temp files older than temp_max_age_s (default: one hour).
    BarStore(str(root))
    assert len(list((root / ".tmp").iterdir())) == 1
    BarStore(str(root), temp_max_age_s=0)
    assert list((root / ".tmp").iterdir()) == []
    assert_same(store.read("ES"), earlier)


def test_leftover_temp_files_are_ignored_by_read_and_by_pyarrow_dataset(tmp_path):
    store = BarStore(str(tmp_path))
    earlier = make_bars(T0, 20)
    store.append("ES", earlier)
    pdir = tmp_path / "symbol=ES" / "date=2024-01-02"
    # Half-written files in every place a writer might have left one.
    junk = b"PAR1 half a file"
    (tmp_path / ".tmp" / ".tmp-deadbeef.parquet").write_bytes(junk)
    (pdir / ".tmp-part-000009-1-2-abcdef01.parquet").write_bytes(junk)
    (pdir / "_tmp-part-000009-1-2-abcdef01.parquet").write_bytes(junk)
    assert_same(store.read("ES"), earlier)
    assert_same(store.tail("ES", 5), earlier[-5:])
    assert store.last_timestamp("ES") == int(earlier["timestamp"].iloc[-1])
    dataset = ds.dataset(str(tmp_path), partitioning="hive", format="parquet")
    assert [Path(f).name for f in dataset.files] == [f.name for f in data_files(tmp_path)]
    assert dataset.count_rows() == 20
    store.append("ES", make_bars(T0 + 20 * NS_PER_MINUTE, 1))  # the write sequence ignores them too
    assert len(store.read("ES")) == 21


# ------------------------------------------------------------------ roots and URIs


def test_file_uri_root_works(tmp_path):
    root = tmp_path / "nested" / "bars"
    store = BarStore(root.as_uri())
    assert store.local and store.root == str(root)
    bars = make_bars(T0, 10)
    store.append("ES", bars)
    assert (root / "symbol=ES" / "date=2024-01-02").is_dir()
    assert_same(BarStore(str(root)).read("ES"), bars)


def test_relative_path_root_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = BarStore("data/bars")
    assert store.root == str(tmp_path / "data" / "bars")
    assert (tmp_path / "data" / "bars").is_dir()


def test_object_store_path_writes_straight_to_the_final_key(monkeypatch):
    """`mock://` is pyarrow's in-memory filesystem: the non-local code path, no network."""
    store = BarStore("mock:///bucket/prefix")
    assert not store.local
    assert isinstance(store.filesystem, pafs._MockFileSystem)
    assert store.root == "bucket/prefix"
    bars = make_bars(T0 - 10 * NS_PER_MINUTE, 30)
    store.append("ES", bars)
    store.append("ES", make_bars(T0, 5, seed=7))
    infos = store.filesystem.get_file_info(pafs.FileSelector("bucket/prefix", recursive=True))
    names = sorted(i.path for i in infos if i.type == pafs.FileType.File)
    assert len(names) == 3
    assert all(n.startswith("bucket/prefix/symbol=ES/date=") for n in names)
    assert not any("/." in n for n in names)  # no temp objects on object stores
    assert_same(store.read("ES"), pd.concat([bars[:10], make_bars(T0, 5, seed=7), bars[15:]]))
    assert store.symbols() == ["ES"]
    assert store.compact("ES", "2024-01-02") == 20
    assert_same(store.tail("ES", 20), store.read("ES", start_ns=T0))


def test_s3_uri_resolves_to_s3_filesystem_and_bucket_path_without_io(monkeypatch, tmp_path):
    pytest.importorskip("pyarrow._s3fs")
    # Keep the AWS SDK off the network (EC2 metadata) and away from real credential files.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    fs, root = resolve_uri("s3://my-bucket/bars/v1/?region=eu-west-1")
    assert type(fs).__name__ == "S3FileSystem"
    assert fs.region == "eu-west-1"
    assert root == "my-bucket/bars/v1"
    store = BarStore("s3://my-bucket/bars/v1?region=eu-west-1")  # opening does no I/O remotely
    assert not store.local
    assert (
        store.partition_dir("BTC/USDT", "2024-01-02") == "my-bucket/bars/v1/symbol=BTC%2FUSDT/date=2024-01-02"
    )


# ------------------------------------------------------------------ invalid input


def _bad(**changes):
    bars = make_bars(T0, 5)
    for col, (row, value) in changes.items():
        bars.loc[row, col] = value
    return bars


@pytest.mark.parametrize(
    ("bars", "message"),
    [
        (make_bars(T0, 5).drop(columns=["vwap", "trades"]), r"missing column\(s\) \['trades', 'vwap'\]"),
        (_bad(open=(2, np.nan)), r"open has 1 NaN/inf value\(s\), first at row 2"),
        (_bad(high=(0, np.inf)), r"high has 1 NaN/inf"),
        (_bad(low=(4, np.nan)), r"low has 1"),
        (_bad(close=(1, np.nan)), r"close has 1"),
        (_bad(timestamp=(3, T0 + 3 * NS_PER_MINUTE + 1)), r"not aligned to a minute"),
        (make_bars(T0, 5).iloc[[0, 2, 1, 3]], r"not sorted ascending"),
        (make_bars(T0, 5).iloc[[0, 1, 1, 2]], r"duplicate timestamp"),
        (
            make_bars(T0, 3).assign(timestamp=lambda d: d["timestamp"].astype(float)),
            r"timestamp must be integers",
        ),
        (make_bars(T0, 3).assign(timestamp=lambda d: pd.to_datetime(d["timestamp"])), r"timezone-naive"),
        (make_bars(T0, 3).assign(trades=[1.0, np.nan, 2.0]), r"trades has missing values"),
        (make_bars(T0, 3).assign(trades=[1.0, 1.5, 2.0]), r"trades must be whole numbers"),
        (make_bars(T0, 3).assign(symbol=["ES", "NQ", "ES"]), r"symbol column has \['NQ'\]"),
        (make_bars(T0, 3).assign(volume=["a", "b", "c"]), r"volume must be numbers"),
        ([Bar("NQ", T0, 1.0, 1.0, 1.0, 1.0, 0.0, 0, 1.0)], r"bars\[0\]: symbol 'NQ', expected 'ES'"),
        ([(T0, 1.0)], r"bars\[0\]: expected a Bar"),
        ({"timestamp": [T0]}, r"expected a DataFrame, a list of Bar or a BarBatch"),
    ],
    ids=[
        "missing-columns",
        "nan-open",
        "inf-high",
        "nan-low",
        "nan-close",
        "unaligned",
        "unsorted",
        "duplicate",
        "float-timestamp",
        "naive-datetime",
        "nan-trades",
        "fractional-trades",
        "other-symbol-column",
        "text-volume",
        "other-symbol-bar",
        "not-a-bar",
        "not-a-table",
    ],
)
def test_invalid_input_raises_value_error_and_writes_nothing(tmp_path, bars, message):
    store = BarStore(str(tmp_path))
    with pytest.raises(ValueError, match=message):
        store.append("ES", bars)
    assert data_files(tmp_path) == []
    assert store.read("ES").empty


def test_empty_input_writes_nothing(tmp_path):
    store = BarStore(str(tmp_path))
    assert store.append("ES", make_bars(T0, 0)) == 0
    assert store.append("ES", pd.DataFrame()) == 0
    assert store.append("ES", []) == 0
    assert data_files(tmp_path) == []
    assert store.symbols() == []


def test_bad_symbol_and_date_arguments(tmp_path):
    store = BarStore(str(tmp_path))
    with pytest.raises(ValueError, match="symbol"):
        store.append("", make_bars(T0, 2))
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        store.compact("ES", "Jan 2")
    os.makedirs(tmp_path / "symbol=ES" / "date=2024-01-02")
    assert store.read("ES").empty  # an empty partition directory (crash after mkdir) is fine
    assert store.last_timestamp("ES") is None


# ------------------------------------------------------------------ S3 (a local moto server)
#
# The same store on `s3://bucket/prefix`, against moto's S3 server on 127.0.0.1 (dev extra
# `moto[server]`). The endpoint is given in the URI, the way a user points BarStore at MinIO or
# any S3-compatible store:
#     s3://<bucket>/<prefix>?endpoint_override=<host>:<port>&scheme=http&region=us-east-1
# Nothing here may leave 127.0.0.1: fake credentials come from the environment (so the AWS SDK
# never asks the EC2 metadata service), the region is given (so it is not looked up), the
# config files and proxies of the machine are hidden. No skip: if moto is missing or its
# server does not start, these tests fail.

S3_BUCKET = "scalper-bars"
_AWS_ENV_HIDDEN = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


class S3Root(NamedTuple):
    """One test's store root on the local S3 server, plus a boto3 view of the same bucket."""

    endpoint: str  # "127.0.0.1:<port>"
    prefix: str  # key prefix inside the bucket, no trailing slash
    client: Any  # boto3 S3 client: looks at the bucket without going through pyarrow

    @property
    def uri(self) -> str:
        return (
            f"s3://{S3_BUCKET}/{self.prefix}?endpoint_override={self.endpoint}&scheme=http&region=us-east-1"
        )

    def all_keys(self) -> list[str]:
        """Every key under the prefix (relative to it), directory markers included ('' is the root's)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=S3_BUCKET, Prefix=f"{self.prefix}/"
        )
        return sorted(o["Key"][len(self.prefix) + 1 :] for page in pages for o in page.get("Contents", []))

    def data_keys(self) -> list[str]:
        """Keys of objects with content (pyarrow's create_dir leaves empty `dir/` markers)."""
        return [k for k in self.all_keys() if k and not k.endswith("/")]

    def exists(self, key: str) -> bool:
        found = self.client.list_objects_v2(Bucket=S3_BUCKET, Prefix=key).get("Contents", [])
        return any(o["Key"] == key for o in found)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 (any free port) with one bucket; stopped after the module."""
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for name in _AWS_ENV_HIDDEN:
            mp.delenv(name, raising=False)
        nowhere = str(tmp_path_factory.mktemp("aws") / "absent")
        mp.setenv("AWS_CONFIG_FILE", nowhere)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("NO_PROXY", "127.0.0.1")
        mp.setenv("no_proxy", "127.0.0.1")

        # One INFO line per request would bury a failure's own output.
        werkzeug_log = logging.getLogger("werkzeug")
        mp.setattr(werkzeug_log, "level", werkzeug_log.level)  # restored at the end
        werkzeug_log.setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        # start() waits forever if the server thread dies (say, bind fails): bound it.
        starter = threading.Thread(target=server.start, daemon=True)
        starter.start()
        starter.join(timeout=15)
        if starter.is_alive():
            pytest.fail("moto S3 server on 127.0.0.1 did not start within 15 s")
        try:
            host, port = server.get_host_and_port()
            assert host == "127.0.0.1" and port > 0
            client = boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            client.create_bucket(Bucket=S3_BUCKET)
            yield f"127.0.0.1:{port}", client
        finally:
            server.stop()


@pytest.fixture
def s3(s3_server) -> S3Root:
    """A fresh prefix (two levels deep) in the shared bucket for each test."""
    endpoint, client = s3_server
    return S3Root(endpoint, f"t-{uuid.uuid4().hex[:12]}/bars", client)


def test_s3_uri_with_endpoint_query_targets_the_local_server(s3):
    store = BarStore(s3.uri)
    assert not store.local
    assert store.root == f"{S3_BUCKET}/{s3.prefix}"  # the query is not part of the root
    expected = pafs.S3FileSystem(endpoint_override=s3.endpoint, scheme="http", region="us-east-1")
    assert store.filesystem.equals(expected)
    assert s3.all_keys() == []  # opening an object store does no I/O
    store.append("ES", make_bars(T0, 3))
    assert len(s3.data_keys()) == 1  # the write landed on the local server


def test_s3_round_trip_equals_input_exactly_including_dtypes(s3):
    store = BarStore(s3.uri)
    bars = make_bars(T0 + 5 * NS_PER_MINUTE, 300)
    assert store.append("ES", bars) == 300
    out = store.read("ES")
    assert list(out.columns) == list(BAR_COLUMNS)
    assert out.dtypes.astype(str).tolist() == ["int64"] + ["float64"] * 5 + ["int64", "float64"]
    assert isinstance(out.index, pd.RangeIndex)
    assert_same(out, bars)
    assert_same(BarStore(s3.uri).read("ES"), bars)  # a new store (process) on the same URI
    assert store.dataset().count_rows() == 300  # pyarrow.dataset reads the layout on S3 too


def test_s3_batch_spanning_midnight_writes_one_object_per_date_partition(s3):
    store = BarStore(s3.uri)
    bars = make_bars(T0 - 10 * NS_PER_MINUTE, 30)  # 23:50 .. 00:19 UTC
    store.append("ES", bars)
    keys = s3.data_keys()
    assert [k.rsplit("/", 1)[0] for k in keys] == ["symbol=ES/date=2024-01-01", "symbol=ES/date=2024-01-02"]
    names = [k.rsplit("/", 1)[1] for k in keys]
    assert all(PART_NAME.match(n) for n in names)
    assert names[0].startswith(f"part-000000-{T0 - 10 * NS_PER_MINUTE}-{T0 - NS_PER_MINUTE}-")
    assert names[1].startswith(f"part-000000-{T0}-{T0 + 19 * NS_PER_MINUTE}-")
    assert not any("/." in f"/{k}" or "/_" in f"/{k}" for k in s3.all_keys())  # no temp objects
    assert store.dates("ES") == ["2024-01-01", "2024-01-02"]
    assert_same(store.read("ES"), bars)
    assert_same(store.read("ES", T0 - 2 * NS_PER_MINUTE, T0 + 2 * NS_PER_MINUTE), bars[8:12])


def test_s3_tail_reads_the_newest_partitions_first(s3, monkeypatch):
    store = BarStore(s3.uri)
    parts = [make_bars(T0 + d * DAY, 100, seed=d) for d in range(4)]
    for p in parts:
        store.append("ES", p)
    listed: list[str] = []
    real = BarStore._list_parts

    def spy(self, pdir):
        listed.append(pdir.rsplit("/", 1)[-1])
        return real(self, pdir)

    monkeypatch.setattr(BarStore, "_list_parts", spy)
    assert_same(store.tail("ES", 150), pd.concat(parts)[-150:])
    assert listed == ["date=2024-01-05", "date=2024-01-04"]
    monkeypatch.undo()
    assert_same(store.tail("ES", 10_000), pd.concat(parts))
    assert store.tail("ES", 0).empty
    assert store.tail("NOPE", 5).empty


def test_s3_reappend_after_restart_is_deduplicated_keeping_last_written(s3):
    store = BarStore(s3.uri)
    first = make_bars(T0, 10, seed=1)
    store.append("ES", first)
    second = make_bars(T0 + 5 * NS_PER_MINUTE, 10, seed=2)  # re-sends 5..9 with new values
    store.append("ES", second)
    assert_same(store.read("ES"), pd.concat([first[:5], second]))
    again = BarStore(s3.uri)  # a restarted process re-sends the whole first batch
    again.append("ES", first)
    expected = pd.concat([first, second[5:]])
    assert_same(again.read("ES"), expected)
    assert_same(again.tail("ES", 3), second[-3:])
    assert [k.rsplit("/", 1)[1][:11] for k in s3.data_keys()] == ["part-000000", "part-000001", "part-000002"]
    assert again.compact("ES", "2024-01-02") == len(expected)
    assert [k.rsplit("/", 1)[1][:11] for k in s3.data_keys()] == ["part-000002"]
    assert_same(again.read("ES"), expected)


def test_s3_symbols_and_last_timestamp(s3):
    store = BarStore(s3.uri)
    assert store.symbols() == []
    assert store.last_timestamp("ES") is None
    store.append("ES", make_bars(T0, 10))
    store.append("ES", make_bars(T0 + 3 * DAY, 7))
    store.append("BTC/USDT", make_bars(T0, 2))
    assert store.symbols() == ["BTC/USDT", "ES"]
    assert store.last_timestamp("ES") == T0 + 3 * DAY + 6 * NS_PER_MINUTE
    assert store.last_timestamp("BTC/USDT") == T0 + NS_PER_MINUTE
    assert store.last_timestamp("NOPE") is None
    assert any(k.startswith("symbol=BTC%2FUSDT/date=2024-01-02/part-") for k in s3.data_keys())
    assert_same(BarStore(s3.uri).read("BTC/USDT"), make_bars(T0, 2))


def test_s3_writer_failing_mid_write_uploads_nothing(s3, monkeypatch):
    """On S3 the Parquet bytes are built in memory first: a writer that dies half-way through
    leaves no object (final or temporary) and no pending multipart upload."""
    store = BarStore(s3.uri)
    earlier = make_bars(T0, 50)
    store.append("ES", earlier)
    keys_before = s3.all_keys()
    real = pq.write_table

    def broken(table, where, **kwargs):
        whole = pa.BufferOutputStream()
        real(table, whole, **kwargs)
        data = whole.getvalue()
        where.write(data[: data.size // 2])  # half the file is in the sink ...
        raise OSError("writer crashed")  # ... when the writer dies

    monkeypatch.setattr(store_mod.pq, "write_table", broken)
    with pytest.raises(OSError, match="writer crashed"):
        store.append("ES", make_bars(T0 + 50 * NS_PER_MINUTE, 50, seed=1))  # same date
    with pytest.raises(OSError, match="writer crashed"):
        store.append("ES", make_bars(T0 + DAY, 5, seed=2))  # a new date
    monkeypatch.undo()
    assert s3.all_keys() == keys_before  # not even a directory marker for the new date
    assert "Uploads" not in s3.client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=f"{s3.prefix}/")
    assert_same(store.read("ES"), earlier)
    assert store.dates("ES") == ["2024-01-02"]


def test_s3_object_appears_only_when_its_single_upload_completes(s3, monkeypatch):
    """Each file is one stream to its final key, written with the complete Parquet bytes in
    a single write; the key is not listed until the stream is closed."""
    store = BarStore(s3.uri)
    seen: list[tuple[str, int, bool, bool]] = []  # key, bytes, visible before write, after write

    class SpyStream:
        def __init__(self, stream, key):
            self.stream, self.key = stream, key

        def __enter__(self):
            self.stream.__enter__()
            return self

        def __exit__(self, *exc):
            return self.stream.__exit__(*exc)

        def write(self, data):
            before = s3.exists(self.key)
            n = self.stream.write(data)
            seen.append((self.key, len(data), before, s3.exists(self.key)))
            return n

    class SpyFileSystem:
        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def open_output_stream(self, path, *args, **kwargs):
            return SpyStream(self.fs.open_output_stream(path, *args, **kwargs), path.split("/", 1)[1])

    monkeypatch.setattr(store, "filesystem", SpyFileSystem(store.filesystem))
    bars = make_bars(T0 - 5 * NS_PER_MINUTE, 10)
    store.append("ES", bars)
    monkeypatch.undo()
    assert [(size > 0, before, during) for _, size, before, during in seen] == [(True, False, False)] * 2
    assert sorted(f"{s3.prefix}/{k}" for k in s3.data_keys()) == sorted(key for key, *_ in seen)
    for key, size, *_ in seen:  # the object is exactly the bytes of that one write
        assert s3.client.head_object(Bucket=S3_BUCKET, Key=key)["ContentLength"] == size
    assert_same(store.read("ES"), bars)
