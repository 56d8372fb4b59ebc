"""Replay ticks or 1-minute bars from a Parquet or CSV file, as a Feed or in one call.

* Format by suffix: `.parquet`/`.pq`/`.parq` (only the needed columns are read) or `.csv`
  (also `.csv.gz`, `.csv.bz2`, `.csv.zst`; read with pyarrow.csv).
* Column names come from `ReplayColumns`. Ticks need timestamp, price and size (plus an
  optional symbol and trade_id); bars need timestamp (the bar OPEN time), open, high, low,
  close, volume (plus optional symbol, trades, vwap).
* Timestamps: a timestamp/date column is taken as is (naive = UTC); a numeric column is in
  `timestamp_unit` since the epoch; a string column is parsed as ISO 8601 (-> UTC). Rows
  without a timestamp or symbol are dropped with a warning.
* Symbols: with a symbol column, rows are filtered to the requested symbols (and asking
  for a symbol the file lacks is an error naming it); without one every row belongs to
  `default_symbol`.
* Rows out of time order are sorted (stable, so same-time rows keep file order), with a
  warning. The whole file is read into memory.
* Errors (`FeedError`) name the file and what is wrong: a missing file, an unknown
  suffix, missing columns (with the columns the file has), an empty file, unknown symbols.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scalper.config import ReplayColumns, ReplayFeed
from scalper.feeds.base import Chunk, Feed, FeedError
from scalper.types import BAR_COLUMNS, NS_PER_MINUTE, TickBatch

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def resolve_path(path: str | Path) -> Path:
    """A replay path: as given, else (when relative) under the project root."""
    p = Path(path).expanduser()
    if p.exists():
        return p
    if not p.is_absolute() and (PROJECT_ROOT / p).exists():
        return PROJECT_ROOT / p
    places = [p] if p.is_absolute() else list(dict.fromkeys([Path.cwd() / p, PROJECT_ROOT / p]))
    where = " nor ".join(str(x) for x in places)
    raise FeedError(f"data file not found: {path} (there is no {where})")


def _format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise FeedError(
        f"{path}: unknown file type; expected a name ending in {', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)}"
    )


def _needed(columns: ReplayColumns, kind: str) -> dict[str, str]:
    """{role: column name} of the columns to read."""
    if kind == "bars":
        roles = {r: getattr(columns, r) for r in ("timestamp", "open", "high", "low", "close", "volume")}
        optional = ("symbol", "trades", "vwap")
    elif kind == "ticks":
        roles = {"timestamp": columns.timestamp, "price": columns.price, "size": columns.size}
        optional = ("symbol", "trade_id")
    else:
        raise FeedError(f'replay.kind: expected one of "ticks", "bars", got {kind!r}')
    roles.update({r: getattr(columns, r) for r in optional if getattr(columns, r) is not None})
    return roles


_SOFT_ROLES = ("symbol", "trade_id", "trades", "vwap")
_DEFAULT_COLUMNS = {role: getattr(ReplayColumns(), role) for role in _SOFT_ROLES}


def _schema(path: Path, fmt: str) -> pa.Schema:
    """The file's columns, read without its rows; FeedError naming the file when it cannot be."""
    try:
        return pq.read_schema(path) if fmt == "parquet" else pacsv.open_csv(path).schema
    except (pa.ArrowException, ValueError) as exc:
        if "Empty CSV file" in str(exc) or path.stat().st_size == 0:
            raise FeedError(f"{path}: the file is empty") from None
        raise FeedError(f"{path}: cannot read it as {fmt}: {exc}") from None


def file_columns(path: str | Path) -> list[str]:
    """The column names of a replay file (CSV or Parquet), without reading its rows."""
    p = resolve_path(path)
    return list(_schema(p, _format(p)).names)


