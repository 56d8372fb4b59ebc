"""CcxtTradeFeed: live trades from an exchange through ccxt, as the feed contract's events.

Same events as every feed (see `base.py`): per `batch_ms` interval one `TickBatch` per symbol
that traded, then `Heartbeat(end)`. Event time is the exchange's trade time; the heartbeat
clock is the wall clock (`now`, injectable; `clock_speed` makes it a simulated exchange's
fast clock) minus `watermark_lag_ms`, the time a trade may take to reach us. The iterator is synchronous; the network runs in a background thread with
its own asyncio loop. `close()` stops it (the iterator then ends).

Per symbol, in that thread:

* websocket (default): ccxt.pro `watch_trades`. On Binance the `@aggTrade` stream is used, so
  stream ids are the ids REST `fetch_trades` (aggTrades) returns: consecutive integers.
* A disconnect (any ccxt network error) freezes the symbol's heartbeat clock where it was,
  waits (`backoff_initial_s`, doubling up to `backoff_max_s`), fetches by REST every trade
  after the last one received (the gap: `fetchTrades` from id last + 1, pages of 1000), then
  watches again. Heartbeats wait for the symbol meanwhile, so backfilled trades land in
  minutes that are still open: the bars are exact, with no missing or duplicate trade. A
  symbol down for longer than `max_stall_s` is not waited for any more (its gap stays).
* An id jump on the stream (a trade lost between the REST backfill and the new subscription)
  is backfilled the same way before the newer trade is delivered.
* After `poll_fallback_after` consecutive websocket failures (or with transport "poll") the
  symbol is polled by REST every `poll_interval_s`; its heartbeat clock is then the start time
  of the last complete poll.

Trades older than the feed's start are not delivered (the first, partial minute is dropped by
the CandleManager anyway: pass `started_ns` to it). A trade that still arrives after its
interval's heartbeat is delivered in the next batch; the CandleManager decides (late or not).
Unlike a replay, a live feed can be iterated only once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalper.config import CcxtConfig
from scalper.execution.ccxt import clock_of, make_exchange, market_symbol
from scalper.feeds.base import NS_PER_MS, Chunk, Feed, FeedError
from scalper.types import FeedEvent, Heartbeat, TickBatch

log = logging.getLogger(__name__)

PAGE = 1000  # trades per REST page (Binance's maximum)


@dataclass
class _SymbolState:
    """One symbol's stream: what was delivered, and how far its data is complete."""

    symbol: str
    market: str = ""  # ccxt unified symbol
    last_id: int | None = None
    last_ts_ms: int | None = None
    live: bool = False  # connected and caught up: complete up to now - lag
    frozen_ns: int = 0  # complete up to here while not live
    down_since: float | None = None  # wall time the symbol stopped being live
    mode: str = "websocket"
    buffer: list[tuple[int, float, float, int]] = field(default_factory=list)  # ts ns, price, size, id
    recent_ids: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))


