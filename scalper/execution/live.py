"""Which execution service a run uses: the paper broker, or a live exchange (see docs/LIVE.md).

`LiveExecutionService` is the paper `ExecutionService` with the exchange in place of the
PaperBroker's fill model. The OrderManager, the Portfolio and the trade book stay the one
accounting: every exchange fill becomes a `Fill` that goes through `_on_fill`, exactly as
a paper fill does. What changes:

* an accepted ENTRY (and a market replacement of an expired limit, a flatten's EXIT) is sent
  at once with its client order id; an exchange rejection cancels it locally
  (`order_rejected:exchange_rejected: ...` in the signal record);
* every order is looked up by its client id BEFORE it is sent: the TradingService replays its
  journal through a fresh service after a crash, and a replayed submit must re-attach to the
  order the exchange already has, never send a second one;
* bracket legs stay in the OrderManager (service-managed, as on Binance spot): when a bar
  reaches a leg's price, the leg is sent as a MARKET order under its own client id;
* each minute the orders working on the exchange are polled (cumulative fills ->
  `CcxtBroker.new_fills`); orders the exchange ended are closed; due expiries are canceled
  on the exchange first (a fill that raced the cancel is kept), then expired locally;
  orders the manager closed (OCO, bracket exit, shutdown) are canceled on the exchange;
* `BrokerUnavailable` (an order whose fate is unknown) refuses new entries until every such
  order has been found, or found missing, on the exchange.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from scalper.backtest import MIN, SignalRecord
from scalper.config import Config
from scalper.execution.orders import LEG_ROLES, OPEN_STATUSES, OrderManager
from scalper.trading import Decision, ExecutionService, MinuteReport
from scalper.types import Bar, Fill, Order, OrderRole, OrderStatus, OrderType, Side

log = logging.getLogger(__name__)

BROKER_UNAVAILABLE = "broker_unavailable"


def is_live(cfg: Config) -> bool:
    """Orders go to a real exchange (or its sandbox): not a paper run, not a dry run."""
    return cfg.execution.broker == "ccxt" and not cfg.feed.ccxt.dry_run


def make_execution(cfg: Config) -> ExecutionService:
    """The TradingService's domain object for this config: paper unless `is_live(cfg)`."""
    if is_live(cfg):
        return LiveExecutionService(cfg)
    return ExecutionService(cfg)


class _MirroredOrders(OrderManager):
    """The OrderManager, with its cancel-all (end of run, Ctrl-C) done on the exchange first."""

    def __init__(self, cfg: Config, service: LiveExecutionService):
        super().__init__(cfg)
        self.service = service

    def cancel_all(self, ts: int, reason: str = "canceled") -> list[Order]:
        self.service._cancel_on_exchange(self.open_orders(), ts, close=False)
        out = super().cancel_all(ts, reason)
        self.service._sync_cancels()
        open_positions = {s: p.quantity for s, p in self.service.portfolio.positions.items() if p.quantity}
        if open_positions:
            log.warning("orders canceled; positions stay OPEN on the exchange: %s", open_positions)
        return out


