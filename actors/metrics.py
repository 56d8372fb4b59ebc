"""The runtime's Prometheus metrics (ray.util.metrics), created inside the actors that update them.

Ray exports them, prefixed `ray_`, on each node's metrics port (scraped by the dashboard's
Prometheus or any other): e.g. `ray_scalper_ticks_in_total{shard="candles-shard-0"}`.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge, Histogram

# bar close -> order submitted, seconds (p50 ~ms on one machine, p99 target <= 100 ms)
LATENCY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]


class ShardMetrics:
    def __init__(self, shard: str):
        tags = {"shard": shard}
        self.ticks_in = Counter("scalper_ticks_in", "ticks received", tag_keys=("shard",))
        self.rejected = Counter("scalper_ticks_rejected", "ticks rejected", tag_keys=("shard", "reason"))
        self.bars = Counter("scalper_bars_closed", "1-minute bars closed", tag_keys=("shard",))
        self.lag = Gauge("scalper_shard_lag_seconds", "batch sent -> processed", tag_keys=("shard",))
        for m in (self.ticks_in, self.rejected, self.bars, self.lag):
            m.set_default_tags(tags)


class StrategyMetrics:
    def __init__(self, strategy: str):
        self.signals = Counter("scalper_signals", "candidate signals", tag_keys=("strategy",))
        self.signals.set_default_tags({"strategy": strategy})


class RiskMetrics:
    def __init__(self) -> None:
        self.decisions = Counter(
            "scalper_risk_decisions", "risk decisions by outcome", tag_keys=("decision",)
        )
        self.halted = Gauge("scalper_risk_halted", "1 while trading is halted")


class ServiceMetrics:
    def __init__(self) -> None:
        self.orders = Counter("scalper_orders", "order transitions by the state entered", tag_keys=("state",))
        self.fills = Counter("scalper_fills", "fills")
        self.open_positions = Gauge("scalper_open_positions", "open positions")
        self.equity = Gauge("scalper_equity", "equity marked at the last closes")
        self.latency = Histogram(
            "scalper_bar_close_to_order_seconds",
            "bar close seen by the feed -> orders of that minute submitted",
            boundaries=LATENCY_BOUNDARIES,
        )
