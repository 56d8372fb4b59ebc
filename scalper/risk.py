"""The central RiskManager: sizes approved signals, enforces limits, and owns the kill switch.

Plain Python, no I/O, no wall clock: every time is event time (ns since the epoch, UTC) taken
from the data, so a backtest, a replay and a live run make the same decisions.

- `evaluate(signal, ref_price=..., positions=...)` turns one Signal into a RiskDecision:
  approved with a sized OrderIntent, or refused with a machine-readable code (below) and a
  sentence with the numbers in `detail`.
- `mark(equity, ts)` feeds the equity curve; breaching the daily loss limit or the maximum
  drawdown switches to HALTED (no new entries; exits are always allowed).
- `on_trade_closed(symbol, pnl, ts)` counts consecutive losses per symbol and starts a
  cooldown after `risk.cooldown_after_losses` of them.
- `state` (a RiskState) is everything that must survive a restart; persist it with
  `msgspec.json.encode(rm.state)` and restore with `RiskManager(cfg, decode_state(raw))`.

Refusal codes (`RiskDecision.reason`), checked in this order:

- "halted"                the kill switch is on (daily loss, drawdown or an operator's halt)
- "invalid_signal"        non-finite prices or size multiplier, entry <= 0, stop not strictly
                          on the losing side of the entry, target not strictly on the winning
                          side (prices on the tick grid: a stop that rounds onto the entry is
                          refused), a LIMIT without a limit price, a non-entry order type, expiry < 1
- "cooldown"              the symbol is cooling down after consecutive losses
- "position_exists"       a position (or an open entry order) on the symbol already exists
                          and `risk.one_position_per_symbol` is true
- "max_open_positions"    open positions + open entry orders already at `risk.max_open_positions`
- "max_orders_per_minute" `risk.max_orders_per_minute` entries were approved in the trailing
                          60 s of event time
- "size_below_minimum"    the risk budget buys less than one lot / `min_quantity`
- "below_min_notional"    the sized order's notional is below the instrument's `min_notional`
- "max_position"          the position's notional would exceed `max_position_pct` of equity and
                          reducing the quantity to fit leaves less than the minimum size
- "max_gross_exposure"    gross exposure would exceed `max_gross_exposure_pct` of equity and
                          reducing the quantity to fit leaves less than the minimum size

When a cap is met by reducing the quantity the signal is still approved; the reduction is
described in `detail`.

Prices: the signal's limit, stop-loss and take-profit are put on the instrument's tick grid
(`round_to_tick`: the nearest tick, as the live broker's ccxt `price_to_precision`) before
anything is checked or sized, and the OrderIntent carries them so: backtest, paper and live
place the same prices. A market order's entry is its reference price (the bar's close).

Sizing: risk = equity x risk_per_trade_pct% x clip(size_multiplier, 0, size_multiplier_cap);
quantity = risk / (|entry - stop_loss| x instrument multiplier), rounded DOWN to the lot.
Notional = quantity x price x multiplier. The caps count what a position ties up: its
notional, or for a leveraged instrument with `margin_per_unit` set (futures), its margin.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import NamedTuple

import msgspec

from scalper.config import Config, InstrumentTable
from scalper.execution.orders import round_to_tick, step_decimals
from scalper.types import (
    NS_PER_MINUTE,
    NS_PER_SECOND,
    OrderIntent,
    OrderType,
    Position,
    RiskDecision,
    Side,
    Signal,
    TimeInForce,
)

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * NS_PER_SECOND
RATE_WINDOW_NS = 60 * NS_PER_SECOND

APPROVED = "approved"
# refusal codes
HALTED = "halted"
INVALID_SIGNAL = "invalid_signal"
COOLDOWN = "cooldown"
POSITION_EXISTS = "position_exists"
MAX_OPEN_POSITIONS = "max_open_positions"
MAX_ORDERS_PER_MINUTE = "max_orders_per_minute"
SIZE_BELOW_MINIMUM = "size_below_minimum"
BELOW_MIN_NOTIONAL = "below_min_notional"
MAX_POSITION = "max_position"
MAX_GROSS_EXPOSURE = "max_gross_exposure"

REFUSAL_CODES: frozenset[str] = frozenset(
    {
        HALTED,
        INVALID_SIGNAL,
        COOLDOWN,
        POSITION_EXISTS,
        MAX_OPEN_POSITIONS,
        MAX_ORDERS_PER_MINUTE,
        SIZE_BELOW_MINIMUM,
        BELOW_MIN_NOTIONAL,
        MAX_POSITION,
        MAX_GROSS_EXPOSURE,
    }
)

# halt reasons (RiskState.halt_reason); an operator's halt(reason) may use any other text
HALT_DAILY_LOSS = "daily_loss_limit"
HALT_MAX_DRAWDOWN = "max_drawdown"

# A lot count this close below an integer is that integer (float error, e.g. 0.3 / 0.1 =
# 2.9999999999999996 must be 3 lots, not 2): absolute for small counts, relative for large.
_LOT_EPS = 1e-9
_LOT_REL_EPS = 1e-12


class RiskState(msgspec.Struct, kw_only=True):
    """Everything the RiskManager must remember across a restart (encode with msgspec.json)."""

    equity: float
    peak_equity: float
    # UTC day number (ts // 1 day) of the current trading day; None until the first mark
    day: int | None = None
    day_start_equity: float
    halted: bool = False
    halt_reason: str = ""
    halted_ts: int | None = None
    consecutive_losses: dict[str, int] = msgspec.field(default_factory=dict)
    # event time (ns) before which no new entry on the symbol is allowed
    cooldown_until: dict[str, int] = msgspec.field(default_factory=dict)
    # decision times of approved entries in the trailing rate window, sorted
    recent_order_ts: list[int] = msgspec.field(default_factory=list)

    @classmethod
    def initial(cls, starting_equity: float) -> RiskState:
        return cls(equity=starting_equity, peak_equity=starting_equity, day_start_equity=starting_equity)


class Judgement(NamedTuple):
    """`RiskManager.judge`'s answer: a RiskDecision whose detail sentence is written on demand."""

    reason: str  # "approved" or a refusal code
    detail: Callable[[], str]  # the sentence with the numbers (written when called)
    intent: OrderIntent | None = None  # set when approved

    @property
    def approved(self) -> bool:
        return self.intent is not None


