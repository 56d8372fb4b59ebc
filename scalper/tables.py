"""Whole-file conversions behind `scalper candles` and `scalper indicators`.

Users' own data in, CSV or Parquet out. The same CandleManager and indicator code as the
live path; the only difference is that a file is processed in one vectorised call per symbol.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from scalper.candles import CandleManager
from scalper.config import Config, ReplayColumns
from scalper.types import BAR_COLUMNS, Bar

log = logging.getLogger(__name__)


class InputError(ValueError):
    """The user's file cannot be used: says which file, which column and why."""


@dataclass
class ConversionResult:
    out: str
    rows: int
    symbols: list[str]
    seconds: float
    rows_in: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    what: str = "bars"

    def describe(self) -> str:
        lines = [
            f"wrote {self.rows:,} {self.what} for {len(self.symbols)} symbol(s) "
            f"({', '.join(self.symbols[:5])}{', ...' if len(self.symbols) > 5 else ''}) to {self.out} "
            f"in {self.seconds:.2f} s"
        ]
        if self.what == "bars":
            bad = sum(self.rejected.values())
            lines.append(f"ticks in: {self.rows_in:,}, accepted: {self.rows_in - bad:,}, rejected: {bad:,}")
            lines += [f"  rejected {reason}: {n:,}" for reason, n in sorted(self.rejected.items()) if n]
        return "\n".join(lines)


def _columns(cfg: Config, overrides: dict[str, str] | None) -> ReplayColumns:
    doc = msgspec.to_builtins(cfg.feed.replay.columns)
    doc.update(overrides or {})
    return msgspec.convert(doc, ReplayColumns)


def bars_frame(symbol: str, bars: list[Bar]) -> pd.DataFrame:
    """Bars as the user-facing table: symbol, timestamp (UTC, minute open), OHLCV, trades, vwap."""
    n = len(bars)
    cols = {
        name: np.empty(n, dtype=np.int64 if name in ("timestamp", "trades") else np.float64)
        for name in BAR_COLUMNS
    }
    for i, b in enumerate(bars):
        cols["timestamp"][i] = b.ts
        cols["open"][i] = b.open
        cols["high"][i] = b.high
        cols["low"][i] = b.low
        cols["close"][i] = b.close
        cols["volume"][i] = b.volume
        cols["trades"][i] = b.trades
        cols["vwap"][i] = b.vwap
    df = pd.DataFrame(cols)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ns", utc=True)
    df.insert(0, "symbol", symbol)
    return df


def write_table(df: pd.DataFrame, out: str | Path) -> None:
    """Parquet (by default) or CSV (by suffix); written to a temp name then renamed."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix.lower() == ".csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
    tmp.replace(path)


def ticks_to_bars_file(
    cfg: Config,
    input_path: str,
    out: str,
    symbol: str | None = None,
    columns: dict[str, str] | None = None,
    store_uri: str | None = None,
) -> ConversionResult:
    """Read ticks, aggregate them per symbol with the config's candle rules, write the bars
    (and append them to the bar store at `store_uri`, if given)."""
    from scalper.feeds.base import FeedError
    from scalper.feeds.replay import read_ticks

    t0 = time.perf_counter()
    replay = cfg.feed.replay
    cols = _columns(cfg, columns)
    try:
        batches = read_ticks(
            input_path,
            cols,
            timestamp_unit=replay.timestamp_unit,
            default_symbol=symbol or replay.default_symbol,
            symbols=[symbol] if symbol and cols.symbol else None,
        )
    except (FeedError, OSError) as exc:
        raise InputError(str(exc)) from None
    frames = []
    rejected: Counter[str] = Counter()
    rows_in = 0
    for sym, batch in batches.items():
        manager = CandleManager(sym, cfg.candles)
        bars = manager.on_ticks(batch) + manager.flush()
        rows_in += len(batch)
        for reason, n in manager.rejected.items():
            rejected[reason.value] += n
        frames.append(bars_frame(sym, bars))
    df = pd.concat(frames, ignore_index=True) if frames else bars_frame(symbol or "", [])
    write_table(df, out)
    if store_uri:
        from scalper.store import BarStore

        store = BarStore(store_uri)
        for sym, group in df.groupby("symbol", sort=False):
            bars = group.drop(columns=["symbol"]).assign(timestamp=group["timestamp"].astype("int64"))
            store.append(str(sym), bars)
    return ConversionResult(out, len(df), list(batches), time.perf_counter() - t0, rows_in, dict(rejected))


def bars_to_indicators_file(
    cfg: Config,
    input_path: str,
    out: str,
    streaming: bool = False,
    columns: dict[str, str] | None = None,
) -> ConversionResult:
    """Read bars, add one column per indicator (batch pandas_ta, or the streaming path)."""
    from scalper.feeds.base import FeedError
    from scalper.feeds.replay import read_bars
    from scalper.indicators import compute_batch, compute_streaming

    t0 = time.perf_counter()
    replay = cfg.feed.replay
    try:
        bars = read_bars(
            input_path,
            _columns(cfg, columns),
            timestamp_unit=replay.timestamp_unit,
            default_symbol=replay.default_symbol,
        )
    except (FeedError, OSError) as exc:
        raise InputError(str(exc)) from None
    frames = []
    symbols = []
    for sym, group in bars.groupby("symbol", sort=False):
        group = group.sort_values("timestamp", kind="stable").reset_index(drop=True)
        ind = compute_streaming(group, cfg.indicators) if streaming else compute_batch(group, cfg.indicators)
        frame = pd.concat([group, ind], axis=1)
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ns", utc=True)
        frames.append(frame)
        symbols.append(str(sym))
    df = pd.concat(frames, ignore_index=True)
    lead = ["symbol", *BAR_COLUMNS]
    df = df[[c for c in lead if c in df.columns] + [c for c in df.columns if c not in lead]]
    write_table(df, out)
    return ConversionResult(out, len(df), symbols, time.perf_counter() - t0, what="rows with indicators")