def _read_table(path: Path, roles: dict[str, str]) -> pa.Table:
    """Read the role columns; `roles` loses the optional ones the file does not have."""
    fmt = _format(path)
    schema = _schema(path, fmt)
    for role in _SOFT_ROLES:
        # an optional column left at its default name is used only if the file has it
        if role in roles and roles[role] == _DEFAULT_COLUMNS[role] and roles[role] not in schema.names:
            del roles[role]
    names = list(dict.fromkeys(roles.values()))
    missing = [
        f"{name!r} (replay.columns.{role})" for role, name in roles.items() if name not in schema.names
    ]
    if missing:
        raise FeedError(
            f"{path}: no column {', '.join(missing)}; the file has columns: {', '.join(schema.names)}"
        )
    try:
        if fmt == "parquet":
            table = pq.read_table(path, columns=names)
        else:
            types = {roles["symbol"]: pa.string()} if "symbol" in roles else {}
            if "trade_id" in roles:
                types[roles["trade_id"]] = pa.string()
            table = pacsv.read_csv(
                path, convert_options=pacsv.ConvertOptions(include_columns=names, column_types=types)
            )
    except (pa.ArrowException, ValueError) as exc:
        raise FeedError(f"{path}: cannot read it as {fmt}: {_name_columns(str(exc), schema.names)}") from None
    if table.num_rows == 0:
        raise FeedError(f"{path}: the file is empty (a header but no rows)")
    return table


def _name_columns(message: str, names: Sequence[str]) -> str:
    """pyarrow's "CSV column #k" with the column's name added."""

    def named(m: re.Match[str]) -> str:
        k = int(m.group(1))
        return f"{m.group(0)} ({names[k]!r})" if k < len(names) else m.group(0)

    return re.sub(r"column #(\d+)", named, message)


