"""The ML datasets: every candidate signal with its features and triple-barrier label, and every
k-th bar with its regime label; Parquet with a versioned schema.

A dataset is a directory:

    signals.parquet   one row per candidate signal (before any model or risk decision):
                      SIGNAL_META columns, feature_names(cfg), LABEL_COLUMNS
    regime.parquet    one row every ml.regime_stride_bars bars: symbol, ts, the market
                      features, `regime` (0 trending, 1 ranging, 2 volatile), `label_ts`
    manifest.json     symbols, time span, row counts, the source, the schema

Each Parquet file carries its schema in its metadata (key `scalper.dataset`: schema version,
kind, ordered feature names and their hash). `read_dataset` refuses a file whose schema
version or feature list differs from what this code (and config) expects, with an error
naming the difference: a model must never be trained on columns that mean something else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalper.config import Config
from scalper.ml.features import (
    bar_features,
    feature_hash,
    feature_names,
    market_feature_names,
    signal_features,
)
from scalper.ml.labels import BarrierPricing, triple_barrier
from scalper.ml.regime import regime_labels
from scalper.types import NS_PER_MINUTE

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
META_KEY = b"scalper.dataset"
SIGNAL_META = (
    "symbol",
    "ts",
    "strategy",
    "order_type",
    "entry_ref",
    "limit_price",
    "stop_loss",
    "take_profit",
    "expiry_bars",
)
LABEL_COLUMNS = ("outcome", "label", "r_multiple", "entry_price", "exit_price", "entry_ts", "exit_ts")
KINDS = ("signals", "regime")


class DatasetSchemaError(ValueError):
    """A dataset file written with another schema or feature list than the one expected."""


def collect_symbol(
    cfg: Config, symbol: str, bars: pd.DataFrame, start: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(signals, regime) rows of one symbol's bars (a DataFrame with the bar columns).

    Indicators as the backtest computes them (`scalper.backtest.prepare`), every strategy's
    rule over all bars, each signal labelled by its own bracket (scalper.ml.labels).
    `start` (bar open, ns): the bars before it are warm-up, as `backtest --from` loads them —
    history for the indicators and rules, no rows of their own — so the features of the first
    rows kept are the values the backtest and the live path see, not those of indicators
    still converging.
    """
    from scalper.backtest import prepare
    from scalper.strategies import build_strategies
    from scalper.strategies.base import as_columns

    sd = prepare(symbol, bars, cfg)
    cols = sd.cols
    market = bar_features(cols, cfg)
    pricing = BarrierPricing(cfg, symbol)
    horizon = cfg.ml.label_horizon_bars
    atr = np.asarray(cols[f"atr_{cfg.indicators.atr_length}"], dtype=np.float64)
    close = np.asarray(cols["close"], dtype=np.float64)
    parts = []
    for strategy in build_strategies(cfg):
        out = strategy.rule(as_columns(cols, ["timestamp", *strategy.columns()]))
        rows = np.flatnonzero(out.side)
        if rows.size == 0:
            continue
        side = out.side[rows].astype(np.int64)
        limit = out.limit_price[rows].astype(np.float64)
        entry = np.where(np.isfinite(limit), limit, close[rows])
        stop, target = out.stop_loss[rows], out.take_profit[rows]
        expiry = out.expiry_bars[rows].astype(np.int64)
        frame = signal_features(
            market,
            rows,
            strategy=[strategy.name] * rows.size,
            side=side,
            entry=entry,
            limit_price=limit,
            stop_loss=stop,
            take_profit=target,
            close=close[rows],
            atr=atr[rows],
            cfg=cfg,
        )
        labels = [
            triple_barrier(
                cols,
                int(r),
                int(s),
                float(st),
                float(tp),
                None if not np.isfinite(lim) else float(lim),
                int(e) if e > 0 else None,
                horizon,
                pricing,
            )
            for r, s, st, tp, lim, e in zip(rows, side, stop, target, limit, expiry, strict=True)
        ]
        ts = cols["timestamp"]
        meta = pd.DataFrame(
            {
                "symbol": symbol,
                "ts": ts[rows].astype(np.int64),
                "strategy": strategy.name,
                "order_type": np.where(np.isfinite(limit), "limit", "market"),
                "entry_ref": entry,
                "limit_price": limit,
                "stop_loss": stop.astype(np.float64),
                "take_profit": target.astype(np.float64),
                "expiry_bars": expiry,
            }
        )
        lab = pd.DataFrame(
            {
                "outcome": [lb.outcome for lb in labels],
                "label": np.array([lb.label for lb in labels], dtype=np.float64),
                "r_multiple": np.array([lb.r_multiple for lb in labels], dtype=np.float64),
                "entry_price": np.array([lb.entry_price for lb in labels], dtype=np.float64),
                "exit_price": np.array([lb.exit_price for lb in labels], dtype=np.float64),
                "entry_ts": np.array(
                    [int(ts[lb.entry_index]) if lb.entry_index >= 0 else -1 for lb in labels], dtype=np.int64
                ),
                "exit_ts": np.array([lb.exit_ts for lb in labels], dtype=np.int64),
            }
        )
        parts.append(pd.concat([meta, frame, lab], axis=1))
    signals = (
        pd.concat(parts, ignore_index=True)
        .sort_values(["ts", "strategy"], kind="stable")
        .reset_index(drop=True)
        if parts
        else empty_signals(cfg)
    )
    regime = _regime_rows(cfg, symbol, cols, market)
    if start is not None:
        signals = signals[signals["ts"] >= start].reset_index(drop=True)
        regime = regime[regime["ts"] >= start].reset_index(drop=True)
    return signals, regime