class CcxtTradeFeed(Feed):
    """Live trades of `symbols` from the exchange of `ccfg` (see the module docstring)."""

    kind = "ticks"

    def __init__(
        self,
        ccfg: CcxtConfig,
        symbols: Sequence[str],
        *,
        now: Callable[[], float] | None = None,
        exchange_factory: Callable[[], Any] | None = None,
    ):
        super().__init__(symbols, batch_ms=ccfg.batch_ms)
        self.ccfg = ccfg
        self._now = now if now is not None else clock_of(ccfg)  # the wall clock unless simulated
        self._factory = exchange_factory or (lambda: make_exchange(ccfg, pro=True))
        self._lag_ns = ccfg.watermark_lag_ms * NS_PER_MS
        self._states = {s: _SymbolState(s, mode=ccfg.transport) for s in self.symbols}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._iterated = False
        self.started_ns: int | None = None
        self.stats = {
            "received": 0,
            "duplicates": 0,
            "backfilled": 0,
            "reconnects": 0,
            "polls": 0,
            "stalls": 0,
        }

    def _chunks(self) -> Iterator[Chunk]:  # the live feed does not use the replay machinery
        raise NotImplementedError

    def _now_ns(self) -> int:
        return int(self._now() * 1e9)

    # ----------------------------------------------------------------------- lifecycle

    def start(self, timeout_s: float = 30.0) -> None:
        """Connect (load markets, map symbols) and start receiving; FeedError if it cannot."""
        if self._thread is not None:
            return
        self.started_ns = self._now_ns()
        for st in self._states.values():
            st.frozen_ns = self.started_ns - self._lag_ns
        self._thread = threading.Thread(target=self._thread_main, name="ccxt-feed", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.close()
            raise FeedError(f"feed.ccxt: {self.ccfg.exchange} did not answer within {timeout_s:.0f} s")
        if self._error is not None:
            self.close()
            raise FeedError(
                f"feed.ccxt: cannot start on {self.ccfg.exchange}: {self._error}"
            ) from self._error

    def close(self) -> None:
        """Stop receiving and end the iteration (idempotent)."""
        self._closed.set()
        self._wake.set()
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def received(self, symbol: str) -> int | None:
        """The last trade id received for `symbol` (None before the first)."""
        with self._lock:
            return self._states[symbol].last_id

    # ----------------------------------------------------------------------- the iterator

    def __iter__(self) -> Iterator[FeedEvent]:
        if self._iterated:
            raise FeedError("feed.ccxt: a live feed can be iterated only once")
        self._iterated = True
        self.start()
        return self._events_live()

    def _watermark(self) -> int:
        """Every trade with ts below this (ns) has been received, for every symbol."""
        now = self._now()
        clock = int(now * 1e9) - self._lag_ns
        mark = clock
        with self._lock:
            for st in self._states.values():
                if st.live:
                    continue
                if st.down_since is not None and now - st.down_since > self.ccfg.max_stall_s:
                    if st.frozen_ns < clock:
                        log.warning(
                            "%s: down for %.0f s, heartbeats go on without it", st.symbol, now - st.down_since
                        )
                        self.stats["stalls"] += 1
                        st.frozen_ns = clock
                    continue
                mark = min(mark, st.frozen_ns)
        return mark

    def _events_live(self) -> Iterator[FeedEvent]:
        B = self.batch_ns
        assert self.started_ns is not None
        k = self.started_ns // B
        while True:
            end = (k + 1) * B
            while self._watermark() < end:
                if self._error is not None:
                    raise FeedError(f"feed.ccxt: {self._error}") from self._error
                if self._closed.is_set():
                    return
                self._wake.wait(0.02)
                self._wake.clear()
            yield from self._take(end)
            yield Heartbeat(end)
            k += 1

    def _take(self, end: int) -> list[TickBatch]:
        out = []
        with self._lock:
            for sym in self.symbols:
                st = self._states[sym]
                if not st.buffer:
                    continue
                now = [t for t in st.buffer if t[0] < end]
                if not now:
                    continue
                st.buffer = [t for t in st.buffer if t[0] >= end]
                now.sort(key=lambda t: t[0])  # stable: arrival order within a timestamp
                cols = list(zip(*now, strict=True))
                out.append(
                    TickBatch(
                        sym,
                        np.asarray(cols[0], dtype=np.int64),
                        np.asarray(cols[1], dtype=np.float64),
                        np.asarray(cols[2], dtype=np.float64),
                        np.asarray(cols[3], dtype=np.int64),
                    )
                )
        return out

    # ----------------------------------------------------------------------- network thread

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # surfaced to the iterator
            log.exception("ccxt feed stopped")
            self._error = e
        finally:
            self._ready.set()
            self._closed.set()
            self._wake.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._closed.is_set():
            return
        exchange = self._factory()
        try:
            try:
                await exchange.load_markets()
                for st in self._states.values():
                    st.market = market_symbol(exchange, self.ccfg, st.symbol)
            except Exception as e:
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            tasks = [asyncio.create_task(self._guarded(exchange, st)) for st in self._states.values()]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await exchange.close()

    def _backoff(self, failures: int) -> float:
        return min(self.ccfg.backoff_max_s, self.ccfg.backoff_initial_s * 2 ** max(0, failures - 1))

    def _go_down(self, st: _SymbolState) -> None:
        with self._lock:
            if st.live:
                st.live = False
                st.frozen_ns = self._now_ns() - self._lag_ns
                st.down_since = self._now()

    def _go_live(self, st: _SymbolState) -> None:
        with self._lock:
            st.live = True
            st.down_since = None
        self._wake.set()

    async def _guarded(self, exchange: Any, st: _SymbolState) -> None:
        """Run one symbol; an unexpected error stops the feed (the iterator raises it)."""
        try:
            await self._run_symbol(exchange, st)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("%s: trade feed failed", st.symbol)
            self._error = e
            self._wake.set()

    async def _run_symbol(self, exchange: Any, st: _SymbolState) -> None:
        import ccxt

        failures = 0
        params = {"name": "aggTrade"} if exchange.id.startswith("binance") else {}
        while True:
            if st.mode == "poll":
                started = self._now_ns()
                try:
                    await self._fetch_after(exchange, st)
                    self.stats["polls"] += 1
                    with self._lock:
                        st.frozen_ns = max(st.frozen_ns, started - self._lag_ns)
                    self._wake.set()
                except ccxt.OperationFailed as e:
                    log.warning("%s: poll failed (%s)", st.symbol, type(e).__name__)
                await asyncio.sleep(self.ccfg.poll_interval_s)
                continue
            try:
                if not st.live:
                    if st.last_id is not None:
                        await self._fetch_after(exchange, st)  # the gap of the disconnect
                    self._go_live(st)
                trades = await exchange.watch_trades(st.market, None, None, dict(params))
                failures = 0
                await self._accept(exchange, st, trades, backfill=True)
            except (ccxt.NetworkError, ccxt.ExchangeError) as e:
                self._go_down(st)
                failures += 1
                self.stats["reconnects"] += 1
                if self.ccfg.poll_fallback_after and failures >= self.ccfg.poll_fallback_after:
                    log.warning("%s: %d websocket failures, polling by REST from now on", st.symbol, failures)
                    st.mode = "poll"
                    continue
                delay = self._backoff(failures)
                log.warning(
                    "%s: trade stream lost (%s: %s); reconnect in %.2f s",
                    st.symbol,
                    type(e).__name__,
                    e,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _accept(
        self, exchange: Any, st: _SymbolState, trades: list[dict[str, Any]], backfill: bool
    ) -> None:
        """Deliver new trades in id order, backfilling an id jump first (when ids are integers)."""
        for t in sorted(trades, key=lambda x: _int_id(x) or 0):
            tid = _int_id(t)
            if tid is None:
                raise FeedError(f"feed.ccxt: {exchange.id} trade ids are not integers ({t.get('id')!r})")
            if st.last_id is not None and tid <= st.last_id:
                self.stats["duplicates"] += 1
                continue
            if backfill and st.last_id is not None and tid > st.last_id + 1:
                log.info(
                    "%s: trades %d..%d missing from the stream, fetching them",
                    st.symbol,
                    st.last_id + 1,
                    tid - 1,
                )
                await self._fetch_after(exchange, st, until_id=tid - 1)
                if tid <= (st.last_id or 0):
                    continue
            self._deliver(st, [(tid, t)])

    def _deliver(
        self, st: _SymbolState, trades: list[tuple[int, dict[str, Any]]], backfilled: bool = False
    ) -> None:
        start = self.started_ns or 0
        with self._lock:
            for tid, t in trades:
                ts_ms = int(t["timestamp"])
                st.last_id, st.last_ts_ms = tid, ts_ms
                ts = ts_ms * NS_PER_MS
                if ts >= start:
                    st.buffer.append((ts, float(t["price"]), float(t["amount"]), tid))
                self.stats["received"] += 1
                if backfilled:
                    self.stats["backfilled"] += 1

    async def _fetch_after(self, exchange: Any, st: _SymbolState, until_id: int | None = None) -> None:
        """REST: every trade after the last delivered one (up to `until_id`), in pages."""
        fetched = 0
        while fetched < self.ccfg.backfill_max_trades:
            params: dict[str, Any] = {}
            since = None
            if st.last_id is not None:
                params["fromId"] = st.last_id + 1
            else:
                since = (self.started_ns or self._now_ns()) // NS_PER_MS
            page = await exchange.fetch_trades(st.market, since, PAGE, params)
            new = [
                (tid, t)
                for t in page
                if (tid := _int_id(t)) is not None and (st.last_id is None or tid > st.last_id)
            ]
            new.sort(key=lambda x: x[0])
            if until_id is not None:
                new = [(tid, t) for tid, t in new if tid <= until_id]
            if not new:
                return
            self._deliver(st, new, backfilled=st.last_id is not None)
            fetched += len(new)
            self._wake.set()
            if len(page) < PAGE or (
                until_id is not None and st.last_id is not None and st.last_id >= until_id
            ):
                return
        log.warning(
            "%s: gap longer than backfill_max_trades (%d), the rest stays missing", st.symbol, fetched
        )


def _int_id(trade: dict[str, Any]) -> int | None:
    try:
        return int(trade.get("id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