def _timestamps_ns(col: pa.ChunkedArray, unit: str, path: Path, name: str) -> np.ndarray:
    """int64 ns UTC; nulls become INT64 min (dropped by the caller)."""
    t = col.type
    null = np.iinfo(np.int64).min
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if pa.types.is_date(t):
            col = col.cast(pa.timestamp("ms"))
            t = col.type
        raw = col.cast(pa.int64()).fill_null(null).to_numpy()
        scale = _UNIT_NS[t.unit]
        return np.where(raw == null, null, raw * scale) if scale != 1 else raw
    if pa.types.is_integer(t):
        raw = col.cast(pa.int64()).fill_null(null).to_numpy()
        return np.where(raw == null, null, raw * _UNIT_NS[unit])
    if pa.types.is_floating(t):
        x = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        whole = np.floor(x)
        ns = np.where(
            np.isfinite(x),
            whole.astype(np.int64, copy=False) * _UNIT_NS[unit]
            + np.rint((x - whole) * _UNIT_NS[unit]).astype(np.int64),
            null,
        )
        return ns
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        values = col.to_pandas()
        try:
            parsed = pd.to_datetime(values, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise FeedError(f"{path}: column {name!r} has timestamps that are not ISO 8601: {exc}") from None
        # NaT is int64 min, the same null marker as above.
        return np.asarray(pd.DatetimeIndex(parsed).as_unit("ns").asi8, dtype=np.int64)
    raise FeedError(f"{path}: column {name!r} has type {t}, which is not a timestamp, number or string")


def _where(path: Path, row: int) -> str:
    """Where row `row` (0-based, in file order) of a file is: a CSV's line, a Parquet's row."""
    return f"line {row + 2}" if _format(path) == "csv" else f"row {row}"


def _numbers(col: pa.ChunkedArray, path: Path, name: str, role: str) -> np.ndarray:
    """A numeric column as float64 (empty cells NaN); FeedError naming the column and the first
    row that is not a number."""
    t = col.type
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        values = col.to_pandas()
        parsed = pd.to_numeric(values.str.strip(), errors="coerce")
        bad = np.flatnonzero((parsed.isna() & values.notna() & (values.str.strip() != "")).to_numpy())
        if bad.size:
            i = int(bad[0])
            raise FeedError(
                f"{path}: column {name!r} (replay.columns.{role}) has {bad.size} value(s) that are not "
                f"numbers, the first {values.iloc[i]!r} at {_where(path, i)}"
            )
        return parsed.to_numpy(dtype=np.float64)
    raise FeedError(f"{path}: column {name!r} (replay.columns.{role}) has type {t}, which is not a number")


@dataclass(slots=True)
class _Loaded:
    symbols: list[str]
    code: np.ndarray  # int32 index into symbols
    cols: dict[str, np.ndarray | None]
    rows: np.ndarray  # each row's position in the file (0-based), for messages
    has_symbol_column: bool = True


def _load(
    path: str | Path,
    columns: ReplayColumns | None,
    kind: str,
    timestamp_unit: str,
    default_symbol: str,
    symbols: Sequence[str] | None,
) -> _Loaded:
    columns = columns or ReplayColumns()
    p = resolve_path(path)
    roles = _needed(columns, kind)
    table = _read_table(p, roles)
    n = table.num_rows
    ts = _timestamps_ns(table[roles["timestamp"]], timestamp_unit, p, roles["timestamp"])
    keep = ts != np.iinfo(np.int64).min
    if not keep.all():
        log.warning("%s: dropped %d rows without a timestamp", p, int((~keep).sum()))

    if "symbol" in roles:
        sym = table[roles["symbol"]].cast(pa.string()).combine_chunks().dictionary_encode()
        present = sym.dictionary.to_pylist()
        names = sorted(present) if symbols is None else list(symbols)
        missing = [s for s in names if s not in set(present)]
        if missing:
            shown = ", ".join(sorted(present)[:20]) + (" ..." if len(present) > 20 else "")
            raise FeedError(
                f"{p}: symbols {missing} are not in the file (column {roles['symbol']!r}); "
                f"it has {len(present)} symbols: {shown}"
            )
        position = {s: i for i, s in enumerate(names)}
        lookup = np.array([position.get(s, -1) for s in present] + [-1], dtype=np.int32)
        idx = sym.indices.fill_null(len(present)).to_numpy()
        code = lookup[idx]
        no_symbol = sym.null_count
        if no_symbol:
            log.warning("%s: dropped %d rows without a symbol", p, no_symbol)
        keep &= code >= 0
    else:
        names = [default_symbol]
        if symbols is not None and list(symbols) != [default_symbol]:
            missing = [s for s in symbols if s != default_symbol]
            why = (
                "replay.columns.symbol is null"
                if columns.symbol is None
                else f"no column {columns.symbol!r} (replay.columns.symbol)"
            )
            raise FeedError(
                f"{p}: symbols {missing} are not in the file: it has no symbol column ({why}), so "
                f"all its rows are {default_symbol!r} (feed.replay.default_symbol); name the file's "
                "symbol with --symbol NAME"
            )
        code = np.zeros(n, dtype=np.int32)

    def number(role: str, source: pa.Table = table) -> np.ndarray:
        return _numbers(source[roles[role]], p, roles[role], role)

    if kind == "bars":
        cols: dict[str, np.ndarray | None] = {"ts": ts}
        for role in ("open", "high", "low", "close", "volume"):
            cols[role] = number(role)
        if "trades" in roles:
            trades = number("trades")
            cols["trades"] = np.where(np.isfinite(trades), trades, -1).astype(np.int64)
        else:
            cols["trades"] = np.full(n, -1, dtype=np.int64)
        cols["vwap"] = number("vwap") if "vwap" in roles else np.full(n, np.nan)
    else:
        cols = {"ts": ts, "price": number("price"), "size": number("size")}
        if "trade_id" in roles:
            tid = table[roles["trade_id"]]
            cols["trade_id"] = tid.to_numpy(zero_copy_only=False) if tid.null_count else tid.to_numpy()
        else:
            cols["trade_id"] = None
    del table

    rows = np.arange(n)
    if not keep.all():
        code, rows = code[keep], rows[keep]
        cols = {k: None if c is None else c[keep] for k, c in cols.items()}
    if len(code) == 0:
        raise FeedError(f"{p}: no rows left for symbols {names}")
    ts = cols["ts"]
    assert ts is not None
    if np.any(ts[1:] < ts[:-1]):
        log.warning("%s: rows are not in time order; sorting them by timestamp (stable)", p)
        order = np.argsort(ts, kind="stable")
        code, rows = code[order], rows[order]
        cols = {k: None if c is None else c[order] for k, c in cols.items()}
    loaded = _Loaded(names, code, cols, rows, "symbol" in roles)
    if kind == "bars":
        _check_bars(p, roles, loaded)
    log.info("%s: %d %s of %d symbols", p, len(code), kind, len(names))
    return loaded


def _iso(ts: int) -> str:
    return pd.Timestamp(int(ts), unit="ns", tz="UTC").isoformat()


def _check_bars(p: Path, roles: dict[str, str], data: _Loaded) -> None:
    """A bar file must hold usable 1-minute bars: FeedError naming the file, the column, the
    row and the reason at the first that is not (by file order), before anything runs. Bars
    are not repaired or resampled: a wrong bar would trade."""
    cols, rows = data.cols, data.rows

    def fail(bad: np.ndarray, what: str, role: str | None = None) -> None:
        """Raise for the first row (in file order) where `bad` holds; `what(i)` says why."""
        if not bad.any():
            return
        k = np.flatnonzero(bad)
        i = int(k[np.argmin(rows[k])])
        col = f"column {roles[role]!r} (replay.columns.{role}) " if role else ""
        raise FeedError(f"{p}: {col}at {_where(p, int(rows[i]))}: {what.format(i=i, **_row_values(cols, i))}")

    for role in ("open", "high", "low", "close"):
        x = cols[role]
        assert x is not None
        fail(~np.isfinite(x), f"{{{role}}} is not a price (empty, NaN or inf)", role)
        fail(x <= 0, f"{{{role}}} is not a price (<= 0)", role)
    vol = cols["volume"]
    assert vol is not None
    fail(~np.isfinite(vol), "{volume} is not a volume (empty, NaN or inf)", "volume")
    fail(vol < 0, "{volume} is a negative volume", "volume")
    o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]
    assert o is not None and h is not None and lo is not None and c is not None
    fail(h < lo, "high {high} is below low {low}")
    fail(h < np.maximum(o, c), "high {high} is below the open {open} or the close {close}")
    fail(lo > np.minimum(o, c), "low {low} is above the open {open} or the close {close}")
    ts = cols["ts"]
    assert ts is not None
    fail(
        ts % NS_PER_MINUTE != 0,
        "timestamp {time} is not on a minute boundary; scalper needs 1-minute bars stamped with "
        "the minute's open time",
        "timestamp",
    )
    # per symbol, in time order: no two bars in one minute, and 1-minute spacing somewhere
    order = np.lexsort((ts, data.code))
    code_s, ts_s = data.code[order], ts[order]
    same = code_s[1:] == code_s[:-1]
    step = np.diff(ts_s)
    pair = np.flatnonzero(same & (step == 0))
    if pair.size:
        first, second = order[pair], order[pair + 1]
        m = int(np.argmin(np.maximum(rows[first], rows[second])))
        i = int(first[m])
        r1, r2 = sorted((int(rows[i]), int(rows[second[m]])))
        raise FeedError(
            f"{p}: two bars of {data.symbols[data.code[i]]!r} at {_iso(int(ts[i]))}, at {_where(p, r1)} "
            f"and {_where(p, r2)}"
        )
    for k, sym in enumerate(data.symbols):
        gaps = step[same & (code_s[1:] == k)]
        if gaps.size >= 2 and gaps.min() > NS_PER_MINUTE:
            minutes = gaps.min() / NS_PER_MINUTE
            raise FeedError(
                f"{p}: the bars of {sym!r} are {minutes:g}-minute bars (no two of its {gaps.size + 1} "
                f"bars are less than {minutes:g} minutes apart); scalper needs 1-minute bars "
                "(give it the 1-minute bars or the ticks)"
            )


