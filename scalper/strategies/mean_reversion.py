"""Mean reversion: close outside a Bollinger band, beyond session VWAP, RSI extreme.

Long when close < bb_lower, close < session_vwap and RSI < rsi_oversold (strict): a LIMIT buy
at this bar's bb_lower, expiring after limit_expiry_bars, target = bb_mid (or session_vwap
when `target == "vwap"`), stop = limit - stop_atr x ATR. Short mirrored: close > bb_upper,
close > session_vwap, RSI > rsi_overbought; limit sell at bb_upper, stop = limit + stop_atr x
ATR. No signal when the target is not strictly on the profitable side of the limit price, or
ATR is not > 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from scalper.config import Config
from scalper.strategies.base import SignalArrays, Strategy, reason_from, side_from


class MeanReversion(Strategy):
    name: ClassVar[str] = "mean_reversion"
    reason_names: ClassVar[tuple[str, ...]] = ("none", "oversold_below_band", "overbought_above_band")
    reasons: ClassVar[tuple[str, ...]] = (
        "",
        "close {close:.2f} < bb_lower {band:.2f} and < vwap {vwap:.2f}, rsi {rsi:.1f} < {rsi_bound:g}: "
        "limit buy at the band, target {target_name} {target:.2f}",
        "close {close:.2f} > bb_upper {band:.2f} and > vwap {vwap:.2f}, rsi {rsi:.1f} > {rsi_bound:g}: "
        "limit sell at the band, target {target_name} {target:.2f}",
    )

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        s = self.section
        self.oversold, self.overbought = float(s.rsi_oversold), float(s.rsi_overbought)
        self.expiry = int(s.limit_expiry_bars)
        self.stop_atr = float(s.stop_atr)
        self.target_col = "session_vwap" if s.target == "vwap" else "bb_mid"

    def columns(self) -> list[str]:
        return ["close", "bb_lower", "bb_mid", "bb_upper", "session_vwap", self.rsi_col, self.atr_col]

    def lookback(self) -> int:
        return 1  # this bar only

    def rule(self, cols: Mapping[str, np.ndarray]) -> SignalArrays:
        close = np.asarray(cols["close"], dtype=np.float64)
        lower = np.asarray(cols["bb_lower"], dtype=np.float64)
        upper = np.asarray(cols["bb_upper"], dtype=np.float64)
        vwap = np.asarray(cols["session_vwap"], dtype=np.float64)
        rsi = np.asarray(cols[self.rsi_col], dtype=np.float64)
        atr = np.asarray(cols[self.atr_col], dtype=np.float64)
        target = np.asarray(cols[self.target_col], dtype=np.float64)
        # every comparison with NaN is False: missing inputs give no signal
        ok = atr > 0.0
        long = (close < lower) & (close < vwap) & (rsi < self.oversold) & (target > lower) & ok
        if self.allow_short:
            short = (close > upper) & (close > vwap) & (rsi > self.overbought) & (target < upper) & ok
        else:
            short = np.zeros_like(long)
        side = side_from(long, short)
        on = side != 0
        limit = np.where(side > 0, lower, np.where(side < 0, upper, np.nan))
        stop = limit - side.astype(np.float64) * (self.stop_atr * atr)  # NaN where no signal
        return SignalArrays(
            side=side,
            limit_price=limit,
            stop_loss=stop,
            take_profit=np.where(on, target, np.nan),
            expiry_bars=np.where(on, np.int32(self.expiry), np.int32(0)).astype(np.int32, copy=False),
            reason=reason_from(side),
        )

    def reason_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        long = values["close"] < values["bb_lower"]
        return {
            "close": values["close"],
            "band": values["bb_lower"] if long else values["bb_upper"],
            "vwap": values["session_vwap"],
            "rsi": values[self.rsi_col],
            "rsi_bound": self.oversold if long else self.overbought,
            "target_name": "vwap" if self.target_col == "session_vwap" else "bb_mid",
            "target": values[self.target_col],
        }
