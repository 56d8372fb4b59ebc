"""Breakout: close beyond the previous N bars' range on heavy volume.

Long when close > max(high of the previous `lookback_bars` bars, NOT this bar) and volume >
volume_multiple x volume SMA (the `volume_sma_{n}` indicator, n = indicators.volume_sma_length);
short when close < min(low of the previous N bars) with the same volume test (both strict).
The first N rows have no N-bar range (NaN). Market order; stop = close -/+ stop_atr x ATR,
target = close +/- target_atr x ATR (ATR must be > 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from scalper.config import Config
from scalper.strategies.base import SignalArrays, Strategy, market_arrays, side_from


def prior_max(x: np.ndarray, n: int) -> np.ndarray:
    """Row i: max of x[i-n .. i-1] (the n rows BEFORE i); NaN for i < n or when any is NaN."""
    return _prior(x, n, np.maximum)


def prior_min(x: np.ndarray, n: int) -> np.ndarray:
    """Row i: min of x[i-n .. i-1] (the n rows BEFORE i); NaN for i < n or when any is NaN."""
    return _prior(x, n, np.minimum)


def _prior(x: np.ndarray, n: int, op: np.ufunc) -> np.ndarray:
    # one whole-array ufunc per lag (n of them, none per row); np.maximum/minimum propagate NaN
    size = x.shape[0]
    out = np.full(size, np.nan)
    if size <= n:
        return out
    acc = x[n - 1 : size - 1].copy()  # lag 1 for rows n..size-1
    for lag in range(2, n + 1):
        op(acc, x[n - lag : size - lag], out=acc)
    out[n:] = acc
    return out


class Breakout(Strategy):
    name: ClassVar[str] = "breakout"
    reason_names: ClassVar[tuple[str, ...]] = ("none", "range_break_up", "range_break_down")
    reasons: ClassVar[tuple[str, ...]] = (
        "",
        "close {close:.2f} > {n}-bar high {level:.2f}, volume {volume:g} > {k:g} x sma {volume_sma:.1f}",
        "close {close:.2f} < {n}-bar low {level:.2f}, volume {volume:g} > {k:g} x sma {volume_sma:.1f}",
    )

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        s = self.section
        self.n = int(s.lookback_bars)
        self.k = float(s.volume_multiple)
        self.stop_atr, self.target_atr = float(s.stop_atr), float(s.target_atr)
        self.vol_sma_col = f"volume_sma_{cfg.indicators.volume_sma_length}"
        self.high_key = f"high_max_{self.n}"
        self.low_key = f"low_min_{self.n}"

    def columns(self) -> list[str]:
        return ["close", "high", "low", "volume", self.vol_sma_col, self.atr_col]

    def lookback(self) -> int:
        return self.n + 1  # the N previous bars and this one

    def rule(self, cols: Mapping[str, np.ndarray]) -> SignalArrays:
        close = np.asarray(cols["close"], dtype=np.float64)
        high = np.asarray(cols["high"], dtype=np.float64)
        low = np.asarray(cols["low"], dtype=np.float64)
        volume = np.asarray(cols["volume"], dtype=np.float64)
        vol_sma = np.asarray(cols[self.vol_sma_col], dtype=np.float64)
        atr = np.asarray(cols[self.atr_col], dtype=np.float64)
        hi = prior_max(high, self.n)
        # every comparison with NaN is False: missing inputs give no signal
        heavy = (volume > self.k * vol_sma) & (atr > 0.0)
        long = (close > hi) & heavy
        extra = {self.high_key: hi}
        if self.allow_short:
            lo = prior_min(low, self.n)
            short = (close < lo) & heavy
            extra[self.low_key] = lo
        else:
            short = np.zeros_like(long)
        return market_arrays(side_from(long, short), close, atr, self.stop_atr, self.target_atr, extra)

    def reason_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        hi = values[self.high_key]
        long = values["close"] > hi
        return {
            "close": values["close"],
            "n": self.n,
            "level": hi if long else values[self.low_key],
            "volume": values["volume"],
            "k": self.k,
            "volume_sma": values[self.vol_sma_col],
        }
