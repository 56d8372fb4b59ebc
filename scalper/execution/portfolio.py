"""Portfolio: cash and net positions from fills, futures-style.

Convention (the same for every instrument, spot included):

* `cash` starts at the starting equity and changes only by REALIZED P&L and FEES: a fill that
  reduces or closes a position adds `closed_qty * (price - avg_price) * multiplier * sign` to
  cash; every fill subtracts its fee (a negative fee, a maker rebate, adds). Opening or adding
  to a position moves no cash (no notional is paid, as with a futures margin account).
* `equity(marks) = cash + sum(quantity * (mark - avg_price) * multiplier)` over open
  positions: realized + unrealized, net of all fees paid.
* A position's `quantity` is signed (> 0 long, < 0 short); `avg_price` is the volume-weighted
  price of the open quantity (unchanged by reductions, reset by a flip to the fill price);
  `realized_pnl` accumulates the symbol's realized P&L GROSS of fees (fees are in `fees` per
  symbol and in `fees_paid`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Final

import msgspec

from scalper.types import Fill, Position

log = logging.getLogger(__name__)

# A position whose size is within this fraction of the sizes involved is flat (0.1 + 0.2 - 0.3).
QTY_REL_EPS: Final = 1e-9


class Portfolio:
    """Cash + positions of one account, updated by fills."""

    def __init__(self, starting_cash: float = 0.0):
        self.starting_cash = float(starting_cash)
        self.cash = float(starting_cash)
        self.positions: dict[str, Position] = {}  # every symbol ever traded; quantity 0 = flat
        self.multipliers: dict[str, float] = {}  # last multiplier used per symbol
        self.fees: dict[str, float] = {}  # fees paid per symbol
        self.fees_paid = 0.0
        self.realized_pnl = 0.0  # gross of fees

    def position(self, symbol: str) -> Position:
        """The symbol's position (a flat one if it was never traded)."""
        return self.positions.get(symbol) or Position(symbol)

    def open_positions(self) -> dict[str, Position]:
        return {s: p for s, p in self.positions.items() if p.quantity != 0}

    def apply_fill(self, fill: Fill, multiplier: float = 1.0, strategy: str = "") -> float:
        """Apply one fill; return the realized P&L of that fill (gross of its fee).

        Opening, adding, reducing, closing and flipping, long and short (`fill_effect`, the
        same accounting the ledger rebuild uses). The fee is subtracted from cash here as well.
        """
        if not (math.isfinite(fill.quantity) and fill.quantity > 0):
            raise ValueError(f"fill {fill.fill_id}: quantity must be > 0, got {fill.quantity}")
        mult = float(multiplier)
        self.multipliers[fill.symbol] = mult
        pos = self.positions.get(fill.symbol)
        if pos is None:
            pos = self.positions[fill.symbol] = Position(fill.symbol)
        # in place: callers may hold the Position
        pos.quantity, pos.avg_price, pos.realized_pnl, pos.opened_ts, pos.strategy, realized = _effect(
            pos, fill, mult, strategy or None
        )
        self.realized_pnl += realized
        self.cash += realized - fill.fee
        self.fees_paid += fill.fee
        self.fees[fill.symbol] = self.fees.get(fill.symbol, 0.0) + fill.fee
        return realized

    def _mult(self, symbol: str, multipliers: Mapping[str, float] | None) -> float:
        if multipliers is not None and symbol in multipliers:
            return float(multipliers[symbol])
        return self.multipliers.get(symbol, 1.0)

    def unrealized(self, marks: Mapping[str, float], multipliers: Mapping[str, float] | None = None) -> float:
        """Sum of quantity * (mark - avg_price) * multiplier over open positions.

        Every open position needs a mark (KeyError naming the symbol otherwise).
        """
        total = 0.0
        for symbol, pos in self.positions.items():
            if pos.quantity == 0:
                continue
            if symbol not in marks:
                raise KeyError(f"no mark for open position {symbol}")
            total += pos.quantity * (float(marks[symbol]) - pos.avg_price) * self._mult(symbol, multipliers)
        return total

    def equity(self, marks: Mapping[str, float], multipliers: Mapping[str, float] | None = None) -> float:
        """cash + unrealized P&L at `marks` (multipliers default to those of the fills)."""
        return self.cash + self.unrealized(marks, multipliers)

    def gross_exposure(
        self, marks: Mapping[str, float], multipliers: Mapping[str, float] | None = None
    ) -> float:
        """Sum of |quantity| * mark * multiplier over open positions (notional)."""
        return sum(
            abs(p.quantity) * float(marks[s]) * self._mult(s, multipliers)
            for s, p in self.positions.items()
            if p.quantity != 0
        )


