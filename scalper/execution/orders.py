"""The order state machine and the OrderManager: the trading service's logic, with no I/O.

State machine (`transition`)::

    NEW              -> ACCEPTED | REJECTED
    ACCEPTED         -> PARTIALLY_FILLED | FILLED | CANCELED | EXPIRED
    PARTIALLY_FILLED -> PARTIALLY_FILLED | FILLED | CANCELED | EXPIRED
    FILLED, CANCELED, REJECTED, EXPIRED: final, nothing leaves them

OrderManager conventions:

* Ids are deterministic, so a replay or a restart produces the same ids. The entry order's id
  is the intent's `client_order_id` (submitting it again returns the existing order). From the
  entry id `E`: stop-loss leg `E-sl`, take-profit leg `E-tp`, their OCO group `E-oco`, the
  market order that replaces an expired limit entry `E-mkt`; a flatten's exit order
  `flat-<symbol>-<ts>`.
* A bracket is created when its entry first fills, sized to the filled quantity and re-sized
  as more entry fills arrive. Its legs are stamped `created_ts` = the close of the minute of
  the fill (`(fill.ts // 1 min + 1) * 1 min`), so the fill model makes them active from the
  NEXT bar. Legs point at the entry with `parent_id` and share `oco_id`.
* The first fill of a leg cancels whatever of the entry is still working (reason
  "bracket_exit"): once the trade is being closed, it is not added to. A PARTIAL fill of a leg
  re-sizes its sibling to the position still open (entered - what both legs filled), which
  it keeps protecting; the sibling is canceled (reason "oco") when the leg is FILLED, i.e.
  when the exits together closed the position. (`venue_ends_sibling`: legs the venue holds
  as one OCO list, which it ends at the first fill of either, are closed here at it too.)
* Expiry: a GTD order is live for bars whose open is < `expire_ts`; `expire(ts)` expires the
  orders with `expire_ts <= ts` (call it at each bar close). With
  `execution.limit_expiry_action == "market"`, an expired limit ENTRY with quantity left is
  replaced by a MARKET entry `E-mkt` for the remainder, created at `ts` (its `parent_id` is
  the expired order; its fills grow the same bracket).
* Every status change is appended to `events` as an `OrderEvent` (ts, client_order_id,
  from_status, to_status, reason) — a plain tuple a ledger can persist. Creation itself is not
  an event (the order is; its first event is NEW -> ACCEPTED/REJECTED). Re-sizing a leg is not
  a status change: it shows up in the orders `on_fill` returns.
* The stop and target prices of an entry live in the manager (`bracket_prices`), because
  `Order` has no field for them until the legs exist; so does the entry price its quantity
  was sized at (`entry_prices`: the limit price, or the market order's reference price),
  from which a trade's R-multiple is measured (`planned_risk`).
* Order prices are on the instrument's tick grid: the RiskManager puts an intent's limit,
  stop-loss and take-profit there with `round_to_tick` (nearest tick, as the live broker's
  ccxt `price_to_precision`), so paper, backtest and live place the same prices.
"""

from __future__ import annotations

import logging
import math
import re
from decimal import Decimal
from enum import Enum
from functools import lru_cache, partial
from typing import NamedTuple

from scalper.config import Config, InstrumentConfig, InstrumentTable
from scalper.types import (
    NS_PER_MINUTE,
    Fill,
    Order,
    OrderIntent,
    OrderRole,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

log = logging.getLogger(__name__)

_S = OrderStatus
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.NEW: frozenset({_S.ACCEPTED, _S.REJECTED}),
    _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.EXPIRED}),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.EXPIRED}),
    _S.FILLED: frozenset(),
    _S.CANCELED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
}
OPEN_STATUSES = frozenset({_S.ACCEPTED, _S.PARTIALLY_FILLED})
FINAL_STATUSES = frozenset(s for s in OrderStatus if s.is_final)  # a set lookup, no property call
LEG_ROLES = frozenset({OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT})

# Relative tolerance of quantity arithmetic: a fill within this of the remainder completes it.
QTY_EPS = 1e-9


# |price / tick - k| below this (relative to k) is float noise: the price IS tick k
_TICK_REL_EPS = 1e-12


