"""A run directory on disk: write its stored bars, read the whole directory back.

`scalper run` already stores its bars (`bars/` in the bar-store layout and
`bars_with_indicators.parquet`); `write_bars` gives `scalper backtest` the same two, so that
`scalper verify` and `scalper report` can recheck and draw any run from its directory alone.
`read_run` loads a run directory for them and raises `RunDirError` (one sentence naming the
directory and the missing file) when it is not one.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalper.config import Config, ConfigError, parse
from scalper.types import BAR_COLUMNS

log = logging.getLogger(__name__)

__all__ = [
    "BARS_DIR",
    "BARS_WITH_INDICATORS",
    "RunDirError",
    "RunFiles",
    "read_config",
    "read_run",
    "write_bars",
]

BARS_DIR = "bars"
BARS_WITH_INDICATORS = "bars_with_indicators.parquet"
_OHLCV = ("open", "high", "low", "close", "volume")


class RunDirError(ValueError):
    """A path that is not a usable run directory: says which one and what is missing."""


@dataclass
class RunFiles:
    """A run directory's contents as tables (timestamps as int64 ns, UTC)."""

    path: Path
    config: Config
    summary: dict[str, Any]
    signals: pd.DataFrame
    trades: pd.DataFrame
    equity: pd.DataFrame  # columns ts (int64 ns, bar close), equity
    ledger_path: Path | None
    # {symbol: bars (BAR_COLUMNS, timestamp int64 ns, sorted)}; empty when the run stored none
    bars: dict[str, pd.DataFrame] = field(default_factory=dict)
    # {symbol: indicator columns the run itself stored, aligned with `bars`} (may be empty)
    stored_indicators: dict[str, pd.DataFrame] = field(default_factory=dict)
    bars_source: str = ""
    # trades.csv as written (None when the run left none): verify holds it to trades.parquet
    trades_csv: pd.DataFrame | None = None
    # orders.parquet (None when the run left none): verify holds it to the ledger's orders
    orders: pd.DataFrame | None = None

    @property
    def trading_summary(self) -> dict[str, Any]:
        """The backtest-style statistics: top level for a backtest, under `trading` for a run."""
        return self.summary.get("trading") or self.summary

    @property
    def symbols(self) -> list[str]:
        listed = self.trading_summary.get("symbols") or list(self.config.symbols)
        return list(dict.fromkeys([*listed, *self.bars]))


def _bar_frame(symbol: str, cols: Any) -> pd.DataFrame:
    """A DataFrame (or a mapping of numpy columns) -> bars + extra columns, timestamp int64 ns."""
    frame = cols.copy() if isinstance(cols, pd.DataFrame) else pd.DataFrame(dict(cols))
    frame = frame.drop(columns=[c for c in ("symbol", "ts") if c in frame.columns and c != "timestamp"])
    missing = [c for c in ("timestamp", *_OHLCV) if c not in frame.columns]
    if missing:
        raise ValueError(f"write_bars: bars of {symbol!r} lack column(s) {missing}")
    ts = frame["timestamp"]
    if getattr(ts.dtype, "tz", None) is not None or ts.dtype.kind == "M":
        ts = pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]").astype("int64")
    frame["timestamp"] = np.asarray(ts, dtype=np.int64)
    if "trades" not in frame.columns:  # as backtest.SymbolData.bar does for bars without them
        frame["trades"] = -1
    if "vwap" not in frame.columns:
        frame["vwap"] = frame["close"]
    frame["trades"] = frame["trades"].astype(np.int64)
    lead = list(BAR_COLUMNS)
    return frame[lead + [c for c in frame.columns if c not in lead]].reset_index(drop=True)