def _row_values(cols: dict[str, np.ndarray | None], i: int) -> dict[str, object]:
    """The bar at index `i` for messages: its prices and volume as given, and its time."""
    out: dict[str, object] = {
        r: f"{float(cols[r][i]):.10g}" for r in ("open", "high", "low", "close", "volume")
    }  # type: ignore[index]
    out["time"] = _iso(int(cols["ts"][i]))  # type: ignore[index]
    return out


def read_ticks(
    path: str | Path,
    columns: ReplayColumns | None = None,
    *,
    timestamp_unit: str = "ms",
    default_symbol: str = "ES",
    symbols: Sequence[str] | None = None,
) -> dict[str, TickBatch]:
    """The whole tick file in one call: {symbol: TickBatch (ts order)}.

    `symbols=None` keeps every symbol in the file; a list filters to (and requires) them.
    """
    data = _load(path, columns, "ticks", timestamp_unit, default_symbol, symbols)
    out: dict[str, TickBatch] = {}
    cols = data.cols
    if len(data.symbols) == 1:
        groups = {0: slice(None)}
    else:
        order = np.argsort(data.code, kind="stable")
        code = data.code[order]
        cols = {k: None if c is None else c[order] for k, c in cols.items()}
        bounds = np.searchsorted(code, np.arange(len(data.symbols) + 1))
        groups = {i: slice(int(bounds[i]), int(bounds[i + 1])) for i in range(len(data.symbols))}
    for i, sl in groups.items():
        tid = cols["trade_id"]
        out[data.symbols[i]] = TickBatch(
            data.symbols[i],
            cols["ts"][sl],
            cols["price"][sl],
            cols["size"][sl],
            None if tid is None else tid[sl],
        )
    return out