def decode_state(raw: bytes | str) -> RiskState:
    """A RiskState from `msgspec.json.encode(rm.state)`."""
    return msgspec.json.decode(raw, type=RiskState)


def client_order_id(signal: Signal) -> str:
    """Deterministic id of the entry order for `signal`: the same signal always gets the same id,
    so a re-evaluation after a restart cannot place a second order."""
    side = signal.side if signal.side.__class__ is Side else Side(signal.side)
    key = f"{signal.symbol}|{signal.strategy}|{signal.ts}|{side.value}"
    return "sc-" + hashlib.sha1(key.encode()).hexdigest()[:20]


def _floor_lots(quantity: float, lot_size: float) -> float:
    """`quantity` rounded DOWN to a multiple of `lot_size` (0.0 when negative or not finite)."""
    if not quantity > 0 or math.isinf(quantity):
        return 0.0
    lots = math.floor(quantity / lot_size * (1.0 + _LOT_REL_EPS) + _LOT_EPS)
    decimals = step_decimals(lot_size)
    # a whole lot size makes a whole quantity, which rounding to 0 places leaves as it is
    return round(lots * lot_size, decimals) if decimals else lots * lot_size


def _fmt(x: float) -> str:
    """A number for a detail sentence: no float noise, thousands separated (4,500; 0.3; nan)."""
    return f"{x:,.10g}"