def _regime_rows(
    cfg: Config, symbol: str, cols: Mapping[str, np.ndarray], market: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    codes = regime_labels(np.asarray(cols["close"], dtype=np.float64), cfg)
    names = market_feature_names(cfg)
    n = codes.shape[0]
    rows = np.arange(0, n, cfg.ml.regime_stride_bars)
    rows = rows[codes[rows] >= 0]
    ts = np.asarray(cols["timestamp"], dtype=np.int64)[rows]
    frame = pd.DataFrame({"symbol": symbol, "ts": ts})
    for name in names:
        frame[name] = np.asarray(market[name], dtype=np.float64)[rows]
    frame["regime"] = codes[rows].astype(np.int8)
    frame["label_ts"] = ts + (cfg.ml.regime_window_bars + 1) * NS_PER_MINUTE
    return frame


def empty_signals(cfg: Config) -> pd.DataFrame:
    cols = [*SIGNAL_META, *feature_names(cfg), *LABEL_COLUMNS]
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in cols})


def _dtype(column: str) -> str:
    if column in ("symbol", "strategy", "order_type", "outcome"):
        return "object"
    if column in ("ts", "expiry_bars", "entry_ts", "exit_ts", "label_ts"):
        return "int64"
    if column == "regime":
        return "int8"
    return "float64"


def expected_columns(cfg: Config, kind: str) -> list[str]:
    if kind == "signals":
        return [*SIGNAL_META, *feature_names(cfg), *LABEL_COLUMNS]
    if kind == "regime":
        return ["symbol", "ts", *market_feature_names(cfg), "regime", "label_ts"]
    raise ValueError(f"dataset kind: expected one of {KINDS}, got {kind!r}")


def _features_of(cfg: Config, kind: str) -> list[str]:
    return feature_names(cfg) if kind == "signals" else market_feature_names(cfg)


def schema_meta(cfg: Config, kind: str) -> dict[str, Any]:
    names = _features_of(cfg, kind)
    return {"schema": SCHEMA_VERSION, "kind": kind, "features": names, "feature_hash": feature_hash(names)}


def write_table(frame: pd.DataFrame, path: str | Path, cfg: Config, kind: str) -> None:
    """One dataset file, columns in schema order, with the schema in its Parquet metadata."""
    columns = expected_columns(cfg, kind)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetSchemaError(f"{kind} dataset: missing columns {missing}")
    frame = frame[columns].astype({c: _dtype(c) for c in columns})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps(schema_meta(cfg, kind)).encode()
    pq.write_table(table.replace_schema_metadata(meta), str(path))