def read_bars(
    path: str | Path,
    columns: ReplayColumns | None = None,
    *,
    timestamp_unit: str = "ms",
    default_symbol: str = "ES",
    symbols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A 1-minute bar file in one call: columns symbol + BAR_COLUMNS, in timestamp order.

    timestamp is the bar open (int64 ns); trades is -1 and vwap NaN when the file lacks them.
    """
    data = _load(path, columns, "bars", timestamp_unit, default_symbol, symbols)
    frame = pd.DataFrame({"symbol": np.asarray(data.symbols, dtype=object)[data.code]})
    frame["timestamp"] = data.cols["ts"]
    for name in BAR_COLUMNS[1:]:
        frame[name] = data.cols[name]
    return frame


class FileReplayFeed(Feed):
    """A tick or bar file replayed as a Feed (see scalper/feeds/base.py for the events).

    The file is read (and checked) when the feed is made, so a bad file fails early.
    """

    def __init__(
        self,
        cfg: ReplayFeed,
        symbols: Sequence[str] | None = None,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        data = _load(cfg.path, cfg.columns, cfg.kind, cfg.timestamp_unit, cfg.default_symbol, symbols)
        kw = {k: v for k, v in (("sleep", sleep), ("clock", clock)) if v is not None}
        super().__init__(
            data.symbols, batch_ms=cfg.batch_ms, speed=cfg.speed, max_quiet_s=cfg.max_quiet_s, **kw
        )
        self.kind = cfg.kind
        self.cfg = cfg
        self._data = data

    def __len__(self) -> int:
        """Rows (ticks or bars) the feed will deliver."""
        return len(self._data.code)

    def _chunks(self) -> Iterator[Chunk]:
        d = self._data
        ts = d.cols["ts"]
        assert ts is not None
        when = ts + NS_PER_MINUTE if self.kind == "bars" else ts
        yield Chunk(d.code, when, d.cols, None)
