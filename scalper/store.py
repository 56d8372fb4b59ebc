"""BarStore: closed 1-minute bars in Parquet, partitioned by symbol and UTC date.

Layout (hive-style, so `pyarrow.dataset` and Ray Data read it with `partitioning="hive"`)::

    <root>/symbol=<SYM>/date=<YYYY-MM-DD>/part-<seq>-<first_ts>-<last_ts>-<uuid8>.parquet
    <root>/.tmp/.tmp-<uuid>.parquet          (local disk only: files being written)

* `<SYM>` is percent-encoded (`BTC/USDT` -> `BTC%2FUSDT`); pyarrow and Ray Data decode it.
* `date` is the UTC date of the bar's OPEN time, so a timestamp always lands in one partition.
* `<seq>` (zero-padded) is the write order inside the partition: one more than the largest seq
  listed there at write time. When the same timestamp was written more than once (a re-append
  after a crash-restart), the copy with the highest seq wins. `<first_ts>`/`<last_ts>` are the
  file's first and last bar timestamps, so range reads skip files without opening them.
  Appends to one symbol are expected to come from one writer at a time (the design gives each
  symbol one CandleManager); two concurrent writers could pick the same seq.

File schema (the symbol is the partition key, not a column in the file):
timestamp int64 (ns since the Unix epoch, UTC, bar OPEN; int64 rather than timestamp[ns] so
values round-trip exactly and match `scalper.types`), open/high/low/close/volume float64,
trades int64, vwap float64. `read()`/`tail()` return exactly these columns in BAR_COLUMNS order.

Atomicity: a reader never sees a half-written file under its final name.
* Local disk: the file is written under `<root>/.tmp/.tmp-*.parquet`, flushed and fsynced, then
  `os.replace`d to its final name (atomic on POSIX) and the directory is fsynced. The temp dir
  and name start with `.`, which pyarrow.dataset (by basename) and Ray Data (by path relative
  to the root) both ignore, as does `read()`. A crash leaves only a temp file; temp files older
  than `temp_max_age_s` (by mtime) are removed when a store is opened.
* Object stores (s3://, gs://, ...): the Parquet bytes are built in memory, then written to the
  final key in one output stream; the object becomes visible only when the upload completes.
A batch spanning several dates writes one file per date; each file is atomic, the batch is not
(re-appending it after a crash is harmless: duplicates are dropped on read).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date as Date
from datetime import datetime
from typing import NamedTuple, TypeVar
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from scalper.types import BAR_COLUMNS, NS_PER_MINUTE, Bar, BarBatch

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")

NS_PER_DAY = 24 * 60 * NS_PER_MINUTE
SCHEMA_VERSION = "bars/1"

BAR_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64()),
        pa.field("trades", pa.int64(), nullable=False),
        pa.field("vwap", pa.float64()),
    ],
    metadata={"scalper.schema": SCHEMA_VERSION, "timestamp": "int64 ns since epoch UTC, bar open"},
)
assert tuple(BAR_SCHEMA.names) == BAR_COLUMNS

# The partition keys, as strings (what pyarrow infers from `hive` anyway, stated explicitly).
PARTITIONING = ds.partitioning(pa.schema([("symbol", pa.string()), ("date", pa.string())]), flavor="hive")

_DTYPES = {name: ("int64" if name in ("timestamp", "trades") else "float64") for name in BAR_COLUMNS}
_PART_RE = re.compile(r"^part-(\d+)-(-?\d+)-(-?\d+)-([0-9a-f]{8})\.parquet$")
_DATE_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH_ORDINAL = Date(1970, 1, 1).toordinal()
# A bounded read() spanning at most this many days probes those partitions directly
# instead of listing every date of the symbol.
_PROBE_MAX_DAYS = 31
_TMP_DIR = ".tmp"
_TMP_PREFIX = ".tmp-"
# Snappy (pyarrow's default): decodes ~2x faster than zstd for these small files, similar size.
_COMPRESSION = "snappy"
# Partitions read in parallel by default on object stores, where each request costs latency.
_REMOTE_IO_THREADS = 16


class _Part(NamedTuple):
    """One data file of a date partition; sorts in write order."""

    seq: int
    name: str
    first_ts: int
    last_ts: int
    path: str


def resolve_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """`uri` -> (pyarrow filesystem, root path inside it).

    A plain path (relative, absolute or `~`) is local disk; anything with a scheme
    (`file://`, `s3://bucket/prefix`, `gs://`, `mock://`) goes to `FileSystem.from_uri`.
    """
    if not uri:
        raise ValueError("store uri: expected a path or a filesystem URI, got ''")
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, (path.rstrip("/") or path)


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({name: np.empty(0, dtype=_DTYPES[name]) for name in BAR_COLUMNS})


def _day_str(day: int) -> str:
    """Days since 1970-01-01 -> 'YYYY-MM-DD'."""
    return Date.fromordinal(day + _EPOCH_ORDINAL).isoformat()


def _to_day(value: str | Date) -> int:
    """'YYYY-MM-DD' or a date -> days since 1970-01-01."""
    if isinstance(value, datetime):
        raise ValueError(f"date: expected a date or 'YYYY-MM-DD', got datetime {value!r}")
    if isinstance(value, Date):
        return value.toordinal() - _EPOCH_ORDINAL
    if isinstance(value, str) and _ISO_DATE_RE.match(value):
        try:
            return Date.fromisoformat(value).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            pass
    raise ValueError(f"date: expected 'YYYY-MM-DD', got {value!r}")


class BarStore:
    """Append-only Parquet store of closed 1-minute bars (see the module docstring)."""

    def __init__(
        self,
        uri: str,
        *,
        durable: bool = True,
        temp_max_age_s: float = 3600.0,
        io_threads: int | None = None,
    ):
        """Open (and on local disk create) the store at `uri`.

        `uri`: a path, `file:///abs/path`, or any pyarrow filesystem URI. For S3 or an
        S3-compatible server (MinIO, moto, Ceph) write
        `s3://bucket/prefix?endpoint_override=host:port&scheme=http&region=us-east-1`
        (add `&allow_bucket_creation=true` if the bucket does not exist yet); credentials come
        from the usual AWS environment variables or config files, never from config.json.

        `durable`: fsync files and directories on local disk (off only for throwaway data).
        `temp_max_age_s`: leftover temp files older than this are deleted now (local disk).
        `io_threads`: date partitions `read()` fetches at once (default 1 on local disk,
        16 on object stores). Opening an object store does no I/O.
        """
        self.uri = uri
        self.filesystem, self.root = resolve_uri(uri)
        self.local = isinstance(self.filesystem, pafs.LocalFileSystem)
        self.durable = durable
        self.io_threads = max(
            1, io_threads if io_threads is not None else (1 if self.local else _REMOTE_IO_THREADS)
        )
        if self.local:
            os.makedirs(self.root, exist_ok=True)
            self.clean_temp_files(temp_max_age_s)

    def __repr__(self) -> str:
        return f"BarStore({self.uri!r})"

    # ------------------------------------------------------------------ paths

    def symbol_dir(self, symbol: str) -> str:
        _check_symbol(symbol)
        return f"{self.root}/symbol={quote(symbol, safe='')}"

    def partition_dir(self, symbol: str, date: str | Date) -> str:
        return f"{self.symbol_dir(symbol)}/date={_day_str(_to_day(date))}"

    def dataset(self) -> ds.Dataset:
        """The whole store as a pyarrow Dataset (adds `symbol` and `date` string columns).

        Raw files: a timestamp written twice appears twice here; use `read()` for clean bars.
        """
        return ds.dataset(self.root, filesystem=self.filesystem, format="parquet", partitioning=PARTITIONING)

    # ------------------------------------------------------------------ write

    def append(self, symbol: str, bars: pd.DataFrame | Sequence[Bar] | BarBatch) -> int:
        """Write closed bars of ONE symbol; returns the number of rows written.

        `bars`: a DataFrame with the BAR_COLUMNS (extra columns ignored; a `symbol` column, if
        any, must equal `symbol`; `timestamp` int64 ns or tz-aware datetimes), a list of `Bar`,
        or a `BarBatch`. Timestamps must be minute-aligned, strictly increasing and OHLC finite,
        else ValueError and nothing is written. One file per UTC date touched.
        """
        _check_symbol(symbol)
        table = _to_table(symbol, bars)
        n = table.num_rows
        if n == 0:
            return 0
        ts = table.column("timestamp").to_numpy()
        days = ts // NS_PER_DAY
        cuts = np.flatnonzero(np.diff(days)) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), n]
        for lo, hi in zip(starts, ends, strict=True):
            day = int(days[lo])
            self._write_part(symbol, day, table.slice(lo, hi - lo), int(ts[lo]), int(ts[hi - 1]))
        return n

    def _write_part(self, symbol: str, day: int, table: pa.Table, first_ts: int, last_ts: int) -> str:
        pdir = self.partition_dir(symbol, _day_str(day))
        parts = self._list_parts(pdir)
        seq = parts[-1].seq + 1 if parts else 0
        name = f"part-{seq:06d}-{first_ts}-{last_ts}-{uuid.uuid4().hex[:8]}.parquet"
        final = f"{pdir}/{name}"
        if self.local:
            self._write_local(table, pdir, final)
        else:
            self._write_remote(table, pdir, final)
        log.debug("bars: wrote %d rows of %s to %s", table.num_rows, symbol, final)
        return final

    def _write_local(self, table: pa.Table, pdir: str, final: str) -> None:
        tmp_dir = f"{self.root}/{_TMP_DIR}"
        self._ensure_local_dir(tmp_dir)
        self._ensure_local_dir(pdir)
        tmp = f"{tmp_dir}/{_TMP_PREFIX}{uuid.uuid4().hex}.parquet"
        try:
            with open(tmp, "wb") as f:
                pq.write_table(table, f, compression=_COMPRESSION)
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        if self.durable:
            _fsync_dir(pdir)

    def _write_remote(self, table: pa.Table, pdir: str, final: str) -> None:
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression=_COMPRESSION)
        data = buf.getvalue()
        self.filesystem.create_dir(pdir, recursive=True)
        with self.filesystem.open_output_stream(final) as out:
            out.write(data)

    def _ensure_local_dir(self, path: str) -> None:
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent != path:
            self._ensure_local_dir(parent)
        try:
            os.mkdir(path)
        except FileExistsError:
            return
        if self.durable:
            _fsync_dir(parent)

    def compact(self, symbol: str, date: str | Date) -> int:
        """Merge a date partition's files into one (duplicates dropped); returns its rows.

        The merged file takes the largest seq of the files it replaces and is written
        atomically before they are deleted, so a crash at any point leaves the same bars
        visible. Do not run it while another process appends to the same partition.
        """
        pdir = self.partition_dir(symbol, date)
        parts = self._list_parts(pdir)
        if len(parts) <= 1:
            return self._read_parts(parts).num_rows
        table = self._read_parts(parts)
        ts = table.column("timestamp").to_numpy()
        seq = parts[-1].seq
        name = f"part-{seq:06d}-{int(ts[0])}-{int(ts[-1])}-{uuid.uuid4().hex[:8]}.parquet"
        final = f"{pdir}/{name}"
        if self.local:
            self._write_local(table, pdir, final)
        else:
            self._write_remote(table, pdir, final)
        for part in parts:
            self.filesystem.delete_file(part.path)
        if self.local and self.durable:
            _fsync_dir(pdir)
        log.info("bars: compacted %d files of %s %s into %s", len(parts), symbol, date, name)
        return table.num_rows

    def clean_temp_files(self, max_age_s: float = 3600.0) -> int:
        """Delete leftover temp files (local disk) older than `max_age_s`; returns how many.

        Age is by file mtime against the wall clock: housekeeping, not event time.
        """
        if not self.local:
            return 0
        tmp_dir = f"{self.root}/{_TMP_DIR}"
        removed = 0
        now = time.time()
        try:
            entries = list(os.scandir(tmp_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.name.startswith(_TMP_PREFIX) or not entry.is_file():
                continue
            try:
                if now - entry.stat().st_mtime >= max_age_s:
                    os.remove(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.warning("bars: removed %d leftover temp file(s) from %s", removed, tmp_dir)
        return removed

    # ------------------------------------------------------------------ read

    def symbols(self) -> list[str]:
        """Symbols with a partition directory, sorted."""
        out = []
        for info in self._list_dir(self.root):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("symbol="):
                out.append(unquote(info.base_name[len("symbol=") :]))
        return sorted(out)

    def dates(self, symbol: str) -> list[str]:
        """The symbol's date partitions ('YYYY-MM-DD'), oldest first."""
        return [_day_str(day) for day, _ in self._date_dirs(symbol)]

    def read(self, symbol: str, start_ns: int | None = None, end_ns: int | None = None) -> pd.DataFrame:
        """Bars with start_ns <= timestamp < end_ns (None = unbounded), sorted, duplicates dropped.

        Only the date partitions overlapping the range are listed and read; a timestamp
        written more than once comes back once, with its last written values.
        """
        lo = None if start_ns is None else int(start_ns)
        hi = None if end_ns is None else int(end_ns)
        if lo is not None and hi is not None and lo >= hi:
            return _empty_frame()
        first_day = None if lo is None else lo // NS_PER_DAY
        last_day = None if hi is None else (hi - 1) // NS_PER_DAY
        if first_day is not None and last_day is not None and last_day - first_day < _PROBE_MAX_DAYS:
            sdir = self.symbol_dir(symbol)
            pdirs = [f"{sdir}/date={_day_str(day)}" for day in range(first_day, last_day + 1)]
        else:
            pdirs = [
                pdir
                for day, pdir in self._date_dirs(symbol)
                if (first_day is None or day >= first_day) and (last_day is None or day <= last_day)
            ]
        tables = self._map(lambda pdir: self._read_partition(pdir, lo, hi), pdirs)
        return _to_frame([t for t in tables if t.num_rows])

    def tail(self, symbol: str, n: int) -> pd.DataFrame:
        """The last `n` bars (warm start), reading the newest date partitions first."""
        if n <= 0:
            return _empty_frame()
        tables: list[pa.Table] = []
        have = 0
        for _, pdir in reversed(self._date_dirs(symbol)):
            table = self._read_partition(pdir)
            if table.num_rows:
                tables.append(table)
                have += table.num_rows
                if have >= n:
                    break
        tables.reverse()
        frame = _to_frame(tables)
        if len(frame) > n:
            frame = frame.iloc[len(frame) - n :].reset_index(drop=True)
        return frame

    def last_timestamp(self, symbol: str) -> int | None:
        """Open time of the newest stored bar (from file names, no data read), or None."""
        for _, pdir in reversed(self._date_dirs(symbol)):
            parts = self._list_parts(pdir)
            if parts:
                return max(p.last_ts for p in parts)
        return None

    # ------------------------------------------------------------------ internals

    def _list_dir(self, path: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
        return self.filesystem.get_file_info(selector)

    def _date_dirs(self, symbol: str) -> list[tuple[int, str]]:
        out = []
        for info in self._list_dir(self.symbol_dir(symbol)):
            m = _DATE_RE.match(info.base_name)
            if m and info.type == pafs.FileType.Directory:
                with contextlib.suppress(ValueError):  # date=2024-13-45: not ours
                    out.append((_to_day(m.group(1)), info.path))
        out.sort()
        return out

    def _list_parts(self, pdir: str) -> list[_Part]:
        """Data files of a partition in write order; temp and foreign files are skipped."""
        parts = []
        for info in self._list_dir(pdir):
            if info.type != pafs.FileType.File:
                continue
            name = info.base_name
            m = _PART_RE.match(name)
            if m:
                parts.append(_Part(int(m.group(1)), name, int(m.group(2)), int(m.group(3)), info.path))
            elif not name.startswith((".", "_")):
                log.warning("bars: ignoring unexpected file %s", info.path)
        parts.sort()
        return parts

    def _map(self, fn: Callable[[_T], _R], items: list[_T]) -> list[_R]:
        if self.io_threads <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(min(self.io_threads, len(items)), thread_name_prefix="barstore") as pool:
            return list(pool.map(fn, items))

    def _read_partition(self, pdir: str, lo: int | None = None, hi: int | None = None) -> pa.Table:
        parts = [
            p
            for p in self._list_parts(pdir)
            if (lo is None or p.last_ts >= lo) and (hi is None or p.first_ts < hi)
        ]
        return self._read_parts(parts, lo, hi)

    def _read_parts(self, parts: Iterable[_Part], lo: int | None = None, hi: int | None = None) -> pa.Table:
        """One partition's files -> one table: in range, sorted, last written copy per timestamp."""
        tables = []
        for part in parts:
            with self.filesystem.open_input_file(part.path) as f:
                table = pq.ParquetFile(f).read(columns=list(BAR_COLUMNS), use_threads=False)
            tables.append(table.cast(BAR_SCHEMA))
        if not tables:
            return BAR_SCHEMA.empty_table()
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        ts = table.column("timestamp").to_numpy()
        if lo is not None or hi is not None:
            mask = np.ones(len(ts), dtype=bool)
            if lo is not None:
                mask &= ts >= lo
            if hi is not None:
                mask &= ts < hi
            if not mask.all():
                table = table.filter(pa.array(mask))
                ts = ts[mask]
        if len(tables) > 1 and len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
            order = np.argsort(ts, kind="stable")
            sorted_ts = ts[order]
            keep = np.ones(len(ts), dtype=bool)
            keep[:-1] = sorted_ts[1:] != sorted_ts[:-1]  # the last of each run of equal timestamps
            table = table.take(pa.array(order[keep]))
        return table


# ---------------------------------------------------------------------- helpers


def _check_symbol(symbol: str) -> None:
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"symbol: expected a non-empty string, got {symbol!r}")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_frame(tables: list[pa.Table]) -> pd.DataFrame:
    if not tables:
        return _empty_frame()
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.to_pandas().astype(_DTYPES, copy=False)


