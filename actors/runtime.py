"""Paper trading on Ray: candle shard actors and a trading service actor (first version).

    feed (driver) --event batches, one call per closed minute--> CandleShard actors
                                                                 (MarketDataPipeline per shard)
                  <--closed bars-----------------------------------
    closed bars of a minute --> TradingService actor (TradingSession: strategies, risk,
                                orders, paper broker, portfolio)

The actors only host domain objects. Calls are batched: the driver buffers feed events and
sends them when a heartbeat crosses a minute boundary (the only moment a bar can close), so a
replay with 1.4 M heartbeats costs a few thousand actor calls. Strategy and risk actors of
their own, metrics and recovery are the next steps (issue 4); this version already gives the
in-process run's trades (tests/test_runtime_ray.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import ray

from scalper.candles import closed_boundary
from scalper.config import Config
from scalper.pipeline import MarketDataPipeline
from scalper.types import Bar, FeedEvent, Heartbeat, TickBatch

log = logging.getLogger(__name__)

NAMESPACE = "scalper"


def shard_symbols(symbols: Sequence[str], shards: int) -> list[list[str]]:
    """Round-robin symbols over `shards` groups (empty groups dropped)."""
    groups: list[list[str]] = [[] for _ in range(max(1, shards))]
    for i, sym in enumerate(symbols):
        groups[i % len(groups)].append(sym)
    return [g for g in groups if g]


@ray.remote(num_cpus=0)
class CandleShard:
    """One process hosting the CandleManagers (and streaming indicators) of several symbols."""

    def __init__(self, cfg: Config, symbols: list[str]):
        self.pipe = MarketDataPipeline(msgspec.structs.replace(cfg, symbols=symbols))

    def on_events(self, events: list[FeedEvent]) -> list[Bar]:
        closed: list[Bar] = []
        for event in events:
            closed += self.pipe.on_event(event)
        return closed

    def stats(self) -> dict[str, Any]:
        return {
            "ticks_in": self.pipe.ticks_in,
            "rejected": dict(self.pipe.rejected()),
            "symbols": {s: m.stats() for s, m in self.pipe.managers.items()},
        }


@ray.remote(num_cpus=0)
class TradingService:
    """Hosts the TradingSession: every decision and order of the run."""

    def __init__(self, cfg: Config):
        from scalper.trading import TradingSession

        self.session = TradingSession(cfg)

    def on_bars(self, closed: list[Bar]) -> int:
        """Closed bars (any minutes, any symbols): handed over one minute at a time."""
        from scalper.pipeline import trade_minutes

        trade_minutes(self.session, closed)
        return len(self.session.trades)

    def trades(self) -> list:
        return self.session.trades

    def signals(self) -> list:
        return self.session.records


def run_paper_on_ray(cfg: Config, shards: int = 2) -> dict[str, Any]:
    """Replay the configured feed through shard actors into the trading service actor."""
    from scalper.feeds import make_feed

    feed = make_feed(cfg)
    groups = shard_symbols(cfg.symbols, shards)
    owner = {sym: i for i, group in enumerate(groups) for sym in group}
    shard_actors = [
        CandleShard.options(name=f"candles-shard-{i}", namespace=NAMESPACE).remote(cfg, group)
        for i, group in enumerate(groups)
    ]
    service = TradingService.options(name="trading-service", namespace=NAMESPACE).remote(cfg)
    t0 = time.perf_counter()
    pending: list[list[FeedEvent]] = [[] for _ in groups]
    dirty = [False] * len(groups)  # ticks sent to the shard since its last heartbeat
    delay = cfg.candles.boundary_delay_ms * 1_000_000
    boundary = None
    calls = 0
    try:
        for event in feed:
            if type(event) is Heartbeat:
                b = closed_boundary(event.ts, delay)
                crossed = boundary is None or b > boundary
                # a shard needs a heartbeat only as the clock of its ticks or to close a minute
                # (any other heartbeat is a no-op in MarketDataPipeline): most are not sent
                for i, buf in enumerate(pending):
                    if dirty[i] or crossed:
                        buf.append(event)
                        dirty[i] = False
                if crossed:
                    boundary = b  # a minute may have closed: ship the batches now
                    calls += _flush(shard_actors, pending, service)
            elif type(event) is TickBatch or hasattr(event, "symbol"):
                i = owner.get(event.symbol, 0)
                pending[i].append(event)
                dirty[i] = True
        calls += _flush(shard_actors, pending, service)
        trades = ray.get(service.trades.remote())
        signals = ray.get(service.signals.remote())
        stats = ray.get([s.stats.remote() for s in shard_actors])
    finally:
        for actor in [*shard_actors, service]:
            ray.kill(actor)
    return {
        "trades": trades,
        "signals": signals,
        "shards": groups,
        "shard_stats": stats,
        "actor_calls": calls,
        "seconds": time.perf_counter() - t0,
    }


def _flush(shards: list, pending: list[list[FeedEvent]], service) -> int:
    refs = [shard.on_events.remote(buf) for shard, buf in zip(shards, pending, strict=True) if buf]
    if not refs:
        return 0
    closed = [bar for bars in ray.get(refs) for bar in bars]
    for buf in pending:
        buf.clear()
    if closed:
        closed.sort(key=lambda b: b.ts)
        ray.get(service.on_bars.remote(closed))
    return len(refs) + (1 if closed else 0)
