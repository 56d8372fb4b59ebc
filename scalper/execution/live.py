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
* brackets (`CcxtBroker.bracket_owner`): "exchange" = once no part of the entry is working
  any more, its two legs go to the exchange as ONE OCO order list and are followed like any
  working order (until then, or when the exchange refuses the list or it is canceled there,
  the service watches them); "service" = the legs stay in the OrderManager and a leg whose
  price a bar reached is sent as a MARKET order under its own client id;
* an exit (a leg, or an EXIT) the exchange ends part-filled or unfilled (thin liquidity: a
  market order's rest EXPIRES) is not given up: its rest becomes a MARKET EXIT `<id>-r<n>`,
  sent at the end of that minute; if that one is cut short too, the next minute sends the
  next rest (one re-send per exit and minute; each id is sent once);
* each minute the orders working on the exchange are polled (cumulative fills ->
  `CcxtBroker.new_fills`, reports with fills applied first, so an OCO's filled leg cancels
  its sibling before the sibling's EXPIRED is read); orders the exchange ended are closed;
  due expiries are canceled on the exchange first (a fill that raced the cancel is kept),
  then expired locally; orders the manager closed (OCO, bracket exit) are canceled there;
* the end of a run (`orders.cancel_all`) cancels ENTRY orders only: a position's bracket legs
  and exits stay (exchange-side legs keep resting on the exchange, service-managed ones stay
  open in the ledger), so `scalper run --resume` picks the position up with its protection;
* `BrokerUnavailable` (an order whose fate is unknown) refuses new entries until every such
  order has been found, or found missing, on the exchange;
* `feed.ccxt.resume_ledger` (set by `scalper run --resume`): the service starts from an
  earlier run's reconciled ledger: its orders, fills, positions and trades come back (the
  books continue), its open orders are looked up on the exchange, entries still working
  there are canceled (their signal is stale).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from scalper.backtest import MIN, SignalRecord, SymbolData
from scalper.config import Config
from scalper.execution.orders import LEG_ROLES, OPEN_STATUSES, QTY_EPS, OrderEvent, OrderManager
from scalper.trading import Decision, ExecutionService, MinuteReport
from scalper.types import Bar, Fill, Order, OrderRole, OrderStatus, OrderType, Side

log = logging.getLogger(__name__)

BROKER_UNAVAILABLE = "broker_unavailable"
EXIT_ROLES = LEG_ROLES | {OrderRole.EXIT}
_REST = re.compile(r"-r\d+$")


def is_live(cfg: Config) -> bool:
    """Orders go to a real exchange (or its sandbox): not a paper run, not a dry run."""
    return cfg.execution.broker == "ccxt" and not cfg.feed.ccxt.dry_run


def run_mode(cfg: Config) -> str:
    """What a run trades on, as summary.json and its printed summary say it: "paper",
    "dry-run" (live data, paper broker), "sandbox" (the exchange's test network) or "live"."""
    if cfg.feed.kind != "ccxt":
        return "paper"
    if not is_live(cfg):
        return "dry-run"
    return "sandbox" if cfg.feed.ccxt.sandbox else "live"


def make_execution(cfg: Config) -> ExecutionService:
    """The TradingService's domain object for this config: paper unless `is_live(cfg)`."""
    if is_live(cfg):
        return LiveExecutionService(cfg)
    return ExecutionService(cfg)


class _MirroredOrders(OrderManager):
    """The OrderManager of a live service: its end-of-run cancel is done on the exchange first
    and keeps the exits of open positions; it can be restored from a ledger."""

    def __init__(self, cfg: Config, service: LiveExecutionService):
        super().__init__(cfg)
        self.service = service

    def cancel_all(self, ts: int, reason: str = "canceled") -> list[Order]:
        """Cancel the ENTRY orders (on the exchange first). Bracket legs and exits of open
        positions stay: canceling them would leave the position unprotected while nobody
        watches it; a resumed run takes them over (exchange-side legs keep resting there)."""
        entries = [o for o in self.open_orders() if o.role == OrderRole.ENTRY]
        self.service._cancel_on_exchange(entries, ts, close=False)
        out: list[Order] = []
        for order in entries:
            out += self.cancel(order.client_order_id, ts, reason)
        self.service._place_brackets(ts)  # the filled part of a canceled entry gets its OCO now
        self.service._sync_cancels()
        open_positions = {s: p.quantity for s, p in self.service.portfolio.positions.items() if p.quantity}
        if open_positions:
            kept = [o.client_order_id for o in self.open_orders()]
            log.warning(
                "entries canceled; positions stay OPEN on the exchange: %s, with their exits %s "
                "(exchange-side: %s); `scalper run --resume` takes them over",
                open_positions,
                kept,
                sorted(c for c in kept if c in self.service.working) or "none",
            )
        return out

    def venue_ends_sibling(self, leg: Order) -> bool:
        """A leg resting on the exchange in an OCO list: the exchange ends (EXPIRES) its sibling
        at the leg's first fill, partial or not, so the sibling is closed here too (kept open,
        it would be read as a list canceled by hand and its rest sent at market while the
        leg's rest still holds the coins). Fills are applied before `_follow` forgets it rests."""
        return leg.client_order_id in self.service._resting

    def exit_rest(self, order: Order, ts: int, status: OrderStatus, position_qty: float) -> Order | None:
        """`order`, an exit the exchange ended (`status`) before it was filled, is closed here
        and its rest (at most the position) becomes a MARKET EXIT `<exit id>-r<n>` (a new id
        each time: an id is never sent twice). A leg's bracket is over: its sibling and any
        entry still working are canceled, as a fill completing the leg would have."""
        cause = order.role.value if order.role in LEG_ROLES else order.reason  # the trade's exit reason
        if order.status in OPEN_STATUSES:
            self._set(order, status, ts, f"{status.value}_on_exchange")
        if order.role in LEG_ROLES:
            self._close_bracket(order, ts)
        qty = min(order.remaining, abs(position_qty))
        if qty <= QTY_EPS * max(1.0, order.quantity):
            return None
        base = _REST.sub("", order.client_order_id)
        n = 1
        while f"{base}-r{n}" in self._orders:
            n += 1
        rest = self._add(
            Order(
                client_order_id=f"{base}-r{n}",
                symbol=order.symbol,
                side=order.side,
                order_type=OrderType.MARKET,
                quantity=qty,
                role=OrderRole.EXIT,
                created_ts=ts,
                updated_ts=ts,
                parent_id=order.parent_id,
                strategy=order.strategy,
                reason=cause,
            )
        )
        self._set(rest, OrderStatus.ACCEPTED, ts)
        return rest

    def ready_brackets(self) -> list[tuple[Order, Order]]:
        """(stop, target) of every bracket whose entry is done (no part of it still working)
        and neither leg has started filling: what can go to the exchange as one OCO."""
        out = []
        for stop in self.open_orders():
            if stop.role != OrderRole.STOP_LOSS or stop.filled_qty or stop.parent_id is None:
                continue
            root = stop.parent_id
            target = self._orders.get(f"{root}-tp")
            if target is None or target.status not in OPEN_STATUSES or target.filled_qty:
                continue
            if any(self._orders[e].status in OPEN_STATUSES for e in self._entries.get(root, [])):
                continue  # a limit entry still filling: the legs would have to be re-sized
            out.append((stop, target))
        return out

    def restore(self, orders: Sequence[Order], events: Iterable[OrderEvent], fill_ids: Iterable[str]) -> None:
        """An earlier run's orders (as the ledger has them), their transitions and fill ids,
        with the bracket bookkeeping rebuilt from the legs."""
        for order in orders:
            self._add(order)
        self.events.extend(events)
        self._fill_ids.update(fill_ids)
        for order in orders:
            if order.role == OrderRole.STOP_LOSS and order.parent_id is not None:
                target = self._orders.get(f"{order.parent_id}-tp")
                if order.stop_price is not None and target is not None and target.limit_price is not None:
                    self.bracket_prices[order.parent_id] = (order.stop_price, target.limit_price)
        for order in orders:
            if order.role != OrderRole.ENTRY:
                continue
            cid = order.client_order_id
            if order.parent_id is not None and order.parent_id in self._root:  # an `-mkt` replacement
                root = self._root[order.parent_id]
                self._root[cid] = root
                self._entries[root].append(cid)
            elif cid in self.bracket_prices:  # an entry whose legs exist (its bracket is known)
                self._root[cid] = cid
                self._entries[cid] = [cid]


class LiveExecutionService(ExecutionService):
    """Orders on an exchange through CcxtBroker, with the paper service's accounting."""

    def __init__(self, cfg: Config, broker: Any = None):
        from scalper.execution.ccxt import CcxtBroker

        super().__init__(cfg)
        self.orders = _MirroredOrders(cfg, self)
        self.exchange = broker if broker is not None else CcxtBroker(cfg)
        self.exchange.connect()
        self.exchange_brackets = self.exchange.bracket_owner == "exchange"
        self.working: dict[str, Order] = {}  # sent, not final on the exchange: client id -> order
        self.unknown: set[str] = set()  # sent without an answer (BrokerUnavailable)
        self.unavailable: str | None = None  # why new entries are refused
        self._short_exits: dict[str, float] = {}  # exits capped at the base asset held
        self._resting: set[str] = set()  # bracket legs resting on the exchange (an OCO)
        self._service_legs: set[str] = set()  # roots whose legs the service watches after all
        if cfg.feed.ccxt.resume_ledger:
            self._resume(cfg.feed.ccxt.resume_ledger)

    def __getstate__(self) -> dict[str, Any]:
        """The service travels (Ray's result()) without its exchange connection."""
        state = dict(self.__dict__)
        state["exchange"] = None
        return state

    def _equity_curve(self, data: Mapping[str, SymbolData]) -> tuple[np.ndarray, np.ndarray]:
        """The paper curve, with a position this run saw no bar of (a resumed run's symbol
        that has not traded yet) marked at its last fill's price from the first minute: the
        run is written whatever its symbols did, its ledger with it."""
        grid = [sd.ts[0] for sd in data.values() if len(sd)]
        last = {f.symbol: f.price for f in self.fills if f.symbol not in data}
        if grid and last:
            start = np.array([min(grid)], dtype=np.int64)
            data = {
                **data,
                **{s: SymbolData(s, {"timestamp": start, "close": np.array([p])}) for s, p in last.items()},
            }
        return super()._equity_curve(data)

    # ------------------------------------------------------------------ the minute

    def on_minute(self, bars: Sequence[Bar], ticks: Mapping[str, np.ndarray] | None = None) -> MinuteReport:
        """Exchange fills during the minute's bars, legs reached, expiries (exchange first)."""
        t = bars[0].ts
        self._resolve_unknown(t + MIN)
        due = [o for o in self.working.values() if o.expire_ts is not None and o.expire_ts <= t + MIN]
        self._cancel_on_exchange(due, t + MIN, close=False)  # the base class expires them
        report = super().on_minute(bars, ticks)
        self._send_unsent(t + MIN)
        self._place_brackets(t + MIN)
        self._sync_cancels()
        return report

    def _broker_fills(
        self, bar: Bar, open_orders: list[Order], ticks: np.ndarray | None = None
    ) -> list[Fill]:
        """Poll the symbol's working orders, then send the legs the bar reached (their fills
        are applied here, in order, so the base class gets nothing more to apply)."""
        polled = [
            (o, self._ask(lambda o=o: self.exchange.order_status(o.client_order_id, o.symbol)))
            for o in open_orders
            if o.client_order_id in self.working
        ]
        # fills first: an OCO leg that filled cancels its sibling before the sibling's EXPIRED is read
        polled.sort(key=lambda x: 0 if x[1] is not None and x[1].filled_qty > x[0].filled_qty else 1)
        for order, report in polled:
            self._follow(order, report, bar.ts)
        for leg in self._legs_reached(bar):
            self._place(leg, bar.close, as_market=True, now_ts=bar.ts + MIN)
        return []

    def _legs_reached(self, bar: Bar) -> list[Order]:
        """One leg per bracket whose price this bar reached (the stop first when both were);
        legs resting on the exchange are the exchange's to trigger, and a bracket with a leg
        still working there (a market leg left open part-filled: its sibling, re-sized, stays
        open) is being closed by it, so its other leg is not sent too."""
        out: dict[str, Order] = {}
        legs = [o for o in self.orders.open_orders(bar.symbol) if o.role in LEG_ROLES]
        busy = {o.oco_id for o in legs if o.client_order_id in self.working and o.oco_id}
        for leg in legs:
            if leg.client_order_id in self.working or leg.created_ts > bar.ts or leg.oco_id in busy:
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
        last_ts: int | None = None
        for d in decisions:
            last_ts = d.signal.decided_ts
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
        if last_ts is not None:
            self._place_brackets(last_ts)  # a market entry that filled at once is protected now
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
            if order.role in EXIT_ROLES:
                log.error("exit %s refused (%s): the position stays open", order.client_order_id, reason)
            return reason
        self.working[order.client_order_id] = order
        self._follow(order, report, now_ts)
        return ""

    def _exit_qty(self, leg: Order) -> float:
        """What an exit can sell: a spot sell is capped at the base asset held, because the
        entry's fee was paid in it, so the holding is a little short of the position (within
        `position_tolerance_pct` of the bracket's size); the capped order's fill then closes
        the whole leg (or exit)."""
        qty = leg.remaining
        if leg.side == Side.SELL:
            base = self.exchange._market(leg.symbol)["base"]
            held = self.exchange.balances().get(base)
            free = held.free if held is not None else 0.0
            size = max(
                [qty] + [o.quantity for o in self.orders.legs(leg.parent_id)] if leg.parent_id else [qty]
            )
            if free < qty and qty - free <= size * self.cfg.feed.ccxt.position_tolerance_pct / 100:
                qty = free
        return qty

    def _exit_order(self, leg: Order) -> Order:
        """A reached leg (or an exit's rest) as the MARKET order sent for it, capped (`_exit_qty`)."""
        return msgspec.structs.replace(
            leg, order_type=OrderType.MARKET, limit_price=None, quantity=leg.filled_qty + self._exit_qty(leg)
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
        cid = order.client_order_id
        self.working.pop(cid, None)
        resting = cid in self._resting
        self._resting.discard(cid)
        if not close or order.status not in OPEN_STATUSES:
            return
        ts = max(report.ts, floor)
        status = report.status if report.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) else None
        if resting and not order.filled_qty:
            # the OCO was canceled on the exchange (by hand?): the service watches the legs again
            root = order.parent_id or cid
            if root not in self._service_legs:
                log.warning("bracket of %s ended on the exchange unfilled: the service watches it now", root)
            self._service_legs.add(root)
            return
        if order.role in EXIT_ROLES:
            position = self.portfolio.positions.get(order.symbol)
            rest = self.orders.exit_rest(
                order, ts, status or OrderStatus.EXPIRED, position.quantity if position else 0.0
            )
            log.warning(
                "exit %s ended %s with %.10g of %.10g left: %s",
                cid,
                report.status.value,
                order.remaining,
                order.quantity,
                f"the rest goes out as {rest.client_order_id} ({rest.quantity:.10g})"
                if rest
                else "the position is closed",
            )
            return
        self.orders.cancel(cid, ts, f"{report.status.value}_on_exchange")

    def _place_brackets(self, ts: int) -> None:
        """Exchange-side brackets: each ready bracket (its entry done) goes to the exchange as
        ONE OCO order list, looked up by the stop's client id first (never sent twice). A
        refused list leaves the legs to the service."""
        from scalper.execution.ccxt import BrokerUnavailable

        if not self.exchange_brackets or self.unavailable is not None:
            return
        for stop, target in self.orders.ready_brackets():
            root = stop.parent_id or stop.client_order_id
            if stop.client_order_id in self.working or root in self._service_legs:
                continue
            legs = (stop, target)
            try:
                found = self.exchange.order_status(stop.client_order_id, stop.symbol)
                if found is not None:
                    log.info("bracket of %s already on the exchange: re-attached, not sent", root)
                    other = self.exchange.order_status(target.client_order_id, target.symbol)
                    reports = {stop.client_order_id: found, target.client_order_id: other}
                else:
                    reports = self.exchange.submit_oco(stop, target, self._exit_qty(stop))
            except BrokerUnavailable as e:
                for leg in legs:
                    self.working[leg.client_order_id] = leg
                    self.unknown.add(leg.client_order_id)
                    self._resting.add(leg.client_order_id)
                self._mark_unavailable(str(e))
                return
            refused = [r for r in reports.values() if r is None or r.status == OrderStatus.REJECTED]
            if refused:
                log.error(
                    "bracket of %s not placed on the exchange (%s): the service watches its legs",
                    root,
                    refused[0].reason if refused[0] is not None else "a leg is missing",
                )
                self._service_legs.add(root)
                continue
            for leg in legs:
                report = reports[leg.client_order_id]
                self.working[leg.client_order_id] = leg
                self._resting.add(leg.client_order_id)
                if report.quantity < leg.remaining * (1 - 1e-9):
                    self._short_exits[leg.client_order_id] = report.quantity
            for leg in sorted(legs, key=lambda o: -reports[o.client_order_id].filled_qty):
                self._follow(leg, reports[leg.client_order_id], ts)

    def _cancel_on_exchange(self, orders: Iterable[Order], ts: int, close: bool = True) -> None:
        """Cancel working orders on the exchange and apply any fill that came first."""
        for order in list(orders):
            if order.client_order_id not in self.working:
                continue
            report = self._ask(lambda o=order: self.exchange.cancel(o.client_order_id, o.symbol))
            self._follow(order, report, ts, close)

    def _send_unsent(self, ts: int) -> None:
        """Orders the manager opened by itself (an expired limit's market replacement, a
        flatten's exit, an exit's rest) are sent now; entries were sent when submitted, legs
        are sent when reached (service) or as an OCO (exchange)."""
        for order in self.orders.open_orders():
            if order.role not in LEG_ROLES and order.client_order_id not in self.working:
                self._place(
                    order,
                    self._last_close.get(order.symbol, 0.0),
                    now_ts=ts,
                    as_market=order.role == OrderRole.EXIT,
                )

    def _sync_cancels(self) -> None:
        """Orders the manager closed (OCO, bracket exit) canceled on the exchange."""
        done = [o for cid, o in self.working.items() if o.status.is_final and cid not in self.unknown]
        for order in done:
            report = self._ask(lambda o=order: self.exchange.cancel(o.client_order_id, o.symbol))
            self.working.pop(order.client_order_id, None)
            self._resting.discard(order.client_order_id)
            if report is not None and report.filled_qty > order.filled_qty + 1e-12:
                log.error(
                    "order %s filled %.10g on the exchange after it was closed here (%s): "
                    "reconcile the position",
                    order.client_order_id,
                    report.filled_qty - order.filled_qty,
                    order.reason,
                )

    def _resolve_unknown(self, ts: int) -> None:
        """Orders sent without an answer: found -> followed; missing -> an entry is canceled
        here ("never_sent"), an exit or a leg is sent again later. When the exchange answers
        again and no order is unknown, entries are allowed again."""
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
                    self._resting.discard(cid)
                    if order.status in OPEN_STATUSES and order.role == OrderRole.ENTRY:
                        self.orders.cancel(cid, ts, "never_sent")
                else:
                    self._follow(order, report, ts)
            self.exchange.balances()  # answering at all (the failure may not have been an order)
        except BrokerUnavailable as e:
            self._mark_unavailable(str(e))
            return
        log.warning("exchange answering again and every order known: entries allowed")
        self.unavailable = None

    # ------------------------------------------------------------------ resume

    def _resume(self, path: str) -> None:
        """Continue the books of an earlier run from its reconciled ledger (`path`): orders,
        transitions, fills, positions, cash and trades come back as they were; then each
        order still open is looked up on the exchange (working there -> followed; an entry is
        canceled, its signal is stale; a leg or exit not there is the service's to send)."""
        from scalper.execution.ccxt import clock_of
        from scalper.execution.portfolio import Portfolio
        from scalper.ledger import Ledger

        with Ledger(path) as ledger:
            starting = ledger.get_meta("starting_cash")
            orders = ledger.orders()
            events = [
                OrderEvent(e.ts, e.client_order_id, e.from_status, e.to_status, e.reason)  # type: ignore[arg-type]
                for e in ledger.order_events()
            ]
            fills = ledger.fills()
        if isinstance(starting, (int, float)):
            self.portfolio = Portfolio(float(starting))
        self.orders.restore(orders, events, (f.fill_id for f in fills))
        for fill in fills:  # `_on_fill` without the OrderManager: the orders are already in their state
            realized = self.portfolio.apply_fill(fill, self.cfg.instrument(fill.symbol).multiplier)
            pos = self.portfolio.positions[fill.symbol]
            self._after_fill.append((fill.ts, fill.symbol, self.portfolio.cash, pos.quantity, pos.avg_price))
            self.book.on_fill(fill, self.orders.get(fill.client_order_id), realized, self.orders)
            self.fills.append(fill)
        self.risk.drain()  # the earlier run's risk manager heard these already
        now = int(clock_of(self.cfg.feed.ccxt)() * 1e9)
        for order in self.orders.open_orders():
            cid = order.client_order_id
            report = self.exchange.order_status(cid, order.symbol)
            if order.role == OrderRole.ENTRY:
                if report is not None and report.is_open:
                    report = self.exchange.cancel(cid, order.symbol)
                self._follow(order, report, now, close=False)
                self.orders.cancel(cid, now, "stale_at_resume")
                continue
            if report is None:
                continue  # not on the exchange: a service-managed leg, an exit's unsent rest
            self.working[cid] = order
            if order.role in LEG_ROLES and report.is_open:  # an OCO leg resting on the exchange
                self._resting.add(cid)
            if report.quantity < order.quantity * (1 - 1e-9):  # sent capped at the coins held
                self._short_exits[cid] = report.quantity - order.filled_qty
            self._follow(order, report, now)
        log.info(
            "resumed from %s: %d orders (%d open, %d working on the exchange), %d fills, positions %s",
            path,
            len(orders),
            len(self.orders.open_orders()),
            len(self.working),
            len(fills),
            {s: p.quantity for s, p in self.portfolio.positions.items() if p.quantity},
        )
