"""Helpers of the live-trading tests: a clock the test moves, configs, bars, decisions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from exchange.server import API_KEY, SECRET, LocalExchange
from scalper.config import Config, with_overrides
from scalper.trading import Decision
from scalper.types import NS_PER_MINUTE, Bar, OrderIntent, OrderType, Side, Signal

ENV = {"SCALPER_BINANCE_API_KEY": API_KEY, "SCALPER_BINANCE_SECRET": SECRET}
MIN = NS_PER_MINUTE
T0 = 1_700_000_040  # seconds: a minute boundary


class Clock:
    """The exchange's clock, moved by the test: minute `t` (ns) is decided at its close."""

    def __init__(self, t: float = T0 + 5):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def after(self, minute_ns: int, seconds: float = 5.0) -> int:
        """Set the clock `seconds` after the close of minute `minute_ns`; returns the minute."""
        self.t = (minute_ns + MIN) / 1e9 + seconds
        return minute_ns


def live_cfg(ex: LocalExchange, tmp_path: Path, brackets: str = "service", **extra) -> Config:
    return with_overrides(
        Config(),
        {
            "symbols": ["BTCUSDT"],
            "feed.kind": "ccxt",
            "feed.ccxt.urls": ex.ccxt_urls(),
            "feed.ccxt.backoff_initial_s": 0.01,
            "feed.ccxt.backoff_max_s": 0.02,
            "feed.ccxt.timeout_ms": 2000,
            "feed.ccxt.order_retries": 1,
            "feed.ccxt.brackets": brackets,
            "execution.broker": "ccxt",
            "store.runs_dir": str(tmp_path / "runs"),
            **extra,
        },
    )


def bar(t: int, low: float = 99.0, high: float = 101.0, close: float = 100.0) -> Bar:
    return Bar("BTCUSDT", t, 100.0, high, low, close, 10.0, 10, 100.0)


def decision(cid: str, t: int, qty: float = 0.5, otype: OrderType = OrderType.MARKET, **kw) -> Decision:
    """An approved long at the close of minute `t`: stop 95, target 110."""
    limit = kw.get("limit_price")
    sig = Signal("BTCUSDT", t, "momentum", Side.BUY, otype, 95.0, 110.0, limit_price=limit)
    intent = OrderIntent(cid, "BTCUSDT", Side.BUY, qty, otype, 95.0, 110.0, strategy="momentum", **kw)
    return Decision(sig, 100.0, True, "approved", "", intent)


def posted(ex: LocalExchange) -> Counter[str]:
    """How many times each client order id was POSTed (orders and OCO legs)."""
    out: Counter[str] = Counter(q["newClientOrderId"] for q in ex.requests_to("POST", "/api/v3/order"))
    for q in ex.requests_to("POST", "/api/v3/orderList/oco"):
        out.update([q["aboveClientOrderId"], q["belowClientOrderId"]])
    return out
