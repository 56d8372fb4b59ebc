"""Many feed events (tick batches of many symbols, heartbeats) as one columnar message."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import numpy as np

from scalper.types import FeedEvent, Heartbeat, TickBatch


class EventBatch(msgspec.Struct):
    """A run of feed events for many symbols as a few columns: what crosses from the feed to
    a candle shard (pickling one TickBatch per symbol and 100 ms interval costs more than the
    candles), and what `MarketDataPipeline.on_batch_events` takes in one go.

    Tick groups (one TickBatch each, in order) are `symbols[g]` with `lengths[g]` rows of the
    concatenated `ts`/`price`/`size`/`trade_id`. Event m of the rest comes after `after[m]`
    groups: a Heartbeat(`beat[m]`), or, where `beat[m]` is -1, the next of `others` (bar
    batches, or tick batches unlike the first about trade ids)."""

    symbols: list[str]
    lengths: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    size: np.ndarray
    trade_id: np.ndarray | None
    after: np.ndarray
    beat: np.ndarray
    others: list[FeedEvent]

    def __len__(self) -> int:
        return len(self.symbols) + len(self.after)

    def ticks(self) -> int:
        """How many trades the batch carries."""
        return int(self.lengths.sum()) + sum(len(e) for e in self.others if type(e) is TickBatch)

    def events(self) -> Iterator[FeedEvent]:
        """The events, in the order they were added."""
        ends = np.cumsum(self.lengths).tolist()
        after, beat = self.after.tolist(), self.beat.tolist()
        others = iter(self.others)
        tid = self.trade_id
        m = start = 0
        for g in range(len(self.symbols) + 1):
            while m < len(after) and after[m] == g:
                yield Heartbeat(beat[m]) if beat[m] >= 0 else next(others)
                m += 1
            if g == len(self.symbols):
                break
            end = ends[g]
            yield TickBatch(
                self.symbols[g],
                self.ts[start:end],
                self.price[start:end],
                self.size[start:end],
                None if tid is None else tid[start:end],
            )
            start = end


class EventBatchBuilder:
    """Collects a shard's events until the next send (see EventBatch)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.groups: list[TickBatch] = []
        self.after: list[int] = []
        self.beat: list[int] = []
        self.others: list[FeedEvent] = []
        self._ids: bool | None = None  # do the groups carry trade ids (all or none)

    def __bool__(self) -> bool:
        return bool(self.groups or self.after)

    def add(self, event: FeedEvent) -> None:
        kind = type(event)
        if kind is TickBatch and self._ids in (None, event.trade_id is not None):
            self._ids = event.trade_id is not None
            self.groups.append(event)
            return
        self.after.append(len(self.groups))
        if kind is Heartbeat:
            self.beat.append(event.ts)
        else:
            self.beat.append(-1)
            self.others.append(event)

    def build(self) -> EventBatch:
        """The batch of everything added since the last build (then empty again)."""
        g = self.groups
        cat = np.concatenate
        batch = EventBatch(
            symbols=[b.symbol for b in g],
            lengths=np.fromiter((len(b) for b in g), dtype=np.int64, count=len(g)),
            ts=cat([b.ts for b in g]) if g else np.empty(0, np.int64),
            price=cat([b.price for b in g]) if g else np.empty(0, np.float64),
            size=cat([b.size for b in g]) if g else np.empty(0, np.float64),
            trade_id=cat([b.trade_id for b in g]) if g and self._ids else None,
            after=np.asarray(self.after, dtype=np.int64),
            beat=np.asarray(self.beat, dtype=np.int64),
            others=self.others,
        )
        self.clear()
        return batch