def _to_table(symbol: str, bars: pd.DataFrame | Sequence[Bar] | BarBatch) -> pa.Table:
    """Validate one batch and build its Arrow table; ValueError says what is wrong."""
    if isinstance(bars, BarBatch):
        if bars.symbol != symbol:
            raise ValueError(f"bars: BarBatch is for symbol {bars.symbol!r}, not {symbol!r}")
        cols = {
            "timestamp": bars.ts,
            "open": bars.open,
            "high": bars.high,
            "low": bars.low,
            "close": bars.close,
            "volume": bars.volume,
            "trades": bars.trades,
            "vwap": bars.vwap,
        }
    elif isinstance(bars, pd.DataFrame):
        if len(bars) == 0:
            return BAR_SCHEMA.empty_table()
        missing = [c for c in BAR_COLUMNS if c not in bars.columns]
        if missing:
            raise ValueError(f"bars: missing column(s) {missing}; expected {list(BAR_COLUMNS)}")
        if "symbol" in bars.columns:
            other = set(bars["symbol"].unique().tolist()) - {symbol}
            if other:
                raise ValueError(
                    f"bars: symbol column has {sorted(map(str, other))}, expected only {symbol!r}"
                )
        cols = {c: bars[c] for c in BAR_COLUMNS}
        cols["timestamp"] = _timestamps_from_series(bars["timestamp"])
    elif isinstance(bars, (list, tuple)):
        if not bars:
            return BAR_SCHEMA.empty_table()
        for i, bar in enumerate(bars):
            if not isinstance(bar, Bar):
                raise ValueError(f"bars[{i}]: expected a Bar, got {type(bar).__name__}")
            if bar.symbol != symbol:
                raise ValueError(f"bars[{i}]: symbol {bar.symbol!r}, expected {symbol!r}")
        cols = {
            "timestamp": [b.ts for b in bars],
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
            "trades": [b.trades for b in bars],
            "vwap": [b.vwap for b in bars],
        }
    else:
        raise ValueError(
            f"bars: expected a DataFrame, a list of Bar or a BarBatch, got {type(bars).__name__}"
        )

    ts = _int_column("timestamp", cols["timestamp"])
    n = len(ts)
    if n == 0:
        return BAR_SCHEMA.empty_table()
    arrays = {"timestamp": ts}
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        arrays[name] = _float_column(name, cols[name], n)
    arrays["trades"] = _int_column("trades", cols["trades"])

    for name in ("open", "high", "low", "close"):
        bad = ~np.isfinite(arrays[name])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"bars: {name} has {int(bad.sum())} NaN/inf value(s), first at row {i} (timestamp {ts[i]})"
            )
    off = ts % NS_PER_MINUTE
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"bars: timestamp {ts[i]} at row {i} is not aligned to a minute (ns % 60e9 != 0)")
    if n > 1:
        step = np.diff(ts)
        if (step < 0).any():
            i = int(np.flatnonzero(step < 0)[0]) + 1
            raise ValueError(f"bars: timestamps not sorted ascending: row {i} ({ts[i]}) < row {i - 1}")
        if (step == 0).any():
            i = int(np.flatnonzero(step == 0)[0]) + 1
            raise ValueError(f"bars: duplicate timestamp {ts[i]} at rows {i - 1} and {i}")
    return pa.table(
        [pa.array(arrays[name], type=BAR_SCHEMA.field(name).type) for name in BAR_COLUMNS], schema=BAR_SCHEMA
    )