class RiskManager:
    """Sizing, limits and the kill switch. Owns `state`; one instance for the whole account."""

    def __init__(self, cfg: Config, state: RiskState | None = None):
        self.cfg = cfg
        self.risk = cfg.risk
        self.state = state if state is not None else RiskState.initial(cfg.risk.starting_equity)
        self._instruments = InstrumentTable(cfg)
        # decisions by outcome ("approved" or a refusal code) since this process started
        self.counts: dict[str, int] = {}
        if self.state.halted:
            log.warning(
                "risk manager restored HALTED (%s since ts=%s): no new entries until reset_halt()",
                self.state.halt_reason,
                self.state.halted_ts,
            )

    # ------------------------------------------------------------------ kill switch

    @property
    def is_halted(self) -> bool:
        return self.state.halted

    def allows_exit(self, symbol: str) -> bool:
        """Exits (closing or reducing a position) are ALWAYS allowed, HALTED or not: the kill
        switch stops new risk, it never traps an open position."""
        return True

    def halt(self, reason: str, ts: int) -> None:
        """Switch to HALTED (an operator's kill switch, or a limit breach). Idempotent."""
        st = self.state
        if st.halted and st.halt_reason == reason:
            return
        if st.halted and st.halt_reason == HALT_MAX_DRAWDOWN and reason == HALT_DAILY_LOSS:
            return  # the stickier reason wins
        st.halted, st.halt_reason, st.halted_ts = True, reason, ts
        log.warning(
            "risk HALTED at ts=%d: %s (equity %s, day start %s, peak %s); exits still allowed",
            ts,
            reason,
            _fmt(st.equity),
            _fmt(st.day_start_equity),
            _fmt(st.peak_equity),
        )

    def reset_halt(self, reason: str) -> None:
        """An operator resumes trading after a halt; `reason` is logged (why it is safe).

        The loss that caused the halt is accepted: the peak equity and the day's starting
        equity are re-based to the current equity, otherwise the next mark would halt again.
        """
        st = self.state
        if not st.halted:
            log.info("reset_halt(%r): not halted, nothing to do", reason)
            return
        log.warning(
            "risk halt %r (since ts=%s) reset by operator: %s; peak and day-start equity re-based to %s",
            st.halt_reason,
            st.halted_ts,
            reason,
            _fmt(st.equity),
        )
        st.halted, st.halt_reason, st.halted_ts = False, "", None
        st.peak_equity = st.equity
        st.day_start_equity = st.equity

    # ------------------------------------------------------------------ equity and trades

    def mark(self, equity: float, ts: int) -> None:
        """Equity (cash + open P&L) at event time `ts`: updates peak and trading day, checks limits.

        The first mark of a new UTC day re-bases the day's starting equity and clears a
        daily-loss halt (only that one: a drawdown or operator halt stays until reset_halt()).
        """
        if not math.isfinite(equity):
            raise ValueError(f"mark: equity must be a finite number, got {equity!r} at ts={ts}")
        st, r = self.state, self.risk
        day = ts // NS_PER_DAY
        if st.day is None or day > st.day:
            st.day = day
            st.day_start_equity = equity
            if st.halted and st.halt_reason == HALT_DAILY_LOSS:
                log.warning("new UTC day %d: daily-loss halt cleared (equity %s)", day, _fmt(equity))
                st.halted, st.halt_reason, st.halted_ts = False, "", None
        st.equity = equity
        if equity > st.peak_equity:
            st.peak_equity = equity
        if equity <= st.peak_equity * (1.0 - r.max_drawdown_pct / 100.0):
            self.halt(HALT_MAX_DRAWDOWN, ts)
        elif equity <= st.day_start_equity * (1.0 - r.daily_loss_limit_pct / 100.0):
            self.halt(HALT_DAILY_LOSS, ts)

    def on_trade_closed(self, symbol: str, pnl: float, ts: int) -> None:
        """A round trip on `symbol` closed with realised `pnl` at event time `ts`."""
        st, r = self.state, self.risk
        if math.isnan(pnl):
            log.warning("on_trade_closed(%s): pnl is NaN at ts=%d, ignored", symbol, ts)
            return
        if pnl >= 0:
            st.consecutive_losses.pop(symbol, None)
            return
        n = st.consecutive_losses.get(symbol, 0) + 1
        if n < r.cooldown_after_losses:
            st.consecutive_losses[symbol] = n
            return
        st.consecutive_losses.pop(symbol, None)
        if r.cooldown_bars == 0:
            return
        until = max(ts + r.cooldown_bars * NS_PER_MINUTE, st.cooldown_until.get(symbol, 0))
        st.cooldown_until[symbol] = until
        log.info(
            "%s: %d consecutive losses, no entries for %d bars (until ts=%d)",
            symbol,
            n,
            r.cooldown_bars,
            until,
        )

    # ------------------------------------------------------------------ entries

    def _refuse(self, code: str, detail: Callable[[], str], signal: Signal) -> Judgement:
        self.counts[code] = self.counts.get(code, 0) + 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "refused %s %s %s: %s - %s", signal.symbol, signal.strategy, signal.side, code, detail()
            )
        return tuple.__new__(Judgement, (code, detail, None))  # Judgement(code, detail), faster

    def evaluate(
        self,
        signal: Signal,
        *,
        ref_price: float,
        positions: Mapping[str, Position],
        open_entry_orders: int | Mapping[str, int] = 0,
        size_multiplier: float = 1.0,
    ) -> RiskDecision:
        """Approve and size `signal`, or refuse it with a code (see the module docstring).

        `ref_price` is the expected entry price: the bar's close for a market order (a LIMIT
        entry uses the signal's own `limit_price`). `positions` are the open positions by
        symbol (flat ones are ignored). `open_entry_orders` counts entry orders placed but
        not yet filled: an int (total only) or a mapping symbol -> count, which also lets
        "position_exists" see a pending entry on the same symbol. `size_multiplier` is the
        ML sizer's fraction of the risk budget, clipped to [0, risk.size_multiplier_cap].
        Event time is `signal.decided_ts`. An approval counts towards the order rate.
        """
        j = self.judge(
            signal,
            ref_price=ref_price,
            positions=positions,
            open_entry_orders=open_entry_orders,
            size_multiplier=size_multiplier,
        )
        return RiskDecision(
            approved=j.intent is not None, reason=j.reason, detail=j.detail(), intent=j.intent
        )

    def judge(
        self,
        signal: Signal,
        *,
        ref_price: float,
        positions: Mapping[str, Position],
        open_entry_orders: int | Mapping[str, int] = 0,
        size_multiplier: float = 1.0,
    ) -> Judgement:
        """`evaluate` (the same decision and state changes) with the detail sentence left
        unwritten: `Judgement.detail()` writes it. The backtest decides tens of thousands of
        signals a second and keeps the sentences for the few that are read."""
        st, r = self.state, self.risk
        if st.halted:
            return self._refuse(HALTED, partial(_halted_text, st.halted_ts, st.halt_reason), signal)
        sym = signal.symbol
        now = signal.decided_ts

        # ---- the signal itself, its order prices on the instrument's tick grid (as placed)
        inst = self._instruments[sym]
        tick = inst.tick_size
        sl, tp = round_to_tick(signal.stop_loss, tick), round_to_tick(signal.take_profit, tick)
        problem = ""
        entry = ref_price
        limit = None
        if signal.order_type == OrderType.LIMIT:
            if signal.limit_price is None:
                problem = "limit order without a limit_price"
            else:
                entry = limit = round_to_tick(signal.limit_price, tick)
        elif signal.order_type != OrderType.MARKET:
            problem = f"order type {str(signal.order_type)!r} is not an entry (market or limit)"
        problem = problem or _signal_problem(signal, entry, sl, tp, size_multiplier)
        if problem:
            text = partial(_invalid_text, problem, signal, entry, (sl, tp, limit), tick, size_multiplier)
            return self._refuse(INVALID_SIGNAL, text, signal)

        # ---- per-symbol and account-wide gates
        until = st.cooldown_until.get(sym)
        if until is not None:
            if now < until:
                text = partial(_cooldown_text, sym, r.cooldown_after_losses, until, now)
                return self._refuse(COOLDOWN, text, signal)
            del st.cooldown_until[sym]

        by_symbol = isinstance(open_entry_orders, (dict, Mapping))  # dict first: the ABC check is slow
        # the symbol's open entry orders (0 when only a total is given)
        sym_pending = max(0, open_entry_orders.get(sym, 0)) if by_symbol else 0  # type: ignore[union-attr]
        existing = positions.get(sym)
        existing_qty = existing.quantity if existing is not None else 0.0
        if r.one_position_per_symbol and (existing_qty != 0 or sym_pending):
            text = partial(_position_exists_text, sym, existing_qty, sym_pending)
            return self._refuse(POSITION_EXISTS, text, signal)

        open_symbols = {s for s, p in positions.items() if p.quantity != 0}
        if by_symbol:
            n_pending = sum(n for n in open_entry_orders.values() if n > 0)  # type: ignore[union-attr]
        else:
            n_pending = max(0, int(open_entry_orders))  # type: ignore[arg-type]
        adds_position = sym not in open_symbols and not sym_pending
        n_open = len(open_symbols) + n_pending
        if adds_position and n_open >= r.max_open_positions:
            text = partial(_max_open_text, len(open_symbols), n_pending, n_open, r.max_open_positions)
            return self._refuse(MAX_OPEN_POSITIONS, text, signal)

        rate = st.recent_order_ts
        del rate[: bisect.bisect_right(rate, now - RATE_WINDOW_NS)]
        if len(rate) >= r.max_orders_per_minute:
            text = partial(_rate_text, len(rate), r.max_orders_per_minute)
            return self._refuse(MAX_ORDERS_PER_MINUTE, text, signal)

        # ---- sizing
        mult, lot = inst.multiplier, inst.lot_size
        min_qty = max(inst.min_quantity, lot)
        equity = st.equity
        m = min(max(size_multiplier, 0.0), r.size_multiplier_cap)
        risk_amount = equity * r.risk_per_trade_pct / 100.0 * m
        unit_loss = abs(entry - sl) * mult
        qty = _floor_lots(risk_amount / unit_loss, lot)
        budget = (risk_amount, equity, r.risk_per_trade_pct, m)
        if qty < min_qty * (1 - _LOT_EPS):
            text = partial(_size_text, budget, unit_loss, qty, min_qty, lot, inst.min_quantity)
            return self._refuse(SIZE_BELOW_MINIMUM, text, signal)
        unit_notional = entry * mult
        if qty * unit_notional < inst.min_notional:
            text = partial(_notional_text, qty, unit_notional, entry, mult, inst.min_notional)
            return self._refuse(BELOW_MIN_NOTIONAL, text, signal)
        # the caps that reduced the quantity: (code, used, quantity before, wanted, pct, cap, fitted)
        notes: list[tuple[str, float, float, float, float, float, float]] = []

        # ---- caps: reduce to fit, refuse when what fits is below the minimum size
        # what one unit ties up: its margin for leveraged instruments, else its notional
        unit_exposure = inst.margin_per_unit if inst.margin_per_unit is not None else unit_notional
        held = (
            abs(existing_qty) * self._unit_exposure(sym, existing.avg_price) if existing is not None else 0.0
        )
        # how a unit's exposure is written: its margin, or entry x multiplier
        unit = (sym, inst.margin_per_unit, entry, mult, equity)
        for code, pct in ((MAX_POSITION, r.max_position_pct), (MAX_GROSS_EXPOSURE, r.max_gross_exposure_pct)):
            used = held if code == MAX_POSITION else self._gross_exposure(positions)
            cap = equity * pct / 100.0
            room = cap - used
            wanted = qty * unit_exposure
            if wanted <= room:
                continue
            fitted = _floor_lots(room / unit_exposure, lot) if math.isfinite(room) and room > 0 else 0.0
            if fitted < min_qty * (1 - _LOT_EPS) or fitted * unit_notional < inst.min_notional:
                note = (code, used, qty, wanted, pct, cap)
                text = partial(_cap_refusal_text, unit, note, room, min_qty, unit_notional, inst.min_notional)
                return self._refuse(code, text, signal)
            notes.append((code, used, qty, wanted, pct, cap, fitted))
            qty = fitted

        # ---- approved
        bisect.insort(rate, now)
        self.counts[APPROVED] = self.counts.get(APPROVED, 0) + 1
        intent = OrderIntent(
            client_order_id=client_order_id(signal),
            symbol=sym,
            side=signal.side,
            quantity=qty,
            order_type=signal.order_type,
            stop_loss=sl,
            take_profit=tp,
            limit_price=limit,
            tif=TimeInForce.GTD if signal.expiry_bars is not None else TimeInForce.GTC,
            expiry_bars=signal.expiry_bars,
            strategy=signal.strategy,
            signal_ts=signal.ts,
            reason=signal.reason,
        )
        text = partial(_approved_text, unit, qty, unit_loss, budget, abs(entry - sl), notes)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("approved %s %s %s: %s", sym, signal.strategy, signal.side, text())
        return tuple.__new__(Judgement, (APPROVED, text, intent))  # Judgement(...), faster

    # ------------------------------------------------------------------ helpers

    def _gross_exposure(self, positions: Mapping[str, Position]) -> float:
        """Sum over open positions of what they tie up: |quantity| x (margin, or avg_price x multiplier)."""
        gross = 0.0
        for s, p in positions.items():
            if p.quantity != 0:
                gross += abs(p.quantity) * self._unit_exposure(s, p.avg_price)
        return gross

    def _unit_exposure(self, symbol: str, price: float) -> float:
        inst = self._instruments[symbol]
        return inst.margin_per_unit if inst.margin_per_unit is not None else price * inst.multiplier


