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

from scalper.types import Fill, Position, Side

log = logging.getLogger(__name__)

_EPS = 1e-9


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

        Handles opening, adding, reducing, closing and flipping, long and short. The fee is
        subtracted from cash here as well (see `fees_paid`).
        """
        if not (math.isfinite(fill.quantity) and fill.quantity > 0):
            raise ValueError(f"fill {fill.fill_id}: quantity must be > 0, got {fill.quantity}")
        mult = float(multiplier)
        self.multipliers[fill.symbol] = mult
        pos = self.positions.get(fill.symbol)
        if pos is None:
            pos = self.positions[fill.symbol] = Position(fill.symbol)
        signed = fill.quantity * Side(fill.side).sign
        old = pos.quantity
        realized = 0.0
        if old == 0 or (old > 0) == (signed > 0):
            # open or add: new volume-weighted average
            new = old + signed
            pos.avg_price = (abs(old) * pos.avg_price + fill.quantity * fill.price) / abs(new)
            pos.quantity = new
            if old == 0:
                pos.opened_ts = fill.ts
                if strategy:
                    pos.strategy = strategy
        else:
            closed = min(abs(old), abs(signed))
            direction = 1.0 if old > 0 else -1.0
            realized = closed * (fill.price - pos.avg_price) * mult * direction
            new = old + signed
            if abs(new) <= _EPS * max(1.0, abs(old)):
                pos.quantity = 0.0
                pos.avg_price = 0.0
                pos.opened_ts = None
            elif (new > 0) != (old > 0):
                # flipped: the rest opens a new position at the fill price
                pos.quantity = new
                pos.avg_price = fill.price
                pos.opened_ts = fill.ts
                if strategy:
                    pos.strategy = strategy
            else:
                pos.quantity = new  # reduced: the average price of what is left is unchanged
        pos.realized_pnl += realized
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