def fill_effect(
    position: Position, fill: Fill, multiplier: float = 1.0, strategy: str | None = None
) -> tuple[Position, float]:
    """(the position after `fill`, the P&L this fill realized) - average-cost accounting;
    `position` is not modified.

    Adding to a position moves its average price; reducing or closing it realizes
    `closed_qty * (price - avg_price) * direction * multiplier` (fees are NOT included: they
    are accounted for separately); a fill larger than the position closes it and opens the
    remainder on the other side at the fill price (a flip). `opened_ts` is the ts of the fill
    that opened the current position (None when flat); `strategy`, when given, is recorded as
    the position's strategy when this fill opens or flips it ("" when flat). A position whose
    size falls within `QTY_REL_EPS` of the sizes involved is flat (float dust: 0.1 + 0.2 - 0.3).
    """
    quantity, avg_price, realized_pnl, opened_ts, strat, gain = _effect(position, fill, multiplier, strategy)
    after = msgspec.structs.replace(
        position,
        quantity=quantity,
        avg_price=avg_price,
        realized_pnl=realized_pnl,
        opened_ts=opened_ts,
        strategy=strat,
    )
    return after, gain


def _effect(
    position: Position, fill: Fill, multiplier: float, strategy: str | None
) -> tuple[float, float, float, int | None, str, float]:
    """`fill_effect` as plain values (quantity, avg_price, realized_pnl, opened_ts, strategy,
    the P&L realized), so the Portfolio updates its Position in place without building one."""
    q = position.quantity
    d = fill.quantity * fill.side.sign
    new_q = q + d
    scale = max(abs(q), abs(d))
    flat = abs(new_q) <= QTY_REL_EPS * scale
    avg = position.avg_price
    realized = position.realized_pnl
    if q == 0.0:
        if flat:  # a zero-size fill on a flat position
            return q, avg, realized, position.opened_ts, position.strategy, 0.0
        strat = position.strategy if strategy is None else strategy
        return d, fill.price, realized, fill.ts, strat, 0.0
    if (q > 0) == (d > 0):  # adding
        avg = (avg * abs(q) + fill.price * abs(d)) / (abs(q) + abs(d))
        return new_q, avg, realized, position.opened_ts, position.strategy, 0.0
    direction = 1.0 if q > 0 else -1.0
    closed = min(abs(q), abs(d))
    gain = closed * (fill.price - avg) * direction * multiplier
    realized += gain
    if flat:  # closed exactly
        return 0.0, 0.0, realized, None, "", gain
    if abs(d) < abs(q):  # reduced
        return new_q, avg, realized, position.opened_ts, position.strategy, gain
    # flipped: the remainder opens at the fill price
    strat = position.strategy if strategy is None else strategy
    return new_q, fill.price, realized, fill.ts, strat, gain


def position_after(
    position: Position, fill: Fill, multiplier: float = 1.0, strategy: str | None = None
) -> Position:
    """The position after `fill` (see `fill_effect`); what the ledger rebuild replays."""
    return fill_effect(position, fill, multiplier, strategy)[0]