def _signal_problem(signal: Signal, entry: float, sl: float, tp: float, size_multiplier: float) -> str:
    """Why `signal` cannot be traded at `entry` with the stop `sl` and target `tp` (its own,
    on the tick grid) ("" when it can)."""
    isfinite = math.isfinite
    if not (isfinite(entry) and isfinite(sl) and isfinite(tp) and isfinite(size_multiplier)):
        values = (
            ("entry price", entry),
            ("stop_loss", sl),
            ("take_profit", tp),
            ("size multiplier", size_multiplier),
        )
        name, value = next((n, v) for n, v in values if not isfinite(v))
        return f"{name} is not a finite number: {value!r}"
    if entry <= 0:
        return f"entry price {_fmt(entry)} is not positive"
    if signal.expiry_bars is not None and signal.expiry_bars < 1:
        return f"expiry_bars {signal.expiry_bars} < 1"
    if signal.side == Side.BUY:
        if not sl < entry:
            return f"long stop_loss {_fmt(sl)} is not below the entry {_fmt(entry)}"
        if not tp > entry:
            return f"long take_profit {_fmt(tp)} is not above the entry {_fmt(entry)}"
    else:
        if not sl > entry:
            return f"short stop_loss {_fmt(sl)} is not above the entry {_fmt(entry)}"
        if not tp < entry:
            return f"short take_profit {_fmt(tp)} is not below the entry {_fmt(entry)}"
    return ""


