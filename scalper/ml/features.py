"""Feature vectors at signal time, from bars and indicators up to the signal bar only.

`bar_features(cols, cfg)` computes, for EVERY bar at once (vectorised), the market features of
that bar: each row uses rows <= itself only (`shift` with positive lags, trailing rolling
windows), so cutting the data after bar i leaves row i unchanged (tests/test_ml_features.py
proves it, indicators recomputed on the cut data). `signal_features(...)` adds what belongs
to the signal itself (strategy, side, the bracket's geometry) at the signal rows.

Prices are made comparable across symbols and price levels: distances are in ATRs or
relative to the close, volume relative to its SMA. The ordered list of names is
`feature_names(cfg)`; its hash is part of the dataset schema and of each model card, so a
model never silently reads columns in another order or meaning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scalper.config import Config
from scalper.strategies.base import shift
from scalper.types import NS_PER_MINUTE

# Bump when a feature's definition changes (the name list alone would not show it).
FEATURE_VERSION = 1

RETURN_HORIZONS = (1, 5, 15, 60)
VOL_WINDOWS = (15, 60)
ER_WINDOWS = (15, 60)
STRATEGY_NAMES = ("momentum", "mean_reversion", "breakout")

_MIN_PER_DAY = 1440

# rows a market feature reads at and behind its own bar (the longest trailing window, + 1)
LOOKBACK = max(*RETURN_HORIZONS, *VOL_WINDOWS, *ER_WINDOWS) + 1


def market_feature_names(cfg: Config) -> list[str]:
    """Names of the per-bar market features, in order."""
    ema = [f"dist_ema_{n}" for n in cfg.indicators.ema_lengths]
    return [
        *ema,
        "ema_fast_slow_atr",
        "ema_slow_slope_atr",
        "rsi",
        "atr_pct",
        "dist_vwap_atr",
        "bb_position",
        "bb_width_pct",
        "volume_ratio",
        "range_atr",
        "body_atr",
        *(f"ret_{h}" for h in RETURN_HORIZONS),
        *(f"rv_{w}" for w in VOL_WINDOWS),
        "rv_ratio",
        *(f"er_{w}" for w in ER_WINDOWS),
        "tod_sin",
        "tod_cos",
    ]


SIGNAL_FEATURE_NAMES: tuple[str, ...] = (
    *(f"strategy_{s}" for s in STRATEGY_NAMES),
    "side",
    "is_limit",
    "entry_offset_atr",
    "stop_atr",
    "payoff",
    "side_ret_15",
    "side_dist_ema_slow",
    "side_rsi",
)


def feature_names(cfg: Config) -> list[str]:
    """The ordered feature vector of a signal: market features, then the signal's own."""
    return [*market_feature_names(cfg), *SIGNAL_FEATURE_NAMES]


