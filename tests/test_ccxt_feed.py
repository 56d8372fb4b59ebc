"""CcxtTradeFeed against the local Binance-protocol exchange: real ccxt.pro websocket + REST.

Time is a manual clock shared by the exchange (trade timestamps) and the feed (heartbeats),
so a minute passes when the test says so and the bars are known exactly.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from exchange import LocalExchange

from scalper.config import Config, with_overrides
from scalper.feeds import make_feed
from scalper.feeds.ccxt import CcxtTradeFeed
from scalper.pipeline import MarketDataPipeline
from scalper.types import Bar, Heartbeat, TickBatch

T0 = 1_700_000_040.0  # a minute boundary (seconds)


class ManualClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t


def wait_for(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Session:
    """A feed over the local exchange, consumed by a MarketDataPipeline in a thread."""

    def __init__(self, ex: LocalExchange, clock: ManualClock, **overrides):
        self.cfg = with_overrides(
            Config(),
            {
                "symbols": ["BTCUSDT"],
                "feed.kind": "ccxt",
                "feed.ccxt.urls": ex.ccxt_urls(),
                "feed.ccxt.watermark_lag_ms": 200,
                "feed.ccxt.backoff_initial_s": 0.05,
                "feed.ccxt.backoff_max_s": 0.2,
                **overrides,
            },
        )
        self.ex, self.clock = ex, clock
        self.feed = CcxtTradeFeed(self.cfg.feed.ccxt, self.cfg.symbols, now=clock)
        self.feed.start()
        self.pipeline = MarketDataPipeline(self.cfg, started_ns=self.feed.started_ns)
        self.events: list = []
        self.bars: list[Bar] = []
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()

    def _consume(self) -> None:
        for event in self.feed:
            self.events.append(event)
            self.bars.extend(self.pipeline.on_event(event))

    def trade(self, t: float, price: float, qty: float) -> int:
        self.clock.set(t)
        return self.ex.add_trade("BTCUSDT", price, qty)

    def received(self, tid: int) -> None:
        wait_for(lambda: (self.feed.received("BTCUSDT") or 0) >= tid, what=f"trade {tid} to reach the feed")

    def close_minute(self, minute: int, bars: int) -> None:
        self.clock.set(T0 + 60 * (minute + 1) + 1.0)
        wait_for(lambda: len(self.bars) >= bars, what=f"{bars} bars")

    def close(self) -> None:
        self.feed.close()
        self.thread.join(10)

    def delivered_ids(self) -> list[int]:
        return [int(i) for e in self.events if isinstance(e, TickBatch) for i in e.trade_id]


def expected_bar(trades: list[tuple[float, float, float]], minute: int) -> tuple:
    rows = [(p, q) for t, p, q in trades if T0 + 60 * minute <= t < T0 + 60 * (minute + 1)]
    prices = [p for p, _ in rows]
    return (
        prices[0],
        max(prices),
        min(prices),
        prices[-1],
        pytest.approx(sum(q for _, q in rows)),
        len(rows),
    )


def as_tuple(bar: Bar) -> tuple:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades)


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def ex(clock):
    with LocalExchange(clock=clock) as server:
        yield server


def play(s: Session, trades: list[tuple[float, float, float]]) -> int:
    tid = 0
    for t, p, q in trades:
        tid = s.trade(t, p, q)
    return tid


def minute_trades(minute: int, n: int = 20, base: float = 100.0) -> list[tuple[float, float, float]]:
    rng = np.random.default_rng(minute)
    times = np.sort(rng.uniform(0.5, 59.0, n))
    prices = np.round(base + np.cumsum(rng.normal(0, 0.02, n)), 2)
    return [
        (T0 + 60 * minute + float(t), float(p), 0.01 * (i + 1))
        for i, (t, p) in enumerate(zip(times, prices, strict=True))
    ]


def test_live_trades_become_tick_batches_and_exact_bars(ex, clock):
    s = Session(ex, clock)
    try:
        wait_for(lambda: ex.subscribers() == 1, what="the websocket subscription")
        trades = minute_trades(0) + minute_trades(1)
        s.received(play(s, trades[:20]))
        s.close_minute(0, bars=1)
        s.received(play(s, trades[20:]))
        s.close_minute(1, bars=2)
    finally:
        s.close()
    assert [as_tuple(b) for b in s.bars] == [expected_bar(trades, 0), expected_bar(trades, 1)]
    assert [b.ts for b in s.bars] == [int(T0 * 1e9), int((T0 + 60) * 1e9)]
    assert s.delivered_ids() == list(range(1, 41))
    beats = [e.ts for e in s.events if isinstance(e, Heartbeat)]
    assert beats == sorted(set(beats)) and all(b % (100 * 1_000_000) == 0 for b in beats)
    batches = [e for e in s.events if isinstance(e, TickBatch)]
    assert all(e.symbol == "BTCUSDT" and e.ts.dtype == np.int64 for e in batches)


def test_disconnect_mid_minute_is_backfilled_without_missing_or_duplicate_trades(ex, clock):
    s = Session(ex, clock)
    try:
        wait_for(lambda: ex.subscribers() == 1, what="the websocket subscription")
        trades = minute_trades(0, n=30)
        s.received(play(s, trades[:10]))
        ex.pause_stream()  # what happens now reaches the exchange but not our socket
        ex.drop_connections()
        play(s, trades[10:20])  # during the outage: REST only
        clock.set(T0 + 59.5)
        wait_for(lambda: s.feed.stats["reconnects"] >= 1, what="the disconnect to be seen")
        wait_for(lambda: ex.subscribers() == 1, what="the reconnect")
        ex.pause_stream(False)
        s.received(play(s, trades[20:]))
        # the heartbeats waited for the backfill: minute 0 closes complete
        s.close_minute(0, bars=1)
        more = minute_trades(1, n=5)
        s.received(play(s, more))
        s.close_minute(1, bars=2)
    finally:
        s.close()
    assert s.delivered_ids() == list(range(1, 36))  # every trade once, in order
    assert s.feed.stats["backfilled"] == 10
    assert as_tuple(s.bars[0]) == expected_bar(trades, 0)
    assert s.pipeline.rejected().get("late", 0) == 0


def test_a_trade_the_stream_skipped_is_fetched_before_the_next_one(ex, clock):
    s = Session(ex, clock)
    try:
        wait_for(lambda: ex.subscribers() == 1, what="the websocket subscription")
        s.received(s.trade(T0 + 1, 100.0, 0.1))
        ex.pause_stream()
        s.trade(T0 + 2, 100.1, 0.2)  # never pushed
        s.trade(T0 + 3, 100.2, 0.3)
        ex.pause_stream(False)
        s.received(s.trade(T0 + 4, 100.3, 0.4))
        s.close_minute(0, bars=1)
    finally:
        s.close()
    assert s.delivered_ids() == [1, 2, 3, 4]
    assert s.feed.stats["backfilled"] == 2
    assert s.bars[0].volume == pytest.approx(1.0)


def test_rest_polling_fallback_after_websocket_failures(ex, clock):
    s = Session(ex, clock, **{"feed.ccxt.poll_fallback_after": 1, "feed.ccxt.poll_interval_s": 0.05})
    try:
        wait_for(lambda: ex.subscribers() == 1, what="the websocket subscription")
        s.received(s.trade(T0 + 1, 100.0, 0.1))
        ex.drop_connections()
        wait_for(lambda: s.feed.stats["polls"] >= 1, what="the REST polling")
        trades = [(T0 + 10, 100.1, 0.2), (T0 + 20, 100.2, 0.3)]
        s.received(play(s, trades))
        s.close_minute(0, bars=1)
    finally:
        s.close()
    assert s.delivered_ids() == [1, 2, 3]
    assert as_tuple(s.bars[0]) == (100.0, 100.2, 100.0, 100.2, pytest.approx(0.6), 3)


def test_poll_transport_alone_makes_the_same_bars(ex, clock):
    s = Session(ex, clock, **{"feed.ccxt.transport": "poll", "feed.ccxt.poll_interval_s": 0.05})
    try:
        trades = minute_trades(0, n=8)
        s.received(play(s, trades))
        s.close_minute(0, bars=1)
    finally:
        s.close()
    assert ex.subscribers() == 0
    assert as_tuple(s.bars[0]) == expected_bar(trades, 0)


def test_make_feed_builds_the_ccxt_feed_without_connecting():
    cfg = with_overrides(Config(), {"symbols": ["BTCUSDT"], "feed.kind": "ccxt"})
    feed = make_feed(cfg)
    assert isinstance(feed, CcxtTradeFeed)
    assert feed.started_ns is None  # nothing started until iterated


def test_an_unknown_symbol_stops_the_start_with_a_clear_error(ex, clock):
    cfg = with_overrides(Config(), {"symbols": ["NOPEUSDT"], "feed.ccxt.urls": ex.ccxt_urls()})
    feed = CcxtTradeFeed(cfg.feed.ccxt, cfg.symbols, now=clock)
    with pytest.raises(Exception, match="NOPEUSDT"):
        feed.start()