def write_backtest(out: str | Path, engine: Any, result: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The whole run directory of a finished backtest (what `scalper backtest` writes): trades,
    orders, signals, equity, summary.json, config.json, ledger.sqlite and the bars. Returns the
    summary. `engine` is the `backtest.Backtest` that produced `result` from `data`."""
    import msgspec

    from scalper import backtest as bt

    config_json = msgspec.json.format(msgspec.json.encode(result.cfg), indent=2)
    summary = bt.write_run(result, str(out), config_json)
    bt.write_ledger(engine, result, str(Path(out) / "ledger.sqlite"), config_json.decode())
    write_bars(out, {s: sd.cols for s, sd in data.items()})
    return summary


def write_bars(run_dir: str | Path, bars: Mapping[str, Any], cfg: Config | None = None) -> Path:
    """Store a run's bars in `run_dir`: `bars/` (bar-store layout) and `bars_with_indicators.parquet`.

    `bars`: {symbol: a DataFrame or a mapping of numpy columns} with `timestamp` (int64 ns or
    datetime, bar open) and OHLCV (`trades`, `vwap` optional), plus any indicator columns
    already computed (what `backtest.prepare` leaves in `SymbolData.cols`). With `cfg` and no
    indicator columns, the batch indicators are computed here. Rewrites an existing `bars/`.
    Returns the path of `bars_with_indicators.parquet`.
    """
    from scalper.indicators import compute_batch, indicator_columns
    from scalper.store import BarStore

    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / BARS_DIR, ignore_errors=True)  # a rerun into the same directory
    store = BarStore(str(out / BARS_DIR))
    frames = []
    for symbol, cols in bars.items():
        frame = _bar_frame(symbol, cols)
        if cfg is not None and not set(indicator_columns(cfg.indicators)) & set(frame.columns):
            ind = compute_batch(frame[list(BAR_COLUMNS)], cfg.indicators)
            frame = pd.concat([frame, ind.reset_index(drop=True)], axis=1)
        if len(frame):
            store.append(symbol, frame[list(BAR_COLUMNS)])
        frame.insert(0, "symbol", symbol)
        frames.append(frame)
    path = out / BARS_WITH_INDICATORS
    if frames:
        table = pd.concat(frames, ignore_index=True)
        table["timestamp"] = pd.to_datetime(table["timestamp"], unit="ns", utc=True)
        table.to_parquet(path, index=False)
    log.info("stored %d symbols' bars in %s", len(frames), out)
    return path


# ------------------------------------------------------------------------------------ reading


def _require(path: Path, name: str, what: str) -> Path:
    p = path / name
    if not p.exists():
        raise RunDirError(f"{path}: no {name} ({what}); is this a run directory of `scalper run`/`backtest`?")
    return p


def _ns(col: pd.Series) -> np.ndarray:
    """A timestamp column (datetime, tz-aware or not, or int64 ns) as int64 ns."""
    if col.dtype.kind == "M" or getattr(col.dtype, "tz", None) is not None:
        return pd.to_datetime(col, utc=True).astype("datetime64[ns, UTC]").astype("int64").to_numpy()
    return col.to_numpy(dtype=np.int64)


def _read_bars(
    path: Path, symbols: list[str]
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], str]:
    """Bars from `bars/` (preferred: the raw bars) or `bars_with_indicators.parquet`, and the
    indicator columns the run stored (from the latter), aligned by timestamp."""
    bars: dict[str, pd.DataFrame] = {}
    stored: dict[str, pd.DataFrame] = {}
    source = ""
    wide = None
    if (path / BARS_WITH_INDICATORS).exists():
        wide = pd.read_parquet(path / BARS_WITH_INDICATORS)
        wide["timestamp"] = _ns(wide["timestamp"])
    if (path / BARS_DIR).is_dir():
        from scalper.store import BarStore

        store = BarStore(str(path / BARS_DIR))
        for sym in store.symbols():
            bars[sym] = store.read(sym)
        source = BARS_DIR
    if wide is not None:
        for sym, group in wide.groupby("symbol", sort=False):
            group = group.drop(columns=["symbol"]).sort_values("timestamp", kind="stable")
            group = group.drop_duplicates("timestamp", keep="last").reset_index(drop=True)
            if str(sym) not in bars:
                bars[str(sym)] = group[list(BAR_COLUMNS)].reset_index(drop=True)
                source = source or BARS_WITH_INDICATORS
            extra = [c for c in group.columns if c not in BAR_COLUMNS]
            if extra:
                aligned = bars[str(sym)][["timestamp"]].merge(
                    group[["timestamp", *extra]], "left", "timestamp"
                )
                stored[str(sym)] = aligned.drop(columns=["timestamp"])
    order = [s for s in symbols if s in bars] + [s for s in bars if s not in symbols]
    return {s: bars[s] for s in order}, stored, source


def read_config(path: Path) -> Config:
    """The configuration a run directory's run used (its config.json; RunDirError if absent
    or invalid)."""
    cfg_path = _require(path, "config.json", "the configuration the run used")
    try:
        return parse(cfg_path.read_bytes(), str(cfg_path))
    except ConfigError as exc:
        raise RunDirError(f"{cfg_path}: invalid configuration: {'; '.join(exc.problems)}") from None


def read_run(path: str | Path, need_bars: bool = False) -> RunFiles:
    """Load a run directory written by `scalper run` or `scalper backtest` (single run).

    `need_bars=True` raises RunDirError when the run stored no bars (verification needs them).
    """
    p = Path(path)
    if not p.is_dir():
        raise RunDirError(f"{p}: not a directory (expected a run directory such as runs/<id>)")
    summary = json.loads(_require(p, "summary.json", "the run's figures").read_text())
    if "by_job" in summary:
        raise RunDirError(
            f"{p}: a combined --parallel/--grid result: its jobs stored no bars or signals to check; "
            "rerun one job alone (`scalper backtest --symbols ...`) to verify it"
        )
    cfg = read_config(p)
    signals = pd.read_parquet(_require(p, "signals.parquet", "the logged signals"))
    if "ts" not in signals.columns:
        signals = signals.assign(ts=pd.Series(dtype=np.int64))
    trades = pd.read_parquet(_require(p, "trades.parquet", "the closed trades"))
    eq = pd.read_parquet(_require(p, "equity.parquet", "the equity curve"))
    equity = pd.DataFrame(
        {"ts": _ns(eq["time"]) if len(eq) else np.empty(0, np.int64), "equity": eq["equity"].to_numpy()}
    )
    trades_csv = _read_trades_csv(p / "trades.csv")
    orders = pd.read_parquet(p / "orders.parquet") if (p / "orders.parquet").exists() else None
    ledger = p / "ledger.sqlite"
    cfg_symbols = list(summary.get("symbols") or (summary.get("trading") or {}).get("symbols") or cfg.symbols)
    bars, stored, source = _read_bars(p, cfg_symbols)
    if need_bars and not bars:
        raise RunDirError(
            f"{p}: no stored bars ({BARS_DIR}/ or {BARS_WITH_INDICATORS}); this run was written "
            "without them, so its signals cannot be checked against the chart. Rerun it with a "
            "scalper that stores bars in the run directory."
        )
    return RunFiles(
        path=p,
        config=cfg,
        summary=summary,
        signals=signals,
        trades=trades,
        equity=equity,
        ledger_path=ledger if ledger.exists() else None,
        bars=bars,
        stored_indicators=stored,
        bars_source=source,
        trades_csv=trades_csv,
        orders=orders,
    )


# text columns of trades.csv: read as strings (an order id of digits stays one)
_TRADE_TEXT = ("symbol", "strategy", "side", "exit_reason", "entry_order_id", "entry_time", "exit_time")


def _read_trades_csv(path: Path) -> pd.DataFrame | None:
    """trades.csv as written, or None when absent; RunDirError when it is not a CSV table."""
    if not path.exists():
        return None
    try:
        return pd.read_csv(path, dtype={c: str for c in _TRADE_TEXT}, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{path}: not a readable CSV table ({exc})") from None