# ---- the detail sentences of `RiskManager.judge`, written on demand


def _invalid_text(
    problem: str,
    signal: Signal,
    entry: float,
    placed: tuple[float, float, float | None],
    tick: float,
    size_multiplier: float,
) -> str:
    """`problem` with the prices as they would be placed and, when the tick grid moved any,
    the strategy's own (a stop that rounds onto the entry is refused, and says why)."""
    sl, tp, limit = placed
    numbers = (
        f"{signal.side} {signal.symbol}: entry {_fmt(entry)}, stop_loss {_fmt(sl)}, "
        f"take_profit {_fmt(tp)}, size multiplier {_fmt(size_multiplier)}"
    )
    moved = [
        f"{name} {_fmt(raw)} -> {_fmt(rounded)}"
        for name, raw, rounded in (
            ("limit_price", signal.limit_price, limit),
            ("stop_loss", signal.stop_loss, sl),
            ("take_profit", signal.take_profit, tp),
        )
        if raw is not None and rounded is not None and math.isfinite(raw) and raw != rounded
    ]
    if moved:
        numbers += f"; rounded to the tick {_fmt(tick)}: " + ", ".join(moved)
    return f"{problem} ({numbers})"


def _halted_text(since: int | None, why: str) -> str:
    return f"trading halted since ts={since}: {why}"


