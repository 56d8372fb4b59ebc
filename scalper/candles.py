"""CandleManager: ticks -> closed 1-minute OHLCV bars for ONE symbol, in event time.

Rules (all in `CandlesConfig`, documented in the README):

* A bar is stamped with its minute's OPEN time and emitted once event time (the newest tick
  or heartbeat seen) passes the minute's end by `boundary_delay_ms`. Ticks that arrive out
  of order inside that delay still count; open/close are the earliest/latest by timestamp
  (ties: first/last to arrive), exactly what a stable sort + resample gives.
* A tick whose minute is already closed is LATE: counted and dropped.
* Empty minutes are skipped, or (`empty_minutes="flat"`) filled with zero-volume bars at the
  last close, never before the first trade and for at most `flat_max_gap_minutes` after it.
* A manager given `started_ns` (it began listening then, mid-minute) drops or emits that first
  partial minute per `first_partial_bar`; with no start time the data is all there is.
* Bad ticks are rejected with a reason and counted, never raised: non-finite values, price
  <= 0, size < 0, too far from the feed clock, duplicate trade id, late, price spike.

`on_batch` takes whole numpy columns and is vectorised; `on_tick` takes one trade. Both run
the same rules in the same order and give the same bars (OHLC, trades and timestamps
bit-identical; volume and vwap too, because sums are accumulated sequentially in both).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from typing import TYPE_CHECKING

import numpy as np

from scalper.config import CandlesConfig
from scalper.types import NS_PER_MINUTE, Bar, BarBatch, RejectReason, TickBatch

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MIN = NS_PER_MINUTE
_NAT = np.iinfo(np.int64).min  # how pandas/pyarrow spell a missing timestamp in int64
_INF = math.inf
# Batches up to this size go through the one-tick path (same rules, less numpy overhead).
_SMALL_BATCH = 48

# Accumulator slots of an open minute (a list is the fastest mutable record in CPython).
_O, _OTS, _H, _L, _C, _CTS, _V, _PV, _N = range(9)


def closed_boundary(clock_ns, delay_ns: int):
    """Every minute that opens before this time (ns) is closed at event time `clock_ns`: a
    minute closes once the clock is `delay_ns` past its end. Works on ints and numpy arrays."""
    horizon = clock_ns - delay_ns
    return horizon - horizon % MIN


class CandleManager:
    """Aggregates one symbol's trades into 1-minute bars; keeps the last `ring_size` bars."""

    def __init__(self, symbol: str, cfg: CandlesConfig | None = None, started_ns: int | None = None):
        self.symbol = symbol
        self.cfg = cfg or CandlesConfig()
        bt = self.cfg.bad_ticks
        self._delay = int(self.cfg.boundary_delay_ms) * 1_000_000
        self._skew = int(bt.max_clock_skew_s * 1e9)
        self._flat = self.cfg.empty_minutes == "flat"
        self._flat_max = self.cfg.flat_max_gap_minutes * MIN
        self._k = float(bt.spike_sigma)
        self._min_ret = float(bt.spike_min_return)
        self._cold_ret = float(bt.spike_cold_return)
        self._confirm = int(bt.spike_confirm_ticks)
        # a move this small is never a spike, whatever the volatility: the fast paths' test
        self._bound = min(self._min_ret, self._cold_ret)
        self._sigma_min_n = max(2, bt.spike_window_bars // 2)
        self._started = started_ns
        self._first_bar_done = False

        self._clock: int | None = None  # newest event time seen
        self._closed_through: int | None = None  # every minute < this is closed
        self._open: dict[int, list] = {}  # minute open -> accumulator
        self._last_close: float | None = None  # close of the last bar (real or flat)
        self._last_bar_ts: int | None = None  # open time of the last emitted bar
        self._last_real_ts: int | None = None  # open time of the last bar with trades
        self._last_real_close: float | None = None

        # spike reference: the last accepted trade, and 1-minute return volatility
        self._ref_price: float | None = None
        self._ref_ts = 0
        self._rets: deque[float] = deque(maxlen=bt.spike_window_bars)
        self._sigma: float | None = None
        self._suspects: list[float] = []

        self._seen_ids: set = set()
        self._seen_order: deque = deque()
        self._dedupe = self.cfg.dedupe_by_trade_id
        self._dedupe_window = self.cfg.dedupe_window

        n = self.cfg.ring_size
        self._ring_ts = np.zeros(n, dtype=np.int64)
        self._ring = np.zeros((n, 7), dtype=np.float64)  # open high low close volume trades vwap
        self._ring_len = 0
        self._ring_head = 0  # next write position

        self.accepted = 0
        self.rejected: Counter[RejectReason] = Counter()
        self.dropped_partial_bars = 0
        self.bars_emitted = 0

    # ------------------------------------------------------------------ public API

    @property
    def clock(self) -> int | None:
        """Newest event time seen (ns), from ticks and heartbeats."""
        return self._clock

    @property
    def closed_through(self) -> int | None:
        """Every minute that opens before this time (ns) is closed."""
        return self._closed_through

    def on_tick(
        self, ts: int, price: float, size: float, trade_id: object = None, clock_ns: int | None = None
    ) -> list[Bar]:
        """One trade; returns the bars it closed. `clock_ns` is the feed's clock, if any.

        The hot path is written out inline (~3x faster than calling the helpers); every
        branch that is not the common case goes through the same helpers as `on_batch`.
        """
        out: list[Bar] = []
        ts = int(ts)
        if not (0.0 < price < _INF and 0.0 <= size < _INF and ts != _NAT) or (
            clock_ns is not None and abs(ts - clock_ns) > self._skew
        ):
            self._reject(self._basic_reason(ts, price, size, clock_ns) or RejectReason.NON_FINITE, ts, price)
            return out
        if trade_id is not None and self._dedupe and self._is_duplicate(trade_id):
            self._reject(RejectReason.DUPLICATE, ts, price)
            return out
        clock = self._clock
        if clock is None or ts > clock:
            self._clock = ts
            horizon = ts - self._delay  # closed_boundary(), inlined on the hot path
            boundary = horizon - horizon % MIN
            if self._closed_through is None or boundary > self._closed_through:
                self._close_until(boundary, out, trailing_flats=True)
        minute = ts - ts % MIN
        if self._closed_through is not None and minute < self._closed_through:
            self._reject(RejectReason.LATE, ts, price)
            return out
        price = float(price)
        ref = self._ref_price
        if ref is not None and -self._bound <= price / ref - 1.0 <= self._bound:
            if self._suspects:
                self._suspects.clear()
            self._ref_price = price
            self._ref_ts = ts
        elif not self._spike_accept(ts, price):
            self._reject(RejectReason.SPIKE, ts, price)
            return out
        size = float(size)
        self.accepted += 1
        acc = self._open.get(minute)
        if acc is None:
            self._open[minute] = [price, ts, price, price, price, ts, 0.0 + size, 0.0 + price * size, 1]
            return out
        if ts < acc[1]:
            acc[0] = price
            acc[1] = ts
        if ts >= acc[5]:
            acc[4] = price
            acc[5] = ts
        if price > acc[2]:
            acc[2] = price
        if price < acc[3]:
            acc[3] = price
        acc[6] += size
        acc[7] += price * size
        acc[8] += 1
        return out

    def on_batch(
        self,
        ts: np.ndarray,
        price: np.ndarray,
        size: np.ndarray,
        trade_id: np.ndarray | None = None,
        clock_ns: int | np.ndarray | None = None,
    ) -> list[Bar]:
        """Many trades in arrival order, vectorised; returns the bars they closed.

        Gives exactly the bars and counters that calling `on_tick` on each trade would.
        `clock_ns`: the feed clock for all the trades, or one per trade (an int64 array).
        """
        out: list[Bar] = []
        ts = np.asarray(ts, dtype=np.int64)
        price = np.asarray(price, dtype=np.float64)
        size = np.asarray(size, dtype=np.float64)
        n = ts.shape[0]
        if n == 0:
            return out
        if n <= _SMALL_BATCH:
            # numpy's per-call overhead beats its per-element gain here; the rules are the same
            on_tick = self.on_tick
            ids = [None] * n if trade_id is None else np.asarray(trade_id, dtype=object).tolist()
            if clock_ns is None or np.ndim(clock_ns) == 0:
                for t, p, q, i in zip(ts.tolist(), price.tolist(), size.tolist(), ids, strict=True):
                    out += on_tick(t, p, q, i, clock_ns)
                return out
            clocks = np.asarray(clock_ns, dtype=np.int64).tolist()
            for t, p, q, i, c in zip(ts.tolist(), price.tolist(), size.tolist(), ids, clocks, strict=True):
                out += on_tick(t, p, q, i, c)
            return out
        keep = self._basic_mask(ts, price, size, clock_ns)
        if self._dedupe and trade_id is not None:
            keep &= self._dedupe_mask(trade_id, keep, ts, price)
        if not keep.all():
            ts, price, size = ts[keep], price[keep], size[keep]
            if ts.shape[0] == 0:
                return out

        if self._fast_batch(ts, price, size, out):
            return out

        # General path (out of order, late or suspect trades): event time as each trade
        # arrives; a minute closes when it passes end + delay.
        clock = np.maximum.accumulate(ts)
        if self._clock is not None:
            np.maximum(clock, self._clock, out=clock)
        closed = closed_boundary(clock, self._delay)
        # segment = run of trades during which the set of closed minutes does not change
        cuts = np.flatnonzero(closed[1:] != closed[:-1]) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [ts.shape[0]]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            self._clock = int(clock[b - 1])
            self._advance(out)
            self._segment(ts[a:b], price[a:b], size[a:b])
        return out

    def _fast_batch(self, ts: np.ndarray, price: np.ndarray, size: np.ndarray, out: list[Bar]) -> bool:
        """The common case in one vectorised pass: in-order trades, none late, no move big
        enough to be a spike under any volatility. Returns False (changing nothing) otherwise."""
        n = ts.shape[0]
        if self._suspects or (n > 1 and (ts[1:] < ts[:-1]).any()):
            return False
        minute = ts - ts % MIN
        if self._closed_through is not None and minute[0] < self._closed_through:
            return False
        bound = self._bound
        if self._ref_price is None:
            if n > 1 and (np.abs(price[1:] / price[:-1] - 1.0) > bound).any():
                return False
        else:
            if abs(price[0] / self._ref_price - 1.0) > bound:
                return False
            if n > 1 and (np.abs(price[1:] / price[:-1] - 1.0) > bound).any():
                return False
        self._ref_price, self._ref_ts = float(price[-1]), int(ts[-1])
        self._aggregate(minute, ts, price, size)
        if self._clock is None or int(ts[-1]) > self._clock:
            self._clock = int(ts[-1])
            self._advance(out)
        return True

    def on_ticks(self, batch: TickBatch, clock_ns: int | None = None) -> list[Bar]:
        """A TickBatch from a feed (vectorised)."""
        if batch.symbol != self.symbol:
            self.rejected[RejectReason.WRONG_SYMBOL] += len(batch)
            log.warning("%s: got a batch for %s, dropped %d ticks", self.symbol, batch.symbol, len(batch))
            return []
        return self.on_batch(batch.ts, batch.price, batch.size, batch.trade_id, clock_ns)

    def on_arrow(
        self,
        table: object,
        ts: str = "timestamp",
        price: str = "price",
        size: str = "size",
        trade_id: str | None = None,
        clock_ns: int | None = None,
    ) -> list[Bar]:
        """A pyarrow RecordBatch or Table of this symbol's trades (vectorised, zero-copy where
        Arrow allows). A timestamp column of Arrow timestamp type is converted to ns; an
        integer column is taken as ns already."""
        import pyarrow as pa
        import pyarrow.compute as pc

        t = table.column(ts)
        if pa.types.is_timestamp(t.type):
            t = pc.cast(t, pa.timestamp("ns", t.type.tz)).cast(pa.int64())
        ids = None
        if trade_id is not None:
            ids = np.asarray(table.column(trade_id).to_pylist(), dtype=object)
        return self.on_batch(
            _arrow_numpy(t, np.int64, _NAT),
            _arrow_numpy(table.column(price), np.float64, math.nan),
            _arrow_numpy(table.column(size), np.float64, math.nan),
            ids,
            clock_ns,
        )

    def on_heartbeat(self, ts: int) -> list[Bar]:
        """The feed's clock moved to `ts`: close the minutes that ended before it."""
        out: list[Bar] = []
        ts = int(ts)
        if self._clock is None or ts > self._clock:
            self._clock = ts
            self._advance(out)
        return out

    def on_bars(self, batch: BarBatch) -> list[Bar]:
        """Already-closed bars (a bar file replayed): checked for order, stored, passed on."""
        out: list[Bar] = []
        for i in range(len(batch)):
            m = int(batch.ts[i])
            if m % MIN or (self._closed_through is not None and m < self._closed_through):
                self._reject(RejectReason.LATE, m, float(batch.close[i]))
                continue
            end = m + MIN
            self._clock = max(self._clock or end, end)
            self._advance(out)  # closes anything open before this bar
            vwap = float(batch.vwap[i])
            bar = Bar(
                self.symbol,
                m,
                float(batch.open[i]),
                float(batch.high[i]),
                float(batch.low[i]),
                float(batch.close[i]),
                float(batch.volume[i]),
                int(batch.trades[i]),
                vwap if math.isfinite(vwap) else float(batch.close[i]),
            )
            self._emit(bar, out)
            self._closed_through = end
            self._ref_price, self._ref_ts = bar.close, end
        return out

    def flush(self) -> list[Bar]:
        """End of data: close every open minute now (no trailing flat bars)."""
        out: list[Bar] = []
        if self._open:
            last = max(self._open) + MIN
            self._close_until(last, out, trailing_flats=False)
        return out

    def warm(self, bars: pd.DataFrame) -> None:
        """Seed history from stored bars (warm start): ring, last close, spike volatility."""
        if len(bars) == 0:
            return
        cols = ("open", "high", "low", "close", "volume", "trades", "vwap")
        ts = bars["timestamp"].to_numpy(dtype=np.int64)
        values = bars.loc[:, list(cols)].to_numpy(dtype=np.float64)
        for i in range(len(ts)):
            o, h, lo, c, v, n, w = values[i].tolist()
            self._store(Bar(self.symbol, int(ts[i]), o, h, lo, c, v, int(n), w))
            if n > 0:
                self._note_real_close(int(ts[i]), c)
        last = int(ts[-1])
        self._last_close = float(values[-1, 3])
        self._last_bar_ts = last
        self._closed_through = max(self._closed_through or 0, last + MIN)
        self._clock = max(self._clock or 0, last + MIN)
        self._ref_price, self._ref_ts = self._last_real_close, (self._last_real_ts or last) + MIN
        self._first_bar_done = True

    def history(self, n: int | None = None) -> pd.DataFrame:
        """The last `n` closed bars (all kept if None) as a DataFrame in BAR_COLUMNS order."""
        import pandas as pd

        ts, values = self.history_arrays(n)
        df = pd.DataFrame(values, columns=["open", "high", "low", "close", "volume", "trades", "vwap"])
        df.insert(0, "timestamp", ts)
        df["trades"] = df["trades"].astype(np.int64)
        return df

    def history_arrays(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The last `n` bars as (ts int64[n], values float64[n, 7]) in time order (copies)."""
        size = self._ring_ts.shape[0]
        count = self._ring_len if n is None else min(n, self._ring_len)
        idx = (np.arange(self._ring_head - count, self._ring_head)) % size
        return self._ring_ts[idx].copy(), self._ring[idx].copy()

    def stats(self) -> dict[str, int]:
        """Counters for metrics and summaries: accepted, bars, and rejected per reason."""
        out = {
            "accepted": self.accepted,
            "bars": self.bars_emitted,
            "dropped_partial_bars": self.dropped_partial_bars,
        }
        for reason in RejectReason:
            out[f"rejected_{reason.value}"] = self.rejected.get(reason, 0)
        return out

    # ------------------------------------------------------------------ tick checks

    def _basic_reason(self, ts: int, price: float, size: float, clock_ns: int | None) -> RejectReason | None:
        if ts == _NAT or not (math.isfinite(price) and math.isfinite(size)):
            return RejectReason.NON_FINITE
        if price <= 0:
            return RejectReason.NON_POSITIVE_PRICE
        if size < 0:
            return RejectReason.NEGATIVE_SIZE
        if clock_ns is not None and abs(ts - clock_ns) > self._skew:
            return RejectReason.CLOCK_SKEW
        return None

    def _basic_mask(
        self, ts: np.ndarray, price: np.ndarray, size: np.ndarray, clock_ns: int | np.ndarray | None
    ) -> np.ndarray:
        keep = (price > 0) & (price < _INF) & (size >= 0) & (size < _INF) & (ts != _NAT)
        if clock_ns is not None:
            keep &= np.abs(ts - clock_ns) <= self._skew
        if keep.all():
            return keep
        finite = np.isfinite(price) & np.isfinite(size) & (ts != _NAT)
        keep = finite.copy()
        bad = ~finite
        if bad.any():
            self._reject_many(RejectReason.NON_FINITE, ts, price, bad)
        for reason, rule in (
            (RejectReason.NON_POSITIVE_PRICE, lambda: price <= 0),
            (RejectReason.NEGATIVE_SIZE, lambda: size < 0),
            (
                RejectReason.CLOCK_SKEW,
                lambda: np.abs(ts - clock_ns) > self._skew if clock_ns is not None else None,
            ),
        ):
            hit = rule()
            if hit is None:
                continue
            hit = hit & keep
            if hit.any():
                self._reject_many(reason, ts, price, hit)
                keep &= ~hit
        return keep

    def _is_duplicate(self, trade_id: object) -> bool:
        if trade_id in self._seen_ids:
            return True
        self._seen_ids.add(trade_id)
        self._seen_order.append(trade_id)
        if len(self._seen_order) > self._dedupe_window:
            self._seen_ids.discard(self._seen_order.popleft())
        return False

    def _dedupe_mask(
        self, trade_id: np.ndarray, keep: np.ndarray, ts: np.ndarray, price: np.ndarray
    ) -> np.ndarray:
        ids = np.asarray(trade_id, dtype=object).tolist()
        eligible = keep.tolist()
        dup = np.zeros(len(ids), dtype=bool)
        is_dup = self._is_duplicate
        for i, tid in enumerate(ids):
            if eligible[i] and tid is not None and is_dup(tid):
                dup[i] = True
        if dup.any():
            self._reject_many(RejectReason.DUPLICATE, ts, price, dup)
        return ~dup

    def _threshold(self, dt_ns: int) -> float:
        if self._sigma is None:
            return self._cold_ret
        return max(self._k * self._sigma * math.sqrt(max(1.0, dt_ns / MIN)), self._min_ret)

    def _spike_accept(self, ts: int, price: float) -> bool:
        """Is this trade's move from the last accepted one believable? Updates the reference."""
        ref = self._ref_price
        if ref is not None:
            thr = self._threshold(ts - self._ref_ts)
            if abs(price / ref - 1.0) > thr:
                sus = self._suspects
                if sus and abs(price / sus[0] - 1.0) > thr:
                    sus.clear()
                sus.append(price)
                if len(sus) < self._confirm:
                    return False
                log.warning(
                    "%s: price level %.10g confirmed by %d trades; rebasing", self.symbol, price, len(sus)
                )
            self._suspects.clear()
        self._ref_price = price
        self._ref_ts = ts
        return True

    # ------------------------------------------------------------------ aggregation

    def _segment(self, ts: np.ndarray, price: np.ndarray, size: np.ndarray) -> None:
        """Trades during which no minute closes: late check, spike check, accumulate."""
        minute = ts - ts % MIN
        if self._closed_through is not None:
            late = minute < self._closed_through
            if late.any():
                self._reject_many(RejectReason.LATE, ts, price, late)
                ok = ~late
                ts, price, size, minute = ts[ok], price[ok], size[ok], minute[ok]
        n = ts.shape[0]
        if n == 0:
            return
        # Spike check, vectorised under the assumption that every trade is accepted; the first
        # trade that is not (rare) hands the rest of the segment to the one-by-one rule.
        start = 0
        if self._ref_price is None:
            self._ref_price, self._ref_ts = float(price[0]), int(ts[0])
            start = 1
        flagged = n
        if start < n and not self._suspects:
            ref = np.empty(n - start)
            ref[0] = self._ref_price
            ref[1:] = price[start:-1]
            ref_ts = np.empty(n - start, dtype=np.int64)
            ref_ts[0] = self._ref_ts
            ref_ts[1:] = ts[start:-1]
            if self._sigma is None:
                bad = np.abs(price[start:] / ref - 1.0) > self._cold_ret
            else:
                thr = np.maximum(
                    self._k * self._sigma * np.sqrt(np.maximum(1.0, (ts[start:] - ref_ts) / MIN)),
                    self._min_ret,
                )
                bad = np.abs(price[start:] / ref - 1.0) > thr
            hit = np.flatnonzero(bad)
            if hit.shape[0]:
                flagged = start + int(hit[0])
        elif start < n:
            flagged = start
        if flagged > 0:
            self._ref_price, self._ref_ts = float(price[flagged - 1]), int(ts[flagged - 1])
            self._aggregate(minute[:flagged], ts[:flagged], price[:flagged], size[:flagged])
        if flagged < n:
            accept = np.ones(n - flagged, dtype=bool)
            tl, pl = ts[flagged:].tolist(), price[flagged:].tolist()
            for j in range(n - flagged):
                if not self._spike_accept(tl[j], pl[j]):
                    accept[j] = False
                    self._reject(RejectReason.SPIKE, tl[j], pl[j])
            sl = slice(flagged, n)
            self._aggregate(minute[sl][accept], ts[sl][accept], price[sl][accept], size[sl][accept])

    def _aggregate(self, minute: np.ndarray, ts: np.ndarray, price: np.ndarray, size: np.ndarray) -> None:
        """Fold accepted trades (arrival order) into their minutes' accumulators."""
        n = ts.shape[0]
        if n == 0:
            return
        self.accepted += n
        if n == 1 or (minute[0] == minute[-1] and (n < 3 or (minute[1:] == minute[:-1]).all())):
            groups = [(int(minute[0]), 0, n)]
        else:
            if (minute[1:] < minute[:-1]).any():
                order = np.argsort(minute, kind="stable")
                minute, ts, price, size = minute[order], ts[order], price[order], size[order]
            cut = np.flatnonzero(minute[1:] != minute[:-1]) + 1
            bounds = np.concatenate(([0], cut, [n])).tolist()
            groups = [(int(minute[bounds[i]]), bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        pv = price * size
        for m, a, b in groups:
            g_ts = ts[a:b]
            g_p = price[a:b]
            i_open = int(g_ts.argmin())
            i_close = (b - a) - 1 - int(g_ts[::-1].argmax())
            acc = self._open.get(m)
            if acc is None:
                # sequential sums (np.cumsum is left to right) so on_tick gives identical floats
                vol = float(np.cumsum(size[a:b])[-1]) if b - a > 1 else float(size[a])
                s_pv = float(np.cumsum(pv[a:b])[-1]) if b - a > 1 else float(pv[a])
                if b - a == 1:
                    vol, s_pv = 0.0 + vol, 0.0 + s_pv
                self._open[m] = [
                    float(g_p[i_open]),
                    int(g_ts[i_open]),
                    float(g_p.max()),
                    float(g_p.min()),
                    float(g_p[i_close]),
                    int(g_ts[i_close]),
                    vol,
                    s_pv,
                    b - a,
                ]
            else:
                t_open = int(g_ts[i_open])
                if t_open < acc[_OTS]:
                    acc[_O], acc[_OTS] = float(g_p[i_open]), t_open
                t_close = int(g_ts[i_close])
                if t_close >= acc[_CTS]:
                    acc[_C], acc[_CTS] = float(g_p[i_close]), t_close
                hi = float(g_p.max())
                lo = float(g_p.min())
                if hi > acc[_H]:
                    acc[_H] = hi
                if lo < acc[_L]:
                    acc[_L] = lo
                buf = np.empty(b - a + 1)
                buf[0] = acc[_V]
                buf[1:] = size[a:b]
                acc[_V] = float(np.cumsum(buf)[-1])
                buf[0] = acc[_PV]
                buf[1:] = pv[a:b]
                acc[_PV] = float(np.cumsum(buf)[-1])
                acc[_N] += b - a

    # ------------------------------------------------------------------ closing bars

    def _advance(self, out: list[Bar]) -> None:
        """Close every minute that ended more than the boundary delay before the clock."""
        boundary = closed_boundary(self._clock, self._delay)
        if self._closed_through is None or boundary > self._closed_through:
            self._close_until(boundary, out, trailing_flats=True)

    def _close_until(self, boundary: int, out: list[Bar], trailing_flats: bool) -> None:
        for m in sorted(k for k in self._open if k < boundary):
            if self._flat:
                self._fill_flats(m, out)
            self._close_minute(m, self._open.pop(m), out)
        if self._flat and trailing_flats:
            self._fill_flats(boundary, out)
        if self._closed_through is None or boundary > self._closed_through:
            self._closed_through = boundary

    def _fill_flats(self, until: int, out: list[Bar]) -> None:
        """Zero-volume bars for empty minutes before `until`, after the last bar, within the gap cap."""
        if self._last_bar_ts is None or self._last_real_ts is None or self._last_close is None:
            return
        last_allowed = self._last_real_ts + self._flat_max
        m = self._last_bar_ts + MIN
        stop = min(until, last_allowed + MIN)
        c = self._last_close
        while m < stop:
            self._emit(Bar(self.symbol, m, c, c, c, c, 0.0, 0, c), out)
            m += MIN

    def _close_minute(self, m: int, acc: list, out: list[Bar]) -> None:
        vol = acc[_V]
        vwap = acc[_PV] / vol if vol > 0 else acc[_C]
        bar = Bar(self.symbol, m, acc[_O], acc[_H], acc[_L], acc[_C], vol, acc[_N], vwap)
        if not self._first_bar_done:
            self._first_bar_done = True
            if self._started is not None and m < self._started and self.cfg.first_partial_bar == "drop":
                # trades before we started listening are missing: not a true bar
                self.dropped_partial_bars += 1
                self._last_close = bar.close
                self._last_bar_ts = m
                self._note_real_close(m, bar.close)
                return
        self._emit(bar, out)
        self._note_real_close(m, bar.close)

    def _note_real_close(self, m: int, close: float) -> None:
        """Track 1-minute returns of bars with trades (the spike rule's volatility)."""
        prev_ts, prev_c = self._last_real_ts, self._last_real_close
        self._last_real_ts, self._last_real_close = m, close
        if prev_ts is None or prev_c is None:
            return
        gap = max(1.0, (m - prev_ts) / MIN)
        self._rets.append((close / prev_c - 1.0) / math.sqrt(gap))
        if len(self._rets) >= self._sigma_min_n:
            r = self._rets
            mean = math.fsum(r) / len(r)
            self._sigma = math.sqrt(math.fsum((x - mean) ** 2 for x in r) / len(r))

    def _emit(self, bar: Bar, out: list[Bar]) -> None:
        self._store(bar)
        self._last_close = bar.close
        self._last_bar_ts = bar.ts
        self.bars_emitted += 1
        out.append(bar)

    def _store(self, bar: Bar) -> None:
        i = self._ring_head
        self._ring_ts[i] = bar.ts
        self._ring[i] = (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades, bar.vwap)
        self._ring_head = (i + 1) % self._ring_ts.shape[0]
        self._ring_len = min(self._ring_len + 1, self._ring_ts.shape[0])

    # ------------------------------------------------------------------ rejections

    def _reject(self, reason: RejectReason, ts: int, price: float) -> None:
        self.rejected[reason] += 1
        if self.rejected[reason] == 1:
            log.warning("%s: rejected a tick (%s): ts=%s price=%r", self.symbol, reason.value, ts, price)
        else:
            log.debug("%s: rejected a tick (%s): ts=%s price=%r", self.symbol, reason.value, ts, price)

    def _reject_many(self, reason: RejectReason, ts: np.ndarray, price: np.ndarray, mask: np.ndarray) -> None:
        idx = np.flatnonzero(mask)
        if idx.shape[0] == 0:
            return
        first = int(idx[0])
        before = self.rejected[reason]
        self.rejected[reason] += int(idx.shape[0])
        level = logging.WARNING if before == 0 else logging.DEBUG
        log.log(
            level,
            "%s: rejected %d ticks (%s), first ts=%s price=%r",
            self.symbol,
            idx.shape[0],
            reason.value,
            int(ts[first]),
            float(price[first]),
        )


def _arrow_numpy(column: object, dtype: type, null: object) -> np.ndarray:
    """An Arrow column as numpy; nulls become `null` (NaN / NaT), which the tick rules reject."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        column = column.fill_null(pa.scalar(null, type=column.type) if null is not _NAT else _NAT)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)
