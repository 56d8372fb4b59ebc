"""Momentum: the fast EMA crosses the slow EMA at this bar, with the trend EMA and RSI agreeing.

Long when EMA(fast) > EMA(slow) now and EMA(fast) <= EMA(slow) on the previous bar, close >
EMA(trend) and rsi_long_min < RSI < rsi_long_max (strict). Short mirrored: crosses below,
close < EMA(trend), 100 - rsi_long_max < RSI < 100 - rsi_long_min. Market order; stop =
close -/+ stop_atr x ATR, target = close +/- target_atr x ATR (ATR must be > 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from scalper.config import Config
from scalper.strategies.base import SignalArrays, Strategy, market_arrays, shift, side_from


class Momentum(Strategy):
    name: ClassVar[str] = "momentum"
    reason_names: ClassVar[tuple[str, ...]] = ("none", "ema_cross_up", "ema_cross_down")
    reasons: ClassVar[tuple[str, ...]] = (
        "",
        "ema{fast_n} crossed above ema{slow_n} (gap {gap:+.3g}), close {close:.2f} > "
        "ema{trend_n} {trend:.2f}, rsi {rsi:.1f} in ({rsi_lo:g}, {rsi_hi:g})",
        "ema{fast_n} crossed below ema{slow_n} (gap {gap:+.3g}), close {close:.2f} < "
        "ema{trend_n} {trend:.2f}, rsi {rsi:.1f} in ({rsi_lo_short:g}, {rsi_hi_short:g})",
    )

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        s = self.section
        self.fast_col = f"ema_{s.fast_ema}"
        self.slow_col = f"ema_{s.slow_ema}"
        self.trend_col = f"ema_{s.trend_ema}"
        self.rsi_lo, self.rsi_hi = float(s.rsi_long_min), float(s.rsi_long_max)
        self.stop_atr, self.target_atr = float(s.stop_atr), float(s.target_atr)

    def columns(self) -> list[str]:
        return ["close", self.fast_col, self.slow_col, self.trend_col, self.rsi_col, self.atr_col]

    def lookback(self) -> int:
        return 2  # the cross compares this bar with the previous one

    def rule(self, cols: Mapping[str, np.ndarray]) -> SignalArrays:
        close = np.asarray(cols["close"], dtype=np.float64)
        fast = np.asarray(cols[self.fast_col], dtype=np.float64)
        slow = np.asarray(cols[self.slow_col], dtype=np.float64)
        trend = np.asarray(cols[self.trend_col], dtype=np.float64)
        rsi = np.asarray(cols[self.rsi_col], dtype=np.float64)
        atr = np.asarray(cols[self.atr_col], dtype=np.float64)
        fast_prev, slow_prev = shift(fast), shift(slow)
        # every comparison with NaN is False: missing inputs give no signal
        ok = atr > 0.0
        long = (fast > slow) & (fast_prev <= slow_prev) & (close > trend)
        long &= (rsi > self.rsi_lo) & (rsi < self.rsi_hi) & ok
        if self.allow_short:
            short = (fast < slow) & (fast_prev >= slow_prev) & (close < trend)
            short &= (rsi > 100.0 - self.rsi_hi) & (rsi < 100.0 - self.rsi_lo) & ok
        else:
            short = np.zeros_like(long)
        extra = {f"{self.fast_col}_prev": fast_prev, f"{self.slow_col}_prev": slow_prev}
        return market_arrays(side_from(long, short), close, atr, self.stop_atr, self.target_atr, extra)

    def reason_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        s = self.section
        return {
            "fast_n": s.fast_ema,
            "slow_n": s.slow_ema,
            "trend_n": s.trend_ema,
            "gap": values[self.fast_col] - values[self.slow_col],
            "trend": values[self.trend_col],
            "close": values["close"],
            "rsi": values[self.rsi_col],
            "rsi_lo": self.rsi_lo,
            "rsi_hi": self.rsi_hi,
            "rsi_lo_short": 100.0 - self.rsi_hi,
            "rsi_hi_short": 100.0 - self.rsi_lo,
        }