@lru_cache(maxsize=256)
def step_decimals(step: float) -> int:
    """Decimal places of a tick or lot size (0.001 -> 3, 0.25 -> 2, 1.0 -> 0), to print and
    round prices and quantities without float noise."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 0


@lru_cache(maxsize=256)
def _tick_decimal(tick: float) -> Decimal:
    return Decimal(repr(tick))


@lru_cache(maxsize=256)
def _ticks_per_unit(tick: float) -> int:
    """1 / `tick` when it is a whole number (0.25 -> 4, 0.01 -> 100, 0.05 -> 20), else 0."""
    n = Decimal(1) / _tick_decimal(tick)
    return int(n) if n == n.to_integral_value() else 0


def _on_grid(ticks: int, tick: float) -> float:
    """`ticks` x `tick` without float noise (6571 x 0.25 -> 1642.75, 3 x 0.1 -> 0.3)."""
    n = _ticks_per_unit(tick)
    if n:  # one correctly rounded division: the float nearest the decimal, as float("0.3")
        return ticks / n
    decimals = step_decimals(tick)
    return round(ticks * tick, decimals) if decimals else float(ticks * tick)


def round_to_tick(price: float, tick: float) -> float:
    """`price` on the tick grid: the NEAREST multiple of `tick`, a half tick rounded up (away
    from zero), with the float noise removed (1642.7500000001 -> 1642.75).

    This is ccxt's `price_to_precision` (ROUND: the decimal of `str(price)`, ties away from
    zero), which the live broker applies before sending, so a price rounded here is sent as
    it is. Non-finite prices are returned unchanged (the callers refuse them)."""
    if not math.isfinite(price):
        return price
    q = price / tick
    k = math.floor(q + 0.5)
    # near a half tick, or beyond the precision of floats: decide in decimals, as ccxt does
    if abs(q - math.floor(q) - 0.5) < 1e-6 or abs(q) > 1e9:
        dec, step = Decimal(repr(price)), _tick_decimal(tick)
        missing = abs(dec) % step
        lower = abs(dec) - missing
        k = int(((lower + step) if missing >= step / 2 else lower) / step) * (1 if dec >= 0 else -1)
    return _on_grid(k, tick)


def tick_against(price: float, tick: float, side: Side) -> float:
    """`price` moved onto the tick grid AGAINST a taker on `side`: up for a buy, down for a
    sell (a price already on the grid, float noise aside, stays). A slipped fill price lands
    between ticks; an exchange would fill at the next worse tick."""
    if not math.isfinite(price):
        return price
    q = price / tick
    k = round(q)
    if abs(q - k) <= _TICK_REL_EPS * max(1.0, abs(q)):
        return _on_grid(k, tick)
    return _on_grid(math.ceil(q) if side == Side.BUY else math.floor(q), tick)


class InvalidTransition(Exception):
    """An order status change the state machine does not allow (or a fill it cannot take)."""

    def __init__(
        self, client_order_id: str, from_status: OrderStatus, to_status: OrderStatus, detail: str = ""
    ):
        self.client_order_id = client_order_id
        self.from_status = from_status
        self.to_status = to_status
        msg = f"order {client_order_id}: invalid transition {from_status.value} -> {to_status.value}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class OrderEvent(NamedTuple):
    """One status change, as the ledger stores it."""

    ts: int
    client_order_id: str
    from_status: OrderStatus
    to_status: OrderStatus
    reason: str


# OrderEvent((...)) without the generated __new__'s Python frame: one per status change
_event = partial(tuple.__new__, OrderEvent)


def transition(order: Order, status: OrderStatus, ts: int, reason: str = "") -> None:
    """Move `order` to `status` at event time `ts`, or raise InvalidTransition.

    Sets `updated_ts`; sets `reason` when one is given (a fill keeps the previous reason).
    """
    if status.__class__ is not OrderStatus:  # a plain string; the enum call is slow in hot loops
        status = OrderStatus(status)
    if status not in ALLOWED[order.status]:
        raise InvalidTransition(order.client_order_id, order.status, status)
    order.status = status
    order.updated_ts = ts
    if reason:
        order.reason = reason


def _qty_tol(quantity: float) -> float:
    return QTY_EPS * max(1.0, abs(quantity))


def apply_fill(order: Order, quantity: float, price: float, ts: int) -> None:
    """Add a fill of `quantity` at `price` to `order`: filled_qty, the volume-weighted
    avg_fill_price, then PARTIALLY_FILLED or FILLED.

    Raises ValueError for a non-positive or non-finite quantity/price or an overfill, and
    InvalidTransition when the order cannot be filled in its state (NEW or final).
    """
    if not (math.isfinite(quantity) and quantity > 0):
        raise ValueError(f"order {order.client_order_id}: fill quantity must be > 0, got {quantity}")
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"order {order.client_order_id}: fill price must be > 0, got {price}")
    if order.status not in OPEN_STATUSES:
        raise InvalidTransition(
            order.client_order_id,
            order.status,
            OrderStatus.PARTIALLY_FILLED,
            "fill on an order that is not open",
        )
    new_filled = order.filled_qty + quantity
    tol = _qty_tol(order.quantity)
    if new_filled > order.quantity + tol:
        raise ValueError(
            f"order {order.client_order_id}: overfill, {quantity} more on {order.filled_qty} filled "
            f"of {order.quantity}"
        )
    complete = new_filled >= order.quantity - tol
    order.avg_fill_price = (order.avg_fill_price * order.filled_qty + price * quantity) / new_filled
    order.filled_qty = order.quantity if complete else new_filled
    transition(order, OrderStatus.FILLED if complete else OrderStatus.PARTIALLY_FILLED, ts)


def bar_close_of(ts: int) -> int:
    """The close (= next minute's open) of the 1-minute bar containing event time `ts`."""
    return (ts // NS_PER_MINUTE + 1) * NS_PER_MINUTE


def _enum[E: Enum](kind: type[E], value: object) -> E:
    """`value` as the enum `kind` (the enum's call is slow on the per-order path; most values
    already are members)."""
    return value if value.__class__ is kind else kind(value)  # type: ignore[return-value]


def _id_part(text: str) -> str:
    """`text` reduced to characters every venue accepts in a client order id."""
    return re.sub(r"[^A-Za-z0-9_]", "", text)


class OrderManager:
    """All orders of one trading service: entries, brackets, OCO, expiry, flatten. No I/O."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._orders: dict[str, Order] = {}
        self.events: list[OrderEvent] = []
        # symbol -> number of changes to its orders (created, status, fill, resized): what is
        # derived from one symbol's open orders stays valid while its count does not move
        self.versions: dict[str, int] = {}
        # entry id -> (stop_loss, take_profit) of the bracket it will get
        self.bracket_prices: dict[str, tuple[float, float]] = {}
        # entry id -> the entry price its quantity was sized at (limit price, or the market
        # order's reference price): with the stop, the risk planned per unit
        self.entry_prices: dict[str, float] = {}
        # entry order id (including an `-mkt` replacement) -> root entry id of its bracket
        self._root: dict[str, str] = {}
        # root entry id -> the entry orders that feed its bracket (root first)
        self._entries: dict[str, list[str]] = {}
        self._fill_ids: set[str] = set()
        # orders that may still be open, per symbol, in creation order (orders never reopen, so
        # pruning final ones lazily keeps open_orders/expire O(open) instead of O(all orders))
        self._maybe_open: dict[str, dict[str, Order]] = {}
        self._position: dict[str, int] = {}  # creation rank of each order id
        # no order that may be open expires before this (a lower bound: `expire` is called at
        # every bar close and mostly has nothing to do)
        self._expire_floor: float = math.inf
        self._instruments = InstrumentTable(cfg)

    # ------------------------------------------------------------------------- queries

    @property
    def orders(self) -> list[Order]:
        """Every order ever created, in creation order."""
        return list(self._orders.values())

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """ACCEPTED and PARTIALLY_FILLED orders (of `symbol`), in creation order."""
        if symbol is not None:
            return self._open_of(symbol)
        out = [o for sym in list(self._maybe_open) for o in self._open_of(sym)]
        out.sort(key=lambda o: self._position[o.client_order_id])
        return out

    def open_counts(self, role: OrderRole | None = None) -> dict[str, int]:
        """{symbol: number of open orders (of `role`)} without building sorted lists."""
        out: dict[str, int] = {}
        for sym in self._maybe_open:
            n = len([o for o in self._open_of(sym) if role is None or o.role == role])
            if n:
                out[sym] = n
        return out

    def _open_of(self, symbol: str) -> list[Order]:
        pending = self._maybe_open.get(symbol)
        if not pending:
            return []
        out = [o for o in pending.values() if o.status in OPEN_STATUSES]
        if len(out) != len(pending):  # prune the orders that became final (they never reopen)
            for cid in [cid for cid, o in pending.items() if o.status in FINAL_STATUSES]:
                del pending[cid]
        return out

    def planned_risk(self, entry_id: str, fallback_entry: float) -> tuple[float, float] | None:
        """(entry price, stop-loss) the bracket of `entry_id` (or of the entry it replaced) was
        sized at: the risk per unit the RiskManager planned is |entry - stop| x multiplier.
        None when the bracket is unknown. An entry with no planned price (restored from a
        ledger, or a market order submitted without a reference price) uses its limit price,
        else `fallback_entry` (the caller's average fill price)."""
        root = self._root.get(entry_id, entry_id)
        prices = self.bracket_prices.get(root)
        if prices is None:
            return None
        planned = self.entry_prices.get(root)
        if planned is None:
            entry = self._orders.get(root)
            planned = entry.limit_price if entry is not None else None
        return (fallback_entry if planned is None else planned), prices[0]

    def legs(self, entry_id: str) -> list[Order]:
        """The bracket legs of an entry (stop-loss first), once they exist."""
        root = self._root.get(entry_id, entry_id)
        return [o for o in (self._orders.get(f"{root}-sl"), self._orders.get(f"{root}-tp")) if o is not None]

    # ------------------------------------------------------------------------- internals

    def _set(self, order: Order, status: OrderStatus, ts: int, reason: str = "") -> None:
        before = order.status
        transition(order, status, ts, reason)
        self.events.append(_event((ts, order.client_order_id, before, order.status, reason)))
        self._changed(order.symbol)
        if log.isEnabledFor(logging.DEBUG):  # one call instead of two: four per trade
            log.debug("order %s: %s -> %s at %d %s", order.client_order_id, before, order.status, ts, reason)

    def _changed(self, symbol: str) -> None:
        self.versions[symbol] = self.versions.get(symbol, 0) + 1

    def _add(self, order: Order) -> Order:
        if order.client_order_id in self._orders:
            raise ValueError(f"order id {order.client_order_id} already exists")
        self._orders[order.client_order_id] = order
        self._position[order.client_order_id] = len(self._position)
        self._changed(order.symbol)
        pending = self._maybe_open.get(order.symbol)
        if pending is None:
            pending = self._maybe_open[order.symbol] = {}
        pending[order.client_order_id] = order
        if order.expire_ts is not None and order.expire_ts < self._expire_floor:
            self._expire_floor = order.expire_ts
        return order

    def _reject_reason(self, intent: OrderIntent, ref_price: float | None) -> str:
        return order_problem(self.cfg, intent, ref_price, self._instruments[intent.symbol])

    # ------------------------------------------------------------------------- commands

    def submit(self, intent: OrderIntent, now_ts: int, ref_price: float | None = None) -> Order:
        """Create the ENTRY order of `intent` at event time `now_ts` (the decision's bar close)
        and accept or reject it. Idempotent: an id that exists returns the existing order.

        `ref_price` (the last price) lets a post-only limit that would cross be rejected and a
        market entry's bracket be checked against it. Reject reasons: non_positive_quantity,
        below_min_quantity, unsupported_order_type, invalid_limit_price, post_only_not_limit,
        post_only_would_cross, invalid_expiry, gtd_without_expiry, invalid_bracket,
        bracket_not_around_entry.
        """
        existing = self._orders.get(intent.client_order_id)
        if existing is not None:
            log.info("submit %s: already known (%s), nothing placed", intent.client_order_id, existing.status)
            return existing
        tif = _enum(TimeInForce, intent.tif)
        if intent.expiry_bars is not None and tif == TimeInForce.GTC:
            tif = TimeInForce.GTD  # an expiry makes it good-till-date
        expire_ts = None
        if intent.expiry_bars is not None and intent.expiry_bars >= 1:
            expire_ts = now_ts + int(intent.expiry_bars) * NS_PER_MINUTE
        order = self._add(
            Order(
                client_order_id=intent.client_order_id,
                symbol=intent.symbol,
                side=_enum(Side, intent.side),
                order_type=_enum(OrderType, intent.order_type),
                quantity=float(intent.quantity),
                role=OrderRole.ENTRY,
                limit_price=intent.limit_price if intent.order_type == OrderType.LIMIT else None,
                tif=tif,
                expire_ts=expire_ts,
                post_only=intent.post_only,
                created_ts=now_ts,
                updated_ts=now_ts,
                strategy=intent.strategy,
            )
        )
        problem = self._reject_reason(intent, ref_price)
        if problem:
            self._set(order, OrderStatus.REJECTED, now_ts, problem)
            log.info("order %s rejected: %s", order.client_order_id, problem)
            return order
        self.bracket_prices[order.client_order_id] = (float(intent.stop_loss), float(intent.take_profit))
        planned = order.limit_price if order.order_type == OrderType.LIMIT else ref_price
        if planned is not None:
            self.entry_prices[order.client_order_id] = float(planned)
        self._root[order.client_order_id] = order.client_order_id
        self._entries[order.client_order_id] = [order.client_order_id]
        self._set(order, OrderStatus.ACCEPTED, now_ts)
        return order

    def on_fill(self, fill: Fill) -> list[Order]:
        """Apply a fill; return the orders created or changed (the filled order first).

        A fill id seen before is ignored (returns []). An unknown order id raises KeyError.
        """
        if fill.fill_id in self._fill_ids:
            log.info("fill %s already applied, ignored", fill.fill_id)
            return []
        order = self._orders.get(fill.client_order_id)
        if order is None:
            raise KeyError(f"fill {fill.fill_id} for unknown order {fill.client_order_id}")
        if fill.side != order.side or fill.symbol != order.symbol:
            raise ValueError(
                f"fill {fill.fill_id} does not match order {order.client_order_id} (side/symbol)"
            )
        before = order.status
        apply_fill(order, fill.quantity, fill.price, fill.ts)
        self._fill_ids.add(fill.fill_id)
        self.events.append(_event((fill.ts, order.client_order_id, before, order.status, "")))
        self._changed(order.symbol)
        changed = [order]
        if order.role == OrderRole.ENTRY and order.client_order_id in self._root:
            changed += self._size_bracket(self._root[order.client_order_id], fill.ts)
        elif order.role in LEG_ROLES and order.parent_id is not None:
            if order.status == OrderStatus.FILLED or self.venue_ends_sibling(order):
                changed += self._close_bracket(order, fill.ts)
            else:
                changed += self._reduce_bracket(order, fill.ts)
        return changed

    def venue_ends_sibling(self, leg: Order) -> bool:
        """Whether the venue itself ends `leg`'s OCO sibling at ANY fill of `leg` (a pair resting
        on an exchange as one OCO list: Binance EXPIRES the other leg at the first fill), so the
        sibling is closed here at once too. False here: the manager's own legs (paper, backtest,
        service-managed) keep the sibling for the rest of the position."""
        return False

    def _size_bracket(self, root: str, fill_ts: int) -> list[Order]:
        """Create the legs of `root`'s bracket, or re-size them to the entries' filled total."""
        entries = [self._orders[i] for i in self._entries[root]]
        entered = sum([e.filled_qty for e in entries])
        stop_loss, take_profit = self.bracket_prices[root]
        entry = entries[0]
        legs = self.legs(root)
        if not legs:
            created = bar_close_of(fill_ts)
            side = entry.side.opposite
            out = []
            for suffix, role, otype, stop, limit in (
                ("sl", OrderRole.STOP_LOSS, OrderType.STOP, stop_loss, None),
                ("tp", OrderRole.TAKE_PROFIT, OrderType.LIMIT, None, take_profit),
            ):
                leg = self._add(
                    Order(
                        client_order_id=f"{root}-{suffix}",
                        symbol=entry.symbol,
                        side=side,
                        order_type=otype,
                        quantity=entered,
                        role=role,
                        limit_price=limit,
                        stop_price=stop,
                        tif=TimeInForce.GTC,
                        created_ts=created,
                        updated_ts=created,
                        parent_id=root,
                        oco_id=f"{root}-oco",
                        strategy=entry.strategy,
                    )
                )
                self._set(leg, OrderStatus.ACCEPTED, created)
                out.append(leg)
            return out
        out = []
        for leg in legs:
            if leg.status in FINAL_STATUSES:
                continue
            others = sum(o.filled_qty for o in legs if o is not leg)
            target = entered - others
            if abs(target - leg.quantity) > _qty_tol(target):
                leg.quantity = target
                leg.updated_ts = fill_ts
                self._changed(leg.symbol)
                out.append(leg)
        if not out and all(leg.status in FINAL_STATUSES for leg in legs):
            log.warning("entry fill on %s after its bracket closed: the position is unprotected", root)
        return out

    def _close_bracket(self, leg: Order, ts: int) -> list[Order]:
        """The bracket is over (`leg` filled, or ended with its rest sent as an exit): cancel its
        OCO sibling and any entry quantity still working."""
        out = []
        root = leg.parent_id
        for other in self.legs(root) if root else []:
            if other is not leg and other.oco_id == leg.oco_id and other.status in OPEN_STATUSES:
                self._set(other, OrderStatus.CANCELED, ts, "oco")
                out.append(other)
        return out + self._end_entries(root, ts)

    def _reduce_bracket(self, leg: Order, ts: int) -> list[Order]:
        """`leg` filled in part: its sibling is re-sized to the position still open and keeps
        protecting it; the entry's rest is canceled, so the position only shrinks from here."""
        out = []
        siblings = [o for o in self.legs(leg.parent_id or "") if o is not leg and o.oco_id == leg.oco_id]
        for other in siblings:
            if other.status not in OPEN_STATUSES:
                continue
            # leg.quantity = entered - what the sibling filled (as `_size_bracket` sizes it), so
            # the sibling's size is entered - what `leg` filled: its rest is the open position
            target = leg.quantity + other.filled_qty - leg.filled_qty
            if abs(target - other.quantity) > _qty_tol(target):
                other.quantity = target  # re-sized as an entry fill re-sizes it: no status change
                other.updated_ts = ts
                self._changed(other.symbol)
                out.append(other)
        return out + self._end_entries(leg.parent_id, ts)

    def _end_entries(self, root: str | None, ts: int) -> list[Order]:
        """Cancel the entry orders of `root`'s bracket still working (reason "bracket_exit")."""
        out = []
        for entry_id in self._entries.get(root or "", []):
            entry = self._orders[entry_id]
            if entry.status in OPEN_STATUSES:
                self._set(entry, OrderStatus.CANCELED, ts, "bracket_exit")
                out.append(entry)
        return out

    def cancel(self, client_order_id: str, ts: int, reason: str = "canceled") -> list[Order]:
        """Cancel one open order; returns [order], or [] when it was already final.

        Unknown id: KeyError. Canceling an entry keeps the legs of what it already filled.
        """
        order = self._orders.get(client_order_id)
        if order is None:
            raise KeyError(f"cancel: unknown order {client_order_id}")
        if order.status not in OPEN_STATUSES:
            log.debug("cancel %s: already %s", client_order_id, order.status)
            return []
        self._set(order, OrderStatus.CANCELED, ts, reason or "canceled")
        return [order]

    def expire(self, now_ts: int) -> list[Order]:
        """Expire open orders with `expire_ts <= now_ts` (call at each bar close).

        Returns the expired orders, and the market replacements when
        `execution.limit_expiry_action == "market"` (a limit ENTRY with quantity left).
        """
        out: list[Order] = []
        if now_ts < self._expire_floor:
            return out  # the usual case, without looking at the open orders
        times = [
            o.expire_ts for sym in self._maybe_open for o in self._open_of(sym) if o.expire_ts is not None
        ]
        self._expire_floor = min(times, default=math.inf)
        if now_ts < self._expire_floor:
            return out  # nothing due, without sorting every open order
        market = self.cfg.execution.limit_expiry_action == "market"
        for order in self.open_orders():
            if order.expire_ts is None or order.expire_ts > now_ts:
                continue
            remaining = order.remaining
            convert = market and order.order_type == OrderType.LIMIT and order.role == OrderRole.ENTRY
            self._set(order, OrderStatus.EXPIRED, now_ts, "expired_to_market" if convert else "expired")
            out.append(order)
            if convert and remaining > _qty_tol(order.quantity):
                out.append(self._replace_with_market(order, remaining, now_ts))
        times = [
            o.expire_ts for sym in self._maybe_open for o in self._open_of(sym) if o.expire_ts is not None
        ]
        self._expire_floor = min(times, default=math.inf)
        return out

    def _replace_with_market(self, order: Order, quantity: float, now_ts: int) -> Order:
        new_id = f"{order.client_order_id}-mkt"
        existing = self._orders.get(new_id)
        if existing is not None:  # cannot happen in one run; kept idempotent for a rebuilt manager
            return existing
        new = self._add(
            Order(
                client_order_id=new_id,
                symbol=order.symbol,
                side=order.side,
                order_type=OrderType.MARKET,
                quantity=quantity,
                role=order.role,
                tif=TimeInForce.GTC,
                created_ts=now_ts,
                updated_ts=now_ts,
                parent_id=order.client_order_id,
                strategy=order.strategy,
                reason="expired_limit",
            )
        )
        root = self._root.get(order.client_order_id, order.client_order_id)
        self._root[new_id] = root
        self._entries.setdefault(root, [root]).append(new_id)
        self._set(new, OrderStatus.ACCEPTED, now_ts)
        return new

    def cancel_all(self, ts: int, reason: str = "canceled") -> list[Order]:
        """Cancel every open order (entries and bracket legs); returns the canceled orders."""
        out: list[Order] = []
        for order in self.open_orders():
            out += self.cancel(order.client_order_id, ts, reason)
        return out

    def flatten(self, symbol: str, position_qty: float, now_ts: int, reason: str = "flatten") -> list[Order]:
        """Kill switch for `symbol`: cancel all its open orders (entries, legs, earlier exits),
        then, when `position_qty` (signed: > 0 long) is not zero, a MARKET EXIT order for it.

        Returns the canceled orders then the exit order. Idempotent at one `now_ts`.
        """
        exit_id = f"flat-{_id_part(symbol)}-{now_ts}"
        existing = self._orders.get(exit_id)
        if existing is not None:
            return [existing]
        out = []
        for order in self.open_orders(symbol):
            self._set(order, OrderStatus.CANCELED, now_ts, reason)
            out.append(order)
        if abs(position_qty) > _qty_tol(position_qty):
            exit_order = self._add(
                Order(
                    client_order_id=exit_id,
                    symbol=symbol,
                    side=Side.SELL if position_qty > 0 else Side.BUY,
                    order_type=OrderType.MARKET,
                    quantity=abs(float(position_qty)),
                    role=OrderRole.EXIT,
                    tif=TimeInForce.GTC,
                    created_ts=now_ts,
                    updated_ts=now_ts,
                    reason=reason,
                )
            )
            self._set(exit_order, OrderStatus.ACCEPTED, now_ts, reason)
            out.append(exit_order)
        log.info("flatten %s at %d (%s): %d orders", symbol, now_ts, reason, len(out))
        return out


def order_problem(
    cfg: Config, intent: OrderIntent, ref_price: float | None, inst: InstrumentConfig | None = None
) -> str:
    """Why an order would be rejected on submit ("" when it would be accepted). Pure: the
    risk desk uses it to know, before the execution side answers, which orders will open.
    `inst`: `cfg.instrument(intent.symbol)` when the caller has it at hand."""
    if inst is None:
        inst = cfg.instrument(intent.symbol)
    q = intent.quantity
    if not (isinstance(q, (int, float)) and math.isfinite(q) and q > 0):
        return "non_positive_quantity"
    if inst.min_quantity and q < inst.min_quantity - _qty_tol(inst.min_quantity):
        return "below_min_quantity"
    if intent.order_type not in (OrderType.MARKET, OrderType.LIMIT):
        return "unsupported_order_type"
    if intent.order_type == OrderType.LIMIT:
        lp = intent.limit_price
        if lp is None or not math.isfinite(lp) or lp <= 0:
            return "invalid_limit_price"
    if intent.post_only:
        if intent.order_type != OrderType.LIMIT:
            return "post_only_not_limit"
        if ref_price is not None and intent.limit_price is not None:
            crosses = (
                intent.limit_price >= ref_price
                if intent.side == Side.BUY
                else intent.limit_price <= ref_price
            )
            if crosses:
                return "post_only_would_cross"
    if intent.expiry_bars is not None and intent.expiry_bars < 1:
        return "invalid_expiry"
    if intent.tif == TimeInForce.GTD and intent.expiry_bars is None:
        return "gtd_without_expiry"
    sl, tp = intent.stop_loss, intent.take_profit
    if not (math.isfinite(sl) and math.isfinite(tp) and sl > 0 and tp > 0):
        return "invalid_bracket"
    entry = intent.limit_price if intent.order_type == OrderType.LIMIT else ref_price
    sign = _enum(Side, intent.side).sign
    if sign * (tp - sl) <= 0:
        return "invalid_bracket"
    if entry is not None and not (sign * (entry - sl) > 0 and sign * (tp - entry) > 0):
        return "bracket_not_around_entry"
    return ""