def _timestamps_from_series(s: pd.Series) -> np.ndarray:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        if s.isna().any():
            raise ValueError("bars: timestamp has missing values")
        return pd.DatetimeIndex(s).as_unit("ns").asi8
    if pd.api.types.is_datetime64_dtype(s.dtype):
        raise ValueError("bars: timestamp is timezone-naive; use int64 ns UTC or tz-aware datetimes")
    return s  # checked as an integer column by the caller


def _int_column(name: str, values: object) -> np.ndarray:
    if isinstance(values, pd.Series):
        if values.isna().any():
            raise ValueError(f"bars: {name} has missing values")
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"bars: {name} does not fit in int64")
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and name == "trades":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(f"bars: {name} must be whole numbers (use -1 when unknown)")
        return arr.astype(np.int64)
    if arr.dtype.kind == "O" and arr.size and all(isinstance(v, int) for v in arr.tolist()):
        return arr.astype(np.int64)
    if arr.size == 0:
        return arr.astype(np.int64)
    raise ValueError(f"bars: {name} must be integers (int64), got dtype {arr.dtype}")


def _float_column(name: str, values: object, n: int) -> np.ndarray:
    try:
        if isinstance(values, pd.Series):
            values = values.to_numpy(dtype=np.float64, na_value=np.nan)
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"bars: {name} must be numbers") from None
    if arr.shape != (n,):
        raise ValueError(f"bars: {name} has {arr.shape[0] if arr.ndim else 0} values, timestamp has {n}")
    return arr