def feature_hash(names: Sequence[str]) -> str:
    """Short hash of the version and ordered names: equal hashes = the same feature schema."""
    text = f"v{FEATURE_VERSION}:" + ",".join(names)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _col(cols: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return np.asarray(cols[name], dtype=np.float64)
    except KeyError:
        raise KeyError(
            f"features: input lacks column {name!r} (prepare the bars with scalper.backtest.prepare)"
        ) from None


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b is not > 0 (no inf in a feature)."""
    out = np.full(a.shape[0], np.nan)
    ok = b > 0
    np.divide(a, b, out=out, where=ok)
    return out


def efficiency_ratio(close: np.ndarray, window: int) -> np.ndarray:
    """|close[t] - close[t-w]| / sum of |1-bar changes| over (t-w, t]: 1 = a straight line,
    ~0 = noise. Trailing (row t uses rows t-w..t); NaN for the first w rows."""
    net = np.abs(close - shift(close, window))
    path = pd.Series(np.abs(np.diff(close, prepend=np.nan))).rolling(window).sum().to_numpy()
    return _ratio(net, path)


def realised_vol(close: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of 1-bar log returns over the trailing `window` bars (row t included)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(close / shift(close, 1))
    return pd.Series(r).rolling(window).std(ddof=0).to_numpy()


def bar_features(cols: Mapping[str, np.ndarray], cfg: Config) -> dict[str, np.ndarray]:
    """Market features of every bar (rows <= i only); names = market_feature_names(cfg)."""
    ind = cfg.indicators
    close = _col(cols, "close")
    atr = _col(cols, f"atr_{ind.atr_length}")
    out: dict[str, np.ndarray] = {}
    for n in ind.ema_lengths:
        out[f"dist_ema_{n}"] = _ratio(close - _col(cols, f"ema_{n}"), atr)
    fast, slow = sorted(ind.ema_lengths)[:2] if len(ind.ema_lengths) >= 2 else (ind.ema_lengths[0],) * 2
    ema_fast, ema_slow = _col(cols, f"ema_{fast}"), _col(cols, f"ema_{slow}")
    out["ema_fast_slow_atr"] = _ratio(ema_fast - ema_slow, atr)
    out["ema_slow_slope_atr"] = _ratio(ema_slow - shift(ema_slow, 5), atr)
    out["rsi"] = _col(cols, f"rsi_{ind.rsi_length}")
    out["atr_pct"] = 100.0 * _ratio(atr, close)
    out["dist_vwap_atr"] = _ratio(close - _col(cols, "session_vwap"), atr)
    lower, mid, upper = _col(cols, "bb_lower"), _col(cols, "bb_mid"), _col(cols, "bb_upper")
    out["bb_position"] = _ratio(close - mid, upper - lower)
    out["bb_width_pct"] = 100.0 * _ratio(upper - lower, mid)
    out["volume_ratio"] = _ratio(_col(cols, "volume"), _col(cols, f"volume_sma_{ind.volume_sma_length}"))
    high, low, open_ = _col(cols, "high"), _col(cols, "low"), _col(cols, "open")
    out["range_atr"] = _ratio(high - low, atr)
    out["body_atr"] = _ratio(close - open_, atr)
    with np.errstate(divide="ignore", invalid="ignore"):
        for h in RETURN_HORIZONS:
            out[f"ret_{h}"] = 1e4 * np.log(close / shift(close, h))  # basis points
    for w in VOL_WINDOWS:
        out[f"rv_{w}"] = 1e4 * realised_vol(close, w)
    out["rv_ratio"] = _ratio(out[f"rv_{VOL_WINDOWS[0]}"], out[f"rv_{VOL_WINDOWS[-1]}"])
    for w in ER_WINDOWS:
        out[f"er_{w}"] = efficiency_ratio(close, w)
    minute = (np.asarray(cols["timestamp"], dtype=np.int64) // NS_PER_MINUTE) % _MIN_PER_DAY
    angle = 2.0 * np.pi * minute / _MIN_PER_DAY
    out["tod_sin"], out["tod_cos"] = np.sin(angle), np.cos(angle)
    return out


def signal_features(
    market: Mapping[str, np.ndarray],
    rows: np.ndarray,
    *,
    strategy: Sequence[str],
    side: np.ndarray,
    entry: np.ndarray,
    limit_price: np.ndarray,
    stop_loss: np.ndarray,
    take_profit: np.ndarray,
    close: np.ndarray,
    atr: np.ndarray,
    cfg: Config,
) -> pd.DataFrame:
    """The feature frame of signals at bar `rows` (columns = feature_names(cfg), in order).

    `side` +1/-1; `entry` the expected entry (limit price, or the close for a market order);
    `limit_price` NaN for market orders; `close`/`atr` at the signal rows.
    """
    rows = np.asarray(rows, dtype=np.int64)
    frame = {name: np.asarray(market[name])[rows] for name in market_feature_names(cfg)}
    strategy = np.asarray(strategy, dtype=object)
    unknown = sorted(set(strategy.tolist()) - set(STRATEGY_NAMES))
    if unknown:
        raise ValueError(f"signal_features: strategy {unknown[0]!r} is not one of {STRATEGY_NAMES}")
    for name in STRATEGY_NAMES:
        frame[f"strategy_{name}"] = (strategy == name).astype(np.float64)
    side = np.asarray(side, dtype=np.float64)
    stop_dist = np.abs(entry - stop_loss)
    frame["side"] = side
    frame["is_limit"] = np.isfinite(limit_price).astype(np.float64)
    frame["entry_offset_atr"] = side * _ratio(entry - close, atr)
    frame["stop_atr"] = _ratio(stop_dist, atr)
    frame["payoff"] = _ratio(np.abs(take_profit - entry), stop_dist)
    frame["side_ret_15"] = side * frame["ret_15"]
    slow = sorted(cfg.indicators.ema_lengths)[min(2, len(cfg.indicators.ema_lengths) - 1)]
    frame["side_dist_ema_slow"] = side * frame[f"dist_ema_{slow}"]
    frame["side_rsi"] = side * (frame["rsi"] - 50.0)
    return pd.DataFrame(frame, columns=feature_names(cfg))