class LiveExecutionService(ExecutionService):
    """Orders on an exchange through CcxtBroker, with the paper service's accounting."""

    def __init__(self, cfg: Config, broker: Any = None):
        from scalper.execution.ccxt import CcxtBroker

        super().__init__(cfg)
        self.orders = _MirroredOrders(cfg, self)
        self.exchange = broker if broker is not None else CcxtBroker(cfg)
        self.exchange.connect()
        if self.exchange.bracket_owner != "service":
            # the legs are followed here whatever the venue could do: never two exits for one leg
            log.warning("%s could hold brackets; the service manages them instead", self.exchange)
        self.working: dict[str, Order] = {}  # sent, not final on the exchange: client id -> order
        self.unknown: set[str] = set()  # sent without an answer (BrokerUnavailable)
        self.unavailable: str | None = None  # why new entries are refused
        self._short_exits: dict[str, float] = {}  # exits capped at the base asset held

    def __getstate__(self) -> dict[str, Any]:
        """The service travels (Ray's result()) without its exchange connection."""
        state = dict(self.__dict__)
        state["exchange"] = None
        return state

    # ------------------------------------------------------------------ the minute

    def on_minute(self, bars: Sequence[Bar], ticks: Mapping[str, np.ndarray] | None = None) -> MinuteReport:
        """Exchange fills during the minute's bars, legs reached, expiries (exchange first)."""
        t = bars[0].ts
        self._resolve_unknown(t + MIN)
        due = [o for o in self.working.values() if o.expire_ts is not None and o.expire_ts <= t + MIN]
        self._cancel_on_exchange(due, t + MIN, close=False)  # the base class expires them
        report = super().on_minute(bars, ticks)
        self._send_unsent(t + MIN)
        self._sync_cancels()
        return report

    def _broker_fills(
        self, bar: Bar, open_orders: list[Order], ticks: np.ndarray | None = None
    ) -> list[Fill]:
        """Poll the symbol's working orders, then send the legs the bar reached (their fills
        are applied here, in order, so the base class gets nothing more to apply)."""
        for order in [o for o in open_orders if o.client_order_id in self.working]:
            self._follow(
                order, self._ask(lambda o=order: self.exchange.order_status(o.client_order_id, o.symbol))
            )
        for leg in self._legs_reached(bar):
            self._place(leg, bar.close, as_market=True, now_ts=bar.ts + MIN)
        return []

    def _legs_reached(self, bar: Bar) -> list[Order]:
        """One leg per bracket whose price this bar reached (the stop first when both were)."""
        out: dict[str, Order] = {}
        for leg in self.orders.open_orders(bar.symbol):
            if leg.role not in LEG_ROLES or leg.client_order_id in self.working or leg.created_ts > bar.ts:
                continue
            if leg.role == OrderRole.STOP_LOSS:
                stop = leg.stop_price
                hit = stop is not None and (bar.low <= stop if leg.side == Side.SELL else bar.high >= stop)
            else:
                limit = leg.limit_price
                hit = limit is not None and (bar.high >= limit if leg.side == Side.SELL else bar.low <= limit)
            key = leg.oco_id or leg.client_order_id
            if hit and (key not in out or leg.role == OrderRole.STOP_LOSS):
                out[key] = leg
        return list(out.values())

    # ------------------------------------------------------------------ submit

    def submit(self, decisions: Sequence[Decision]) -> list[SignalRecord]:
        """Orders for the approved decisions, sent to the exchange as they are accepted."""
        out = []
        for d in decisions:
            if d.approved and d.intent is not None and self.unavailable is not None:
                rec = SignalRecord(d.signal, False, BROKER_UNAVAILABLE, self.unavailable, None, 0.0)
                self.records.append(rec)
                out.append(rec)
                continue
            rec = super().submit([d])[0]
            out.append(rec)
            order = self.orders.get(rec.client_order_id) if rec.client_order_id else None
            if order is None or not rec.approved:
                continue
            refused = self._place(order, d.close, now_ts=d.signal.decided_ts)
            if refused:
                rec.approved, rec.reason = False, f"order_rejected:{refused}"
        return out

    # ------------------------------------------------------------------ exchange plumbing

    def _ask(self, call: Callable[[], Any]) -> Any:
        """One exchange call; BrokerUnavailable is remembered (no new entries) and gives None."""
        from scalper.execution.ccxt import BrokerUnavailable

        try:
            return call()
        except BrokerUnavailable as e:
            self._mark_unavailable(str(e))
            return None

    def _mark_unavailable(self, why: str) -> None:
        if self.unavailable is None:
            log.error("exchange unavailable, new entries refused until its orders are known: %s", why)
        self.unavailable = why

    def _place(self, order: Order, ref_price: float, *, now_ts: int, as_market: bool = False) -> str:
        """Send `order` once (looked up by client id first: a replayed call re-attaches to
        the exchange's order); returns the refusal reason, "" when it is on the exchange."""
        from scalper.execution.ccxt import BrokerUnavailable

        sent = order
        try:
            report = self.exchange.order_status(order.client_order_id, order.symbol)
            if report is None:
                if as_market:
                    sent = self._exit_order(order)
                report = self.exchange.submit(sent, ref_price=ref_price)
            else:
                log.info("order %s already on the exchange: re-attached, not sent", order.client_order_id)
        except BrokerUnavailable as e:
            self.working[order.client_order_id] = order
            self.unknown.add(order.client_order_id)
            self._mark_unavailable(str(e))
            return ""
        if as_market and report.quantity < order.quantity * (1 - 1e-9):  # sent (or found) capped
            self._short_exits[order.client_order_id] = report.quantity - order.filled_qty
        if report.status == OrderStatus.REJECTED and not report.filled_qty:
            reason = report.reason or "exchange_rejected"
            self.orders.cancel(order.client_order_id, now_ts, reason)
            return reason
        self.working[order.client_order_id] = order
        self._follow(order, report, now_ts)
        return ""

    def _exit_order(self, leg: Order) -> Order:
        """A reached leg as the MARKET order sent for it. A spot sell is capped at the base
        asset held: the entry's fee was paid in it, so the holding is a little short of the
        leg (within `position_tolerance_pct`); its fill then closes the whole leg."""
        qty = leg.remaining
        if leg.side == Side.SELL:
            base = self.exchange._market(leg.symbol)["base"]
            held = self.exchange.balances().get(base)
            free = held.free if held is not None else 0.0
            if free < qty and qty - free <= qty * self.cfg.feed.ccxt.position_tolerance_pct / 100:
                qty = free
        return msgspec.structs.replace(
            leg, order_type=OrderType.MARKET, limit_price=None, quantity=leg.filled_qty + qty
        )

    def _follow(self, order: Order, report: Any, now_ts: int | None = None, close: bool = True) -> None:
        """Apply what the exchange reports for `order`: new fills, then (`close`) its end."""
        if report is None:
            return
        floor = now_ts if now_ts is not None else order.updated_ts
        capped = self._short_exits.get(order.client_order_id)
        if order.status in OPEN_STATUSES:
            for fill in self.exchange.new_fills(order, report):
                if capped is not None and not report.is_open and report.filled_qty >= capped * (1 - 1e-9):
                    fill = msgspec.structs.replace(fill, quantity=order.remaining)  # the fee's dust
                fill = msgspec.structs.replace(fill, ts=max(fill.ts, floor))
                self.fills.append(fill)
                self._on_fill(fill, self.book)
        if report.is_open:
            return
        self.working.pop(order.client_order_id, None)
        if close and order.status in OPEN_STATUSES:  # canceled / expired on the exchange
            if order.role in LEG_ROLES:
                log.error(
                    "exit %s ended %s with %.10g left: the position is not fully closed",
                    order.client_order_id,
                    report.status.value,
                    order.remaining,
                )
            self.orders.cancel(
                order.client_order_id, max(report.ts, floor), f"{report.status.value}_on_exchange"
            )

    def _cancel_on_exchange(self, orders: Iterable[Order], ts: int, close: bool = True) -> None:
        """Cancel working orders on the exchange and apply any fill that came first."""
        for order in list(orders):
            if order.client_order_id not in self.working:
                continue
            report = self._ask(lambda o=order: self.exchange.cancel(o.client_order_id, o.symbol))
            self._follow(order, report, ts, close)

    def _send_unsent(self, ts: int) -> None:
        """Orders the manager opened by itself (an expired limit's market replacement, a
        flatten's exit) are sent now; entries were sent when submitted, legs when reached."""
        for order in self.orders.open_orders():
            if order.role not in LEG_ROLES and order.client_order_id not in self.working:
                self._place(order, self._last_close.get(order.symbol, 0.0), now_ts=ts)

    def _sync_cancels(self) -> None:
        """Orders the manager closed (OCO, bracket exit, shutdown) canceled on the exchange."""
        done = [o for cid, o in self.working.items() if o.status.is_final and cid not in self.unknown]
        for order in done:
            report = self._ask(lambda o=order: self.exchange.cancel(o.client_order_id, o.symbol))
            self.working.pop(order.client_order_id, None)
            if report is not None and report.filled_qty > order.filled_qty + 1e-12:
                log.error(
                    "order %s filled %.10g on the exchange after it was closed here (%s): "
                    "reconcile the position",
                    order.client_order_id,
                    report.filled_qty - order.filled_qty,
                    order.reason,
                )

    def _resolve_unknown(self, ts: int) -> None:
        """Orders sent without an answer: found -> followed, missing -> canceled here. When
        the exchange answers again and no order is unknown, entries are allowed again."""
        from scalper.execution.ccxt import BrokerUnavailable

        if self.unavailable is None:
            return
        try:
            for cid in sorted(self.unknown):
                order = self.working[cid]
                report = self.exchange.order_status(cid, order.symbol)
                self.unknown.discard(cid)
                if report is None:
                    self.working.pop(cid, None)
                    if order.status in OPEN_STATUSES:
                        self.orders.cancel(cid, ts, "never_sent")
                else:
                    self._follow(order, report, ts)
            self.exchange.balances()  # answering at all (the failure may not have been an order)
        except BrokerUnavailable as e:
            self._mark_unavailable(str(e))
            return
        log.warning("exchange answering again and every order known: entries allowed")
        self.unavailable = None
