"""The Feed interface: market data as a stream of event-time batches and clock heartbeats.

A Feed is an iterable of `scalper.types.FeedEvent` (`TickBatch | BarBatch | Heartbeat`).
Event time is int64 nanoseconds since the Unix epoch, UTC, and is cut into intervals of
`batch_ms` aligned to the epoch: interval k is [k*B, (k+1)*B) with B = batch_ms in ns (so
100 ms intervals also align to second and minute boundaries). For each interval, in order:

1. one `TickBatch` per symbol that traded in it (symbols in the feed's `symbols` order;
   within a batch the ticks keep the source order, which is ts order), or, for bar files,
   one `BarBatch` per symbol holding the bars whose CLOSE time (open + 1 minute) falls in
   the interval;
2. then `Heartbeat(ts=(k+1)*B)`: every tick with ts < that (every bar closing before it)
   has now been delivered. Heartbeats are strictly increasing.

Intervals without data still get their heartbeat, so quiet symbols can close their bars,
but only for `max_quiet_s` of event time after the last interval that had data. A longer
silence (a weekend, a session break) is jumped: no heartbeats until the interval that
holds the next data, then that interval's batches and heartbeat as usual. The end of the
data is treated the same way: the stream ends `max_quiet_s` after the last data (so that
the last minute's bar can close in event time), then stops.

Pacing: `speed=0` yields as fast as the consumer pulls. `speed=k` sleeps before each
interval so that event time runs k times faster than wall time, measured from the start
of the first interval (`clock`/`sleep` are injectable for tests; a consumer that falls
behind gets the backlog without sleeps until it catches up). A jumped gap costs no wall
time: the pacing clock is shifted by the gap.

A Feed can be iterated more than once; each iteration replays from the start.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from scalper.types import BarBatch, FeedEvent, Heartbeat, TickBatch

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000

# Columns of a chunk of rows for each kind of feed (besides `code` and `when`).
TICK_FIELDS: tuple[str, ...] = ("ts", "price", "size", "trade_id")
BAR_FIELDS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume", "trades", "vwap")


class FeedError(ValueError):
    """A feed that cannot start: a missing file, column or symbol, an empty file..."""


@dataclass(slots=True)
class Chunk:
    """Rows handed by a Feed implementation to the interval machinery in `Feed`.

    `code[i]` indexes `Feed.symbols`; `when[i]` (int64 ns) is the event time that places
    row i in an interval (a tick's ts, a bar's close time). Within one symbol, rows are in
    `when` order. `complete_until` (ns) promises that every later chunk only has rows with
    `when >= complete_until`; None means this is the last chunk.
    """

    code: np.ndarray
    when: np.ndarray
    cols: dict[str, np.ndarray | None]
    complete_until: int | None


class Pacer:
    """Sleeps so that event time advances `speed` times faster than wall time (0 = no pacing)."""

    def __init__(
        self,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.speed = float(speed)
        self._clock = clock
        self._sleep = sleep
        self._event0: int | None = None
        self._wall0 = 0.0

    def start(self, event_ns: int) -> None:
        """Anchor: event time `event_ns` is now."""
        if self.speed > 0:
            self._event0 = event_ns
            self._wall0 = self._clock()

    def until(self, event_ns: int) -> None:
        """Sleep until the wall time that corresponds to event time `event_ns`."""
        if self.speed <= 0 or self._event0 is None:
            return
        target = self._wall0 + (event_ns - self._event0) / 1e9 / self.speed
        delay = target - self._clock()
        if delay > 0:
            self._sleep(delay)

    def skip(self, gap_ns: int) -> None:
        """A jumped gap of `gap_ns` event time costs no wall time."""
        if self._event0 is not None:
            self._event0 += gap_ns


class Feed(ABC):
    """Base of every feed: turns `Chunk`s of rows into interval batches, heartbeats and pacing.

    Subclasses set `kind` ("ticks" or "bars") and implement `_chunks()`.
    """

    kind: str = "ticks"

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        batch_ms: int,
        speed: float = 0.0,
        max_quiet_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if batch_ms <= 0:
            raise FeedError(f"batch_ms: expected an integer >= 1, got {batch_ms}")
        if speed < 0:
            raise FeedError(f"speed: expected a number >= 0, got {speed}")
        if max_quiet_s <= 0:
            raise FeedError(f"max_quiet_s: expected a number > 0, got {max_quiet_s}")
        self.symbols: list[str] = list(symbols)
        self.batch_ms = int(batch_ms)
        self.batch_ns = self.batch_ms * NS_PER_MS
        self.speed = float(speed)
        self.max_quiet_s = float(max_quiet_s)
        self._sleep = sleep
        self._clock = clock

    @abstractmethod
    def _chunks(self) -> Iterator[Chunk]:
        """The feed's rows, in chunks (see `Chunk`)."""

    def __iter__(self) -> Iterator[FeedEvent]:
        return self._events()

    # -- the interval machinery ------------------------------------------------------------

    def _factory(self, cols: dict[str, np.ndarray | None]) -> Callable[[str, int, int], FeedEvent]:
        """A function (symbol, a, b) -> the batch of rows a..b-1 of `cols` (one symbol)."""
        if self.kind == "bars":
            ts, o, h, lo, c, v, n, vw = (cols[name] for name in BAR_FIELDS)

            def bars(symbol: str, a: int, b: int) -> FeedEvent:
                return BarBatch(symbol, ts[a:b], o[a:b], h[a:b], lo[a:b], c[a:b], v[a:b], n[a:b], vw[a:b])

            return bars
        ts, price, size, tid = (cols.get(name) for name in TICK_FIELDS)
        if tid is None:

            def ticks(symbol: str, a: int, b: int) -> FeedEvent:
                return TickBatch(symbol, ts[a:b], price[a:b], size[a:b])

            return ticks

        def ticks_with_ids(symbol: str, a: int, b: int) -> FeedEvent:
            return TickBatch(symbol, ts[a:b], price[a:b], size[a:b], tid[a:b])

        return ticks_with_ids

    def _events(self) -> Iterator[FeedEvent]:
        B = self.batch_ns
        quiet_intervals = max(1, math.ceil(self.max_quiet_s * 1e9 / B))
        names = self.symbols
        nsym = len(names)
        pacer = Pacer(self.speed, self._clock, self._sleep)
        paced = self.speed > 0
        next_k: int | None = None  # first interval whose heartbeat is not yet out
        last_active = 0  # last interval that had data
        pending: Chunk | None = None

        def quiet(upto: int) -> Iterator[Heartbeat]:
            """Heartbeats of the data-less intervals next_k .. upto-1, jumping a long silence."""
            nonlocal next_k
            assert next_k is not None
            stop = min(upto, last_active + quiet_intervals + 1)
            if stop > next_k:
                if paced:
                    for i in range(next_k, stop):
                        end = (i + 1) * B
                        pacer.until(end)
                        yield Heartbeat(end)
                else:
                    yield from map(Heartbeat, range((next_k + 1) * B, stop * B + 1, B))
            if upto > stop and upto > next_k:
                first = max(stop, next_k)
                pacer.skip((upto - first) * B)
                log.debug("feed: jumped %.1f s of silence", (upto - first) * B / 1e9)
            next_k = max(next_k, upto)

        end_of_data = Chunk(np.empty(0, np.int32), np.empty(0, np.int64), {}, None)
        for chunk in itertools.chain(self._chunks(), [end_of_data]):
            if chunk is end_of_data:
                if pending is None or not len(pending.when):
                    break
                chunk = Chunk(pending.code, pending.when, pending.cols, None)
            elif pending is not None and len(pending.when):
                chunk = _concat(pending, chunk)
            pending = None
            code, when, cols = chunk.code, chunk.when, chunk.cols
            if chunk.complete_until is not None:
                # Only intervals that end by complete_until are complete: keep the rest.
                cut = (chunk.complete_until // B) * B
                if len(when) and when.max() >= cut:
                    later = when >= cut
                    pending = Chunk(code[later], when[later], _take(cols, later), chunk.complete_until)
                    now = ~later
                    code, when, cols = code[now], when[now], _take(cols, now)
            n = len(when)
            if n == 0:
                continue
            k = when // B
            if nsym > 1:
                key = (k - k.min()) * nsym + code
                order = np.argsort(key, kind="stable")
                key, k, code = key[order], k[order], code[order]
                cols = _take(cols, order)
            else:
                key = k
            bounds = np.flatnonzero(key[1:] != key[:-1]) + 1
            starts = np.concatenate(([0], bounds))
            ends = np.concatenate((bounds, [n])).tolist()
            group_k = k[starts].tolist()
            group_code = code[starts].tolist() if nsym > 1 else [0] * len(group_k)
            starts = starts.tolist()
            build = self._factory(cols)
            cur = -1
            first = True
            for g in range(len(group_k)):
                kk = group_k[g]
                if first or kk != cur:
                    if not first:
                        yield Heartbeat((cur + 1) * B)
                        next_k, last_active = cur + 1, cur
                    first = False
                    if next_k is None:
                        next_k = last_active = kk
                        pacer.start(kk * B)
                    elif kk < next_k:
                        raise FeedError(
                            f"feed: rows at {kk * B} ns arrived after the heartbeat {next_k * B} "
                            "(a chunk broke its complete_until promise)"
                        )
                    if kk > next_k:
                        yield from quiet(kk)
                    if paced:
                        pacer.until((kk + 1) * B)
                    cur = kk
                yield build(names[group_code[g]], starts[g], ends[g])
            yield Heartbeat((cur + 1) * B)
            next_k, last_active = cur + 1, cur
        if next_k is not None:
            yield from quiet(last_active + quiet_intervals + 1)


def _take(cols: dict[str, np.ndarray | None], index: np.ndarray) -> dict[str, np.ndarray | None]:
    return {name: None if c is None else c[index] for name, c in cols.items()}


def _concat(a: Chunk, b: Chunk) -> Chunk:
    cols = {}
    for name, col in b.cols.items():
        old = a.cols.get(name)
        cols[name] = None if col is None or old is None else np.concatenate((old, col))
    return Chunk(np.concatenate((a.code, b.code)), np.concatenate((a.when, b.when)), cols, b.complete_until)
