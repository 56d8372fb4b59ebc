"""Start-up reconciliation: bring the ledger up to date with the exchange, or refuse to trade.

A restarted live TradingService must not trade on a stale view of its own orders. Before the
first order, `reconcile(ledger, broker, cfg, now_ts)` compares the ledger (the source of
truth of what the bot did) with the exchange (what actually happened) and:

1. For every order the ledger has open: asks the exchange by client order id.
   * fills the ledger missed (while the service was down) are recorded as Fills, with the
     status transitions they imply; an order the exchange finished (canceled, expired) is
     closed in the ledger the same way;
   * an exit the exchange FILLED short of its quantity by no more than
     `position_tolerance_pct` (a spot sell capped at the coins held, the entry's fee having
     been paid in them) closes the whole exit, as the TradingService counts it;
   * a NEW order the exchange never saw (the crash came between recording and sending) is
     REJECTED "never_sent"; an accepted one the exchange does not know is CANCELED
     "unknown_to_exchange";
   * a bracket leg the exchange does not know is left alone: the TradingService manages it
     (service brackets) or places it (exchange brackets, once the entry is done); a leg the
     exchange knows (an OCO leg, a leg sent as a market exit) is followed like any order.
2. Open orders on the exchange that the ledger has closed (a cancel that never reached the
   exchange) are canceled there. Open orders the ledger does not know, for the configured symbols:
   per `feed.ccxt.unknown_orders`, "adopt" (recorded in the ledger as ENTRY orders of strategy
   "adopted", with their fills), "cancel" (canceled on the exchange), or "refuse".
3. Positions: the ledger's positions (rebuilt from its fills plus the missed ones) must equal
   the exchange's within max(the market's amount step, `position_tolerance_pct` of the size;
   spot fees paid in the base asset make the holding slightly smaller than the bought size).
4. Balances are reported (the ledger keeps futures-style cash, not a spot wallet).

Everything is checked first; only when nothing refuses are the changes written to the ledger
and unknown orders canceled (`apply=False` only reports). A refusal raises `ReconcileError`
whose `report` says what disagrees; nothing has been changed then.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

import msgspec

from scalper.config import Config
from scalper.execution.orders import LEG_ROLES, apply_fill
from scalper.execution.portfolio import position_after
from scalper.ledger import Ledger
from scalper.types import Fill, Order, OrderRole, OrderStatus, Position

log = logging.getLogger(__name__)

EXIT_ROLES = LEG_ROLES | {OrderRole.EXIT}

Action = Literal["apply", "adopt", "cancel", "refuse", "none"]


class ExchangeView(Protocol):
    """What reconciliation needs from a broker (scalper.execution.ccxt.CcxtBroker has it)."""

    def open_orders(self, symbol: str | None = None) -> list: ...
    def order_status(self, client_order_id: str, symbol: str): ...
    def cancel(self, client_order_id: str, symbol: str): ...
    def positions(self) -> dict[str, float]: ...
    def balances(self) -> dict: ...
    def new_fills(self, order: Order, report) -> list[Fill]: ...
    def amount_step(self, symbol: str) -> float: ...


class Finding(msgspec.Struct, frozen=True):
    """One disagreement and what is done about it."""

    kind: str  # missed_fill, closed_on_exchange, never_sent, unknown_to_exchange, unknown_order,
    # open_on_exchange, position
    symbol: str
    detail: str
    action: Action
    client_order_id: str | None = None


class ReconcileReport(msgspec.Struct):
    findings: list[Finding] = msgspec.field(default_factory=list)
    fills: list[Fill] = msgspec.field(default_factory=list)  # missed fills (recorded when applied)
    adopted: list[str] = msgspec.field(default_factory=list)
    canceled: list[str] = msgspec.field(default_factory=list)
    positions: dict[str, tuple[float, float]] = msgspec.field(default_factory=dict)  # ledger, exchange
    balances: dict[str, float] = msgspec.field(default_factory=dict)
    applied: bool = False

    @property
    def ok(self) -> bool:
        return not any(f.action == "refuse" for f in self.findings)

    def text(self) -> str:
        lines = [f"reconciliation: {'OK' if self.ok else 'REFUSED'} ({len(self.findings)} finding(s))"]
        for f in self.findings:
            who = f" {f.client_order_id}" if f.client_order_id else ""
            lines.append(f"  [{f.action}] {f.kind} {f.symbol}{who}: {f.detail}")
        for sym, (ours, theirs) in sorted(self.positions.items()):
            lines.append(f"  position {sym}: ledger {ours:.10g}, exchange {theirs:.10g}")
        if self.balances:
            lines.append(
                "  balances: " + ", ".join(f"{a} {v:.10g}" for a, v in sorted(self.balances.items()))
            )
        return "\n".join(lines)


class ReconcileError(RuntimeError):
    """The ledger and the exchange disagree in a way that cannot be fixed automatically."""

    def __init__(self, report: ReconcileReport):
        self.report = report
        super().__init__(
            report.text() + "\nrefusing to start: resolve these on the exchange or in the ledger"
        )


class _Plan(msgspec.Struct):
    """Ledger writes and exchange actions, decided before any is done."""

    records: list[Order] = msgspec.field(default_factory=list)  # new rows (adopted orders)
    steps: list[tuple[str, object]] = msgspec.field(default_factory=list)  # ("fill", Fill) | ("move", ...)
    cancels: list[tuple[str, str]] = msgspec.field(default_factory=list)  # (client id, symbol)


def reconcile(
    ledger: Ledger, broker: ExchangeView, cfg: Config, *, now_ts: int, apply: bool = True
) -> ReconcileReport:
    """Compare and (when `apply` and nothing refuses) fix; see the module docstring."""
    ccfg = cfg.feed.ccxt
    symbols = set(cfg.symbols)
    report = ReconcileReport()
    plan = _Plan()
    multipliers = {s: cfg.instrument(s).multiplier for s in symbols}
    positions: dict[str, Position] = ledger.rebuild_positions(multipliers)

    exchange_open = {o.client_order_id: o for o in broker.open_orders()}
    known = {o.client_order_id: o for o in ledger.orders()}

    def follow(order: Order, ex_report, adopted: bool = False) -> None:
        """Plan the fills and transitions that take `order` (a copy) to the exchange's state."""
        if order.status == OrderStatus.NEW:
            plan.steps.append(("move", (order.client_order_id, OrderStatus.NEW, OrderStatus.ACCEPTED, "")))
            order.status = OrderStatus.ACCEPTED
        fills = broker.new_fills(order, ex_report)
        short = order.quantity - ex_report.filled_qty
        capped = 0 < short <= order.quantity * ccfg.position_tolerance_pct / 100
        if fills and capped and order.role in EXIT_ROLES and ex_report.status == OrderStatus.FILLED:
            # a spot exit capped at the coins held (the entry's fee was paid in them) closes the leg
            fills[-1] = msgspec.structs.replace(fills[-1], quantity=fills[-1].quantity + short)
        for fill in fills:
            before = order.status
            apply_fill(order, fill.quantity, fill.price, fill.ts or now_ts)
            plan.steps.append(("fill", fill))
            plan.steps.append(("move", (order.client_order_id, before, order.status, "")))
            report.fills.append(fill)
            positions[fill.symbol] = position_after(
                positions.get(fill.symbol) or Position(fill.symbol), fill, multipliers.get(fill.symbol, 1.0)
            )
            if not adopted:
                report.findings.append(
                    Finding(
                        "missed_fill",
                        fill.symbol,
                        f"{fill.side.value} {fill.quantity:.10g} @ {fill.price:.10g}",
                        "apply",
                        order.client_order_id,
                    )
                )
        final = ex_report.status
        if final in (OrderStatus.CANCELED, OrderStatus.EXPIRED) and not order.status.is_final:
            plan.steps.append(("move", (order.client_order_id, order.status, final, "on_exchange")))
            report.findings.append(
                Finding(
                    "closed_on_exchange",
                    order.symbol,
                    f"{final.value} on the exchange",
                    "apply",
                    order.client_order_id,
                )
            )

    # 1. the ledger's open orders
    for order in ledger.open_orders():
        cid = order.client_order_id
        ex_report = exchange_open.get(cid) or broker.order_status(cid, order.symbol)
        if ex_report is None and order.role in LEG_ROLES:
            continue  # the service's to watch or to place
        if ex_report is None:
            if order.status == OrderStatus.NEW:
                plan.steps.append(("move", (cid, OrderStatus.NEW, OrderStatus.REJECTED, "never_sent")))
                report.findings.append(
                    Finding("never_sent", order.symbol, "recorded but never sent", "apply", cid)
                )
            else:
                plan.steps.append(("move", (cid, order.status, OrderStatus.CANCELED, "unknown_to_exchange")))
                report.findings.append(
                    Finding(
                        "unknown_to_exchange",
                        order.symbol,
                        f"{order.status.value} in the ledger, unknown to the exchange",
                        "apply",
                        cid,
                    )
                )
            continue
        follow(msgspec.structs.replace(order), ex_report)

    # 2. exchange orders the ledger does not know, or has closed
    for cid, ex_order in exchange_open.items():
        if ex_order.symbol not in symbols:
            continue
        if cid in known:
            if known[cid].status.is_final:  # closed here, a cancel that never reached the exchange
                plan.cancels.append((cid, ex_order.symbol))
                report.canceled.append(cid)
                report.findings.append(
                    Finding(
                        "open_on_exchange",
                        ex_order.symbol,
                        f"{known[cid].status.value} in the ledger, open on the exchange: canceled there",
                        "cancel",
                        cid,
                    )
                )
            continue
        detail = (
            f"{ex_order.side.value} {ex_order.quantity:.10g} {ex_order.order_type.value}"
            f"{f' @ {ex_order.price:.10g}' if ex_order.price else ''}, filled {ex_order.filled_qty:.10g}"
        )
        policy = ccfg.unknown_orders
        report.findings.append(Finding("unknown_order", ex_order.symbol, detail, policy, cid))
        if policy == "adopt":
            order = Order(
                client_order_id=cid,
                symbol=ex_order.symbol,
                side=ex_order.side,
                order_type=ex_order.order_type,
                quantity=ex_order.quantity,
                role=OrderRole.ENTRY,
                limit_price=ex_order.price,
                status=OrderStatus.ACCEPTED,
                created_ts=now_ts,
                updated_ts=now_ts,
                strategy="adopted",
                reason="adopted at start-up",
            )
            plan.records.append(msgspec.structs.replace(order))
            report.adopted.append(cid)
            follow(order, ex_order, adopted=True)
        elif policy == "cancel":
            plan.cancels.append((cid, ex_order.symbol))
            report.canceled.append(cid)

    # 3. positions
    held = broker.positions()
    for sym in sorted(symbols):
        ours = positions.get(sym).quantity if sym in positions else 0.0
        theirs = float(held.get(sym, 0.0))
        report.positions[sym] = (ours, theirs)
        tolerance = max(broker.amount_step(sym), abs(ours) * ccfg.position_tolerance_pct / 100)
        if abs(ours - theirs) > tolerance:
            report.findings.append(
                Finding(
                    "position",
                    sym,
                    f"ledger {ours:.10g} vs exchange {theirs:.10g} (tolerance {tolerance:.3g})",
                    "refuse",
                )
            )

    # 4. balances (reported)
    report.balances = {a: b.total for a, b in broker.balances().items()}

    if not report.ok:
        log.error("%s", report.text())
        raise ReconcileError(report)
    if apply:
        _apply(ledger, broker, plan, now_ts)
        report.applied = True
    log.info("%s", report.text())
    return report


def _apply(ledger: Ledger, broker: ExchangeView, plan: _Plan, now_ts: int) -> None:
    for order in plan.records:
        ledger.record_order(order)
        ledger.record_transition(now_ts, order.client_order_id, None, order.status, "adopted")
    for kind, step in plan.steps:
        if kind == "fill":
            assert isinstance(step, Fill)
            ledger.record_fill(step)
        else:
            cid, before, after, reason = step  # type: ignore[misc]
            if before != after or after == OrderStatus.PARTIALLY_FILLED:
                ledger.record_transition(now_ts, cid, before, after, reason)
    for cid, symbol in plan.cancels:
        broker.cancel(cid, symbol)