def _cooldown_text(sym: str, n_losses: int, until: int, now: int) -> str:
    return (
        f"{sym} cooling down after {n_losses} consecutive losses until "
        f"ts={until} ({(until - now) / NS_PER_MINUTE:g} min left)"
    )


def _position_exists_text(sym: str, existing_qty: float, n_entries: int) -> str:
    what = f"a position of {_fmt(existing_qty)}" if existing_qty != 0 else f"{n_entries} open entry order(s)"
    return f"{sym} already has {what} (one position per symbol)"


def _max_open_text(n_positions: int, n_pending: int, n_open: int, max_open: int) -> str:
    return (
        f"{n_positions} open positions + {n_pending} open entry orders = {n_open} "
        f">= max_open_positions {max_open}"
    )


def _rate_text(n_rate: int, max_rate: int) -> str:
    return f"{n_rate} entries approved in the last 60 s >= max_orders_per_minute {max_rate}"


def _budget_text(budget: tuple[float, float, float, float]) -> str:
    risk_amount, equity, risk_pct, m = budget
    return f"{_fmt(risk_amount)} (equity {_fmt(equity)} x {_fmt(risk_pct)}% x size multiplier {_fmt(m)})"


def _size_text(
    budget: tuple[float, float, float, float],
    unit_loss: float,
    qty: float,
    min_qty: float,
    lot: float,
    min_quantity: float,
) -> str:
    return (
        f"risk {_budget_text(budget)} / loss per unit {_fmt(unit_loss)} gives {_fmt(qty)}, below the "
        f"minimum {_fmt(min_qty)} (lot {_fmt(lot)}, min_quantity {_fmt(min_quantity)})"
    )