def check_schema(path: str | Path, cfg: Config, kind: str) -> dict[str, Any]:
    """The schema metadata of a dataset file; DatasetSchemaError when it is not what `cfg` expects."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file {path} does not exist (run `scalper collect` first)")
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    if raw is None:
        raise DatasetSchemaError(f"{path}: not a scalper dataset (no {META_KEY.decode()!r} metadata)")
    meta = json.loads(raw)
    if meta.get("schema") != SCHEMA_VERSION:
        raise DatasetSchemaError(
            f"{path}: dataset schema version {meta.get('schema')!r}, this code reads version "
            f"{SCHEMA_VERSION}: collect the dataset again"
        )
    if meta.get("kind") != kind:
        raise DatasetSchemaError(f"{path}: a {meta.get('kind')!r} dataset, expected {kind!r}")
    want = _features_of(cfg, kind)
    if meta.get("features") != want:
        raise DatasetSchemaError(
            f"{path}: feature list differs from this config's: {describe_diff(meta.get('features') or [], want)}"
        )
    return meta


def describe_diff(got: Sequence[str], want: Sequence[str]) -> str:
    """What differs between two ordered feature lists, in one sentence."""
    missing = [f for f in want if f not in got]
    extra = [f for f in got if f not in want]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    if not parts:
        first = next((k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        parts.append(
            f"same names in another order (first difference at position {first}: {got[first]!r} vs {want[first]!r})"
            if first is not None
            else "same names"
        )
    return "; ".join(parts)


def read_dataset(path: str | Path, cfg: Config, kind: str = "signals") -> pd.DataFrame:
    """A dataset's `kind` table as a DataFrame (schema checked). `path`: the dataset directory
    or the Parquet file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / f"{kind}.parquet"
    check_schema(p, cfg, kind)
    return pq.read_table(p).to_pandas()


def write_dataset(
    out_dir: str | Path,
    cfg: Config,
    signals: pd.DataFrame,
    regime: pd.DataFrame,
    source: Mapping[str, Any],
) -> dict[str, Any]:
    """signals.parquet, regime.parquet and manifest.json in `out_dir`; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_table(signals, out / "signals.parquet", cfg, "signals")
    write_table(regime, out / "regime.parquet", cfg, "regime")
    outcomes = signals["outcome"].value_counts().to_dict() if len(signals) else {}
    manifest = {
        "schema": SCHEMA_VERSION,
        "source": dict(source),
        "symbols": sorted(set(signals["symbol"]) | set(regime["symbol"])),
        "start_ts": int(regime["ts"].min()) if len(regime) else None,
        "end_ts": int(regime["ts"].max()) if len(regime) else None,
        "signals": len(signals),
        "outcomes": {str(k): int(v) for k, v in outcomes.items()},
        "regime_rows": len(regime),
        "label_horizon_bars": cfg.ml.label_horizon_bars,
        "regime_window_bars": cfg.ml.regime_window_bars,
        "signal_features": feature_names(cfg),
        "signal_feature_hash": feature_hash(feature_names(cfg)),
        "regime_features": market_feature_names(cfg),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def collect(
    cfg: Config, bars: Mapping[str, pd.DataFrame], start: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """collect_symbol over every symbol (in-process), concatenated."""
    sig, reg = [], []
    for symbol, frame in bars.items():
        if len(frame) == 0:
            continue
        s, r = collect_symbol(cfg, symbol, frame, start)
        sig.append(s)
        reg.append(r)
    return concat(cfg, sig, reg)


def concat(
    cfg: Config, signals: Sequence[pd.DataFrame], regime: Sequence[pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-symbol parts -> one signals and one regime table, in time order."""
    sig = [s for s in signals if len(s)]
    s = pd.concat(sig, ignore_index=True) if sig else empty_signals(cfg)
    s = s.sort_values(["ts", "symbol", "strategy"], kind="stable").reset_index(drop=True)
    reg = [r for r in regime if len(r)]
    r = (
        pd.concat(reg, ignore_index=True)
        if reg
        else pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in expected_columns(cfg, "regime")})
    )
    r = r.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    return s, r
