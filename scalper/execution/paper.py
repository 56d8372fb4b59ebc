"""PaperBroker: the bar-mode fill model shared by paper trading and the backtest.

Given one closed 1-minute bar and the open orders of its symbol, `on_bar` says what filled
during that bar. The rules (prices in the instrument's quote, `slip` = moved AGAINST the
taker by `slippage_bps` of the price plus `slippage_ticks` whole ticks, then onto the tick
grid AGAINST the taker: an exchange fills on the grid, at the next worse tick):

* Eligibility: an order can fill in bar `ts` only if it is open (ACCEPTED or
  PARTIALLY_FILLED), `created_ts <= ts` (created at or before the bar's open: a decision at
  bar t's close is stamped t + 1 min, so nothing fills in the bar that produced it) and, with
  an `expire_ts`, `ts < expire_ts`.
* MARKET: at slip(open), taker.
* LIMIT buy: only when the bar trades THROUGH the limit (`low < limit`; a touch is not a
  fill), at min(limit, open): a bar that opens through a resting limit fills at the better
  open. Maker fee. Exception: in the order's ARRIVAL bar (`created_ts > ts - 1 min`) an open
  already through the limit means the order was marketable when placed: it takes, at
  min(limit, slip(open)), taker fee — unless it is post-only, which never takes (it fills as
  maker at the limit itself). LIMIT sell mirrored (`high > limit`, max(...)).
* STOP sell (a long's stop-loss): triggers when `low <= stop`, fills at slip(min(stop, open)):
  a gap through the stop fills at the open, not the stop. Taker. Buy stop mirrored. A STOP
  that has already partly filled was triggered: its rest fills like a market order.
* One fill per OCO group per bar: when both legs of a bracket can fill in one bar, the leg
  the OPEN already reaches wins (the open is the bar's first trade); otherwise the STOP wins
  (the stop is assumed first, the pessimistic choice). The caller cancels the other leg
  through OrderManager.on_fill.
* IOC: an eligible IOC order gets ONE bar, the bar it is first given in. What it does not
  fill there is reported in `last_ioc_cancels` (also returned by `step`); the caller cancels
  it (`OrderManager.cancel(id, bar close, "ioc")`). The broker is stateless: an IOC order
  passed in again in a later bar gets another chance.
* Partial fills (`max_volume_participation > 0`): at most that fraction of the bar's volume
  fills per order per bar, rounded DOWN to the lot size; the rest stays open. Off (0), an
  order fills completely, whatever the bar's volume.
* Fees: price * quantity * multiplier * bps / 1e4, maker or taker bps (maker may be negative,
  a rebate).
* Prices on the grid: order prices are on the tick grid (the RiskManager rounds them) and a
  slipped price is moved onto it against the taker, so every fill is on the grid when the
  bars are (a maker fill is at its limit or at the bar's open, as given).
* Fills are stamped `ts` = the bar's open time and get the deterministic id
  `<client_order_id>-f<bar ts>` (at most one fill per order per bar).
* Within one bar, fills of entries and exits come before fills of bracket legs, so a caller
  applying them in order sees the entry grow before a leg closes it.

`first_fill_index` finds, vectorised over numpy columns, the first bar at which `on_bar`
would do anything (a fill, or an IOC's one bar), so a backtest can jump over the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import NamedTuple

import numpy as np

from scalper.config import Config, InstrumentTable
from scalper.execution.orders import LEG_ROLES, OPEN_STATUSES, QTY_EPS, tick_against
from scalper.types import NS_PER_MINUTE, Bar, Fill, Order, OrderType, Side, TimeInForce

_FLOOR_EPS = 1e-9  # participation cap / lot: 2.9999999999 lots is 3 lots


class BarFills(NamedTuple):
    fills: list[Fill]
    ioc_cancels: list[Order]  # IOC orders whose one bar passed without a complete fill


class _Candidate(NamedTuple):
    order: Order
    price: float
    taker: bool
    at_open: bool  # the bar's open already reaches the order
    tick: int = 0  # tick mode: index of the bar's first trade that reaches the order


# _Candidate((...)) without the generated __new__'s Python frame (one per order and bar)
_candidate = partial(tuple.__new__, _Candidate)


class PaperBroker:
    """The fill model (bar mode, or tick mode when `step` gets the bar's trades).
    Stateless apart from `last_ioc_cancels`."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.last_ioc_cancels: list[Order] = []
        self._instruments = InstrumentTable(cfg)

    # ----------------------------------------------------------------------- prices

    def _slip(self, price: float, side: Side, tick_size: float) -> float:
        ex = self.cfg.execution
        sign = 1.0 if side == Side.BUY else -1.0
        slipped = price * (1.0 + sign * ex.slippage_bps / 1e4) + sign * ex.slippage_ticks * tick_size
        return tick_against(slipped, tick_size, side)

    def fee(
        self, price: float, quantity: float, multiplier: float, taker: bool, per_unit: float | None = None
    ) -> float:
        """bps of the notional (execution.*_fee_bps), or a fixed fee per unit when the
        instrument sets `fee_per_unit` (futures: commission + exchange fees per contract)."""
        if per_unit is not None:
            return quantity * per_unit
        bps = self.cfg.execution.taker_fee_bps if taker else self.cfg.execution.maker_fee_bps
        return price * quantity * multiplier * bps / 1e4

    def _candidate(self, order: Order, bar: Bar, tick: float) -> _Candidate | None:
        side = order.side
        buy = side == Side.BUY
        o = bar.open
        if order.order_type == OrderType.MARKET or (
            order.order_type == OrderType.STOP and order.filled_qty > 0
        ):
            return _candidate((order, self._slip(o, side, tick), True, True, 0))
        if order.order_type == OrderType.LIMIT:
            lim = order.limit_price
            if lim is None:
                return None
            if not (bar.low < lim if buy else bar.high > lim):
                return None
            at_open = o < lim if buy else o > lim
            arrival = order.created_ts > bar.ts - NS_PER_MINUTE
            if at_open and arrival and not order.post_only:
                slipped = self._slip(o, side, tick)
                return _candidate((order, min(lim, slipped) if buy else max(lim, slipped), True, True, 0))
            if at_open and arrival:  # post-only: never takes; rests at its limit
                return _candidate((order, lim, False, True, 0))
            return _candidate((order, min(lim, o) if buy else max(lim, o), False, at_open, 0))
        if order.order_type == OrderType.STOP:
            stop = order.stop_price
            if stop is None:
                return None
            if not (bar.high >= stop if buy else bar.low <= stop):
                return None
            at_open = o >= stop if buy else o <= stop
            base = max(stop, o) if buy else min(stop, o)
            return _candidate((order, self._slip(base, side, tick), True, at_open, 0))
        return None

    def _cap_qty(self, order: Order, volume: float, lot: float) -> float:
        remaining = order.remaining
        cap = self.cfg.execution.max_volume_participation
        if cap <= 0:
            return remaining
        lots = math.floor(cap * volume / lot + _FLOOR_EPS)
        return min(remaining, lots * lot) if lots >= 1 else 0.0

    # ----------------------------------------------------------------------- bar mode

    def _in_ticks(self, c: _Candidate, bar: Bar, prices: np.ndarray, tick: float) -> _Candidate:
        """Tick mode: when (which trade) and, for a stop, at what price the order fills.

        The bar-mode candidate already says THAT it fills (a trade reaches a level iff the bar's
        high/low does); the trades only decide the order of the legs and the stop's price.
        """
        order = c.order
        buy = order.side == Side.BUY
        if c.at_open or order.order_type == OrderType.MARKET or prices.size == 0:
            return c._replace(tick=0)
        if order.order_type == OrderType.LIMIT:
            hit = prices < order.limit_price if buy else prices > order.limit_price
            return c._replace(tick=int(np.argmax(hit)) if hit.any() else 0)
        if order.order_type == OrderType.STOP:
            hit = prices >= order.stop_price if buy else prices <= order.stop_price
            if not hit.any():
                return c
            i = int(np.argmax(hit))
            # a stop becomes a market order at the trade that triggers it: that trade's price
            return c._replace(tick=i, price=self._slip(float(prices[i]), order.side, tick))
        return c

    def step(self, bar: Bar, orders: Iterable[Order], ticks: np.ndarray | None = None) -> BarFills:
        """Fills of `orders` (those of bar.symbol) during `bar`, and the IOC orders to cancel.

        `ticks`: the bar's trade prices in time order (tick mode); None = bar mode.
        """
        sym, ts = bar.symbol, bar.ts
        inst = self._instruments[sym]
        tick = inst.tick_size
        eligible = [
            o
            for o in _working(orders, sym)
            if o.created_ts <= ts and (o.expire_ts is None or ts < o.expire_ts)
        ]
        cands: list[tuple[_Candidate, float]] = []
        for order in eligible:
            c = self._candidate(order, bar, tick)
            if c is None:
                continue
            if ticks is not None:
                c = self._in_ticks(c, bar, ticks, tick)
            qty = self._cap_qty(order, bar.volume, inst.lot_size)
            if qty > 0:
                cands.append((c, qty))
        winners = cands if len(cands) < 2 else _one_per_oco(cands, ticks is not None)
        fills = [
            Fill(
                fill_id=f"{c.order.client_order_id}-f{ts}",
                client_order_id=c.order.client_order_id,
                symbol=sym,
                side=c.order.side,
                quantity=qty,
                price=c.price,
                fee=self.fee(c.price, qty, inst.multiplier, c.taker, inst.fee_per_unit),
                liquidity="taker" if c.taker else "maker",
                ts=ts,
            )
            for c, qty in winners
        ]
        ioc = [o for o in eligible if o.tif == TimeInForce.IOC]
        if not ioc:
            return BarFills(fills, [])
        filled = {f.client_order_id: f.quantity for f in fills}
        cancels = [
            o
            for o in ioc
            if o.remaining - filled.get(o.client_order_id, 0.0) > QTY_EPS * max(1.0, o.quantity)
        ]
        return BarFills(fills, cancels)

    def on_bar(self, bar: Bar, orders: Iterable[Order]) -> list[Fill]:
        """Fills of the open `orders` of bar.symbol during `bar` (see the module docstring).

        IOC orders to cancel after this bar are left in `self.last_ioc_cancels`.
        """
        out = self.step(bar, orders)
        self.last_ioc_cancels = out.ioc_cancels
        return out.fills

    # ----------------------------------------------------------------------- vectorised

    def first_fill_index(
        self,
        orders: Iterable[Order],
        arrays: Mapping[str, np.ndarray],
        start: int,
        stop: int,
        symbol: str | None = None,
        first_bar_at: Callable[[int], int] | None = None,
    ) -> int | None:
        """The first bar index in [start, stop) at which `on_bar` would return a fill for
        `orders` (or report an IOC cancel: an IOC's first eligible bar always counts), None if
        there is none — every bar before the answer can be skipped.

        `arrays`: one symbol's bars as numpy columns, `ts` (or `timestamp`, int64 ns, bar open,
        ascending), `open`, `high`, `low` and, with a participation cap, `volume`. `orders`
        must be that symbol's (or pass `symbol` to filter). Searched in growing blocks, so the
        cost is proportional to the distance to the answer, not to `stop - start`.
        `first_bar_at(t)`: the index of the first bar opening at or after t, when the caller
        has a faster one than numpy's searchsorted on a scalar (the backtest's bisect).
        """
        ts = arrays["ts"] if "ts" in arrays else arrays["timestamp"]
        start = max(int(start), 0)
        stop = min(int(stop), len(ts))
        todo = _working(orders, symbol)
        if start >= stop or not todo:
            return None
        if first_bar_at is None:
            ts = np.asarray(ts)
            first_bar_at = (ts if ts.dtype == np.int64 else ts.astype(np.int64)).searchsorted
        # each order's eligible bars [a, b): opened at or after its creation, before its expiry
        spans = []
        end = start
        for o in todo:
            b = stop if o.expire_ts is None else min(stop, int(first_bar_at(o.expire_ts)))
            a = max(int(first_bar_at(o.created_ts)), start)
            if a < b:
                spans.append((a, b, o))
                end = max(end, b)
        if not spans:
            return None
        lot = self._instruments[symbol if symbol is not None else todo[0].symbol].lot_size
        cap = self.cfg.execution.max_volume_participation
        lo, block = start, 256
        while lo < end:
            hi = min(end, lo + block)
            best = hi  # the first bar found so far in [lo, hi); hi: none
            tradable = None  # the block's bars in which the participation cap allows a lot
            for a, b, order in spans:
                a = a if a > lo else lo
                b = b if b < best else best  # only an earlier bar can change the answer
                if a >= b:
                    continue
                if order.tif == TimeInForce.IOC:
                    best = a  # its one bar: a fill or a cancel, either way an event
                    continue
                mask = _reach(order, arrays, a, b)
                if mask is None:
                    continue
                if cap > 0:
                    if tradable is None:
                        volume = np.asarray(arrays["volume"][lo:hi], dtype=np.float64)
                        tradable = np.floor(cap * volume / lot + _FLOOR_EPS) >= 1
                    window = tradable[a - lo : b - lo]
                    mask = window if mask is True else mask & window
                elif mask is True:
                    best = a
                    continue
                k = int(mask.argmax())
                if mask[k]:
                    best = a + k
            if best < hi:
                return best
            lo, block = hi, block * 4
        return None


def _working(orders: Iterable[Order], symbol: str | None) -> list[Order]:
    """The orders (of `symbol`, None: all) that can still fill: open, with quantity left."""
    return [
        o
        for o in orders
        if o.status in OPEN_STATUSES
        and (symbol is None or o.symbol == symbol)
        and o.quantity - o.filled_qty > QTY_EPS * max(1.0, o.quantity)
    ]


def _one_per_oco(cands: list[tuple[_Candidate, float]], tick_mode: bool) -> list[tuple[_Candidate, float]]:
    """One fill per OCO group: the leg the open reaches, else the stop, else the first given
    (tick mode: the leg a trade reaches first, then the same); entries and exits first."""
    chosen: dict[str, tuple[_Candidate, float]] = {}
    for c, qty in cands:
        key = c.order.oco_id
        if key is None:
            continue
        best = chosen.get(key)
        if best is None or _priority(c, tick_mode) < _priority(best[0], tick_mode):
            chosen[key] = (c, qty)
    winners = [(c, q) for c, q in cands if c.order.oco_id is None or chosen[c.order.oco_id][0] is c]
    winners.sort(key=lambda cq: cq[0].order.role in LEG_ROLES)  # stable: entries/exits first
    return winners


def _reach(order: Order, arrays: Mapping[str, np.ndarray], a: int, b: int) -> np.ndarray | bool | None:
    """The bars of [a, b) whose prices reach `order` (a mask), True when any bar does (a
    market order, or a stop already triggered), None when none can (no price)."""
    otype = order.order_type
    if otype == OrderType.MARKET or (otype == OrderType.STOP and order.filled_qty > 0):
        return True
    buy = order.side == Side.BUY
    if otype == OrderType.LIMIT and order.limit_price is not None:
        return arrays["low"][a:b] < order.limit_price if buy else arrays["high"][a:b] > order.limit_price
    if otype == OrderType.STOP and order.stop_price is not None:
        return arrays["high"][a:b] >= order.stop_price if buy else arrays["low"][a:b] <= order.stop_price
    return None


def _priority(c: _Candidate, tick_mode: bool) -> tuple[int, ...]:
    return (c.tick, *_rank(c)) if tick_mode else _rank(c)


def _rank(c: _Candidate) -> tuple[int, int]:
    """OCO priority in one bar: reached at the open first, then stops before limits."""
    return (0 if c.at_open else 1, 0 if c.order.order_type == OrderType.STOP else 1)