def _notional_text(qty: float, unit_notional: float, entry: float, mult: float, min_notional: float) -> str:
    return (
        f"notional {_fmt(qty * unit_notional)} ({_fmt(qty)} x {_fmt(entry)} x {_fmt(mult)}) "
        f"< min_notional {_fmt(min_notional)}"
    )


def _cap_text(
    unit: tuple[str, float | None, float, float, float], note: tuple[str, float, float, float, float, float]
) -> str:
    """A cap the new quantity exceeds: `unit` = (symbol, margin per unit, entry, multiplier,
    equity), `note` = (code, used, quantity, wanted, pct, cap)."""
    sym, margin, entry, mult, equity = unit
    code, used, qty, wanted, pct, cap = note
    what = f"{sym} position" if code == MAX_POSITION else "gross exposure"
    per_unit = f"margin {_fmt(margin)}" if margin is not None else f"{_fmt(entry)} x {_fmt(mult)}"
    return (
        f"{what}: {_fmt(used)} held + {_fmt(qty)} x {per_unit} = {_fmt(wanted)} "
        f"new > {code}_pct {_fmt(pct)}% of equity {_fmt(equity)} = {_fmt(cap)}"
    )


def _cap_refusal_text(
    unit: tuple[str, float | None, float, float, float],
    note: tuple[str, float, float, float, float, float],
    room: float,
    min_qty: float,
    unit_notional: float,
    min_notional: float,
) -> str:
    return (
        f"{_cap_text(unit, note)}; the room left, {_fmt(room)}, does not fit the minimum size {_fmt(min_qty)} "
        f"({_fmt(min_qty * unit_notional)} of notional, min_notional {_fmt(min_notional)})"
    )


def _approved_text(
    unit: tuple[str, float | None, float, float, float],
    qty: float,
    unit_loss: float,
    budget: tuple[float, float, float, float],
    stop_distance: float,
    notes: list[tuple[str, float, float, float, float, float, float]],
) -> str:
    _, _, entry, mult, _ = unit
    risk_amount, equity, risk_pct, m = budget
    text = (
        f"{_fmt(qty)} @ {_fmt(entry)} risking {_fmt(qty * unit_loss)} "
        f"(budget {_fmt(risk_amount)} = equity {_fmt(equity)} x {_fmt(risk_pct)}% x size "
        f"multiplier {_fmt(m)}; stop {_fmt(stop_distance)} away x contract multiplier {_fmt(mult)})"
    )
    if notes:
        text += "; reduced: " + "; ".join(
            f"{_cap_text(unit, note[:6])}: quantity {_fmt(note[2])} -> {_fmt(note[6])}" for note in notes
        )
    return text
