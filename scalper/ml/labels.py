"""Triple-barrier labels: did the signal's own bracket hit its target before its stop?

Each candidate signal is labelled as if it were taken alone, with the paper broker's bar-mode
fill model (scalper/execution/paper.py, DESIGN.md "Fill model"):

* Entry. MARKET: bar i+1's open, slipped against the taker (`slippage_bps`, `slippage_ticks`),
  taker fee. LIMIT: the first bar j in i+1 .. i+expiry_bars whose range trades THROUGH the
  limit (buy: low < limit), at min(limit, open) as maker - in bar i+1 an open already through
  the limit takes at min(limit, slipped open) as taker. Not filled by then: "unfilled", or,
  with `execution.limit_expiry_action == "market"`, a market entry at the next bar's open.
* Exit barriers, active from the bar after the entry bar (j+1) to j+H (H = ml.label_horizon_bars):
  stop (long: low <= stop) fills at the slipped min(stop, open) - a gap fills at the open;
  target (long: high > target, a touch is not enough) fills at max(target, open) as maker.
  When both are reached in one bar, the one the OPEN already reaches wins, otherwise the stop
  (the broker's pessimistic rule). Shorts mirrored.
* Time-out: neither barrier by bar j+H -> exit at bar j+H's close, slipped, taker.
* Data ends first: "open" (the label is not known yet; NaN).

outcome: "target" (label 1), "stop" (label 0), "timeout" (label 1 if its net R > 0 else 0),
"unfilled" or "open" (label NaN: not a trade, or not known yet).
r_multiple = (side x (exit - entry) - fees per unit in price) / |entry - stop|: the realised
R net of slippage and fees over the FILL's distance to the stop. Two differences from the
backtest, kept so far because the bundled models and docs/ML.md's figures were trained on
them: the backtest's Trade.r_multiple divides by the risk planned at sizing (|limit or
decision close - stop|; they differ when an entry fills away from its planned price, e.g. at
a gap open), and the RiskManager puts the signal's prices on the instrument's tick grid
(here they are used as the strategy gave them). `exit_ts` (the exit bar's close) is when the
label became known: the walk-forward purges training rows by it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from scalper.config import Config
from scalper.types import NS_PER_MINUTE

TARGET, STOP, TIMEOUT, UNFILLED, OPEN = "target", "stop", "timeout", "unfilled", "open"


class Label(NamedTuple):
    outcome: str
    label: float  # 1.0 win, 0.0 loss, NaN unknown / no trade
    entry_index: int  # -1 when not filled
    entry_price: float
    exit_index: int  # -1 when no exit (unfilled / open)
    exit_price: float
    r_multiple: float
    exit_ts: int  # close of the exit bar (ns); -1 when none


class BarrierPricing:
    """Slippage and fees of one instrument, in price units per unit traded."""

    def __init__(self, cfg: Config, symbol: str):
        ex = cfg.execution
        inst = cfg.instrument(symbol)
        self.slip_bps = ex.slippage_bps
        self.slip_abs = ex.slippage_ticks * inst.tick_size
        self.maker_bps, self.taker_bps = ex.maker_fee_bps, ex.taker_fee_bps
        self.fee_per_unit = None if inst.fee_per_unit is None else inst.fee_per_unit / inst.multiplier
        self.market_on_expiry = ex.limit_expiry_action == "market"

    def slip(self, price: float, sign: float) -> float:
        return price * (1.0 + sign * self.slip_bps / 1e4) + sign * self.slip_abs

    def fee(self, price: float, taker: bool) -> float:
        if self.fee_per_unit is not None:
            return self.fee_per_unit
        return price * (self.taker_bps if taker else self.maker_bps) / 1e4


def triple_barrier(
    cols: dict[str, np.ndarray],
    i: int,
    side: int,
    stop: float,
    target: float,
    limit_price: float | None,
    expiry_bars: int | None,
    horizon: int,
    pricing: BarrierPricing,
) -> Label:
    """The label of a signal decided at the close of bar `i` (see the module docstring).

    `cols`: one symbol's bars (timestamp, open, high, low, close) as numpy arrays.
    """
    if side not in (1, -1):
        raise ValueError(f"triple_barrier: side must be +1 or -1, got {side!r}")
    if horizon < 1:
        raise ValueError(f"triple_barrier: horizon must be >= 1 bar, got {horizon}")
    o, h, lo, c, ts = cols["open"], cols["high"], cols["low"], cols["close"], cols["timestamp"]
    n = o.shape[0]
    sgn = float(side)
    nan = math.nan
    # ---- entry
    if limit_price is None:
        j = i + 1
        if j >= n:
            return Label(OPEN, nan, -1, nan, -1, nan, nan, -1)
        entry, entry_taker = pricing.slip(float(o[j]), sgn), True
    else:
        last = i + (expiry_bars if expiry_bars else horizon)
        a, b = i + 1, min(last + 1, n)
        through = lo[a:b] < limit_price if side > 0 else h[a:b] > limit_price
        if through.any():
            j = a + int(np.argmax(through))
            op = float(o[j])
            at_open = op < limit_price if side > 0 else op > limit_price
            if j == i + 1 and at_open:  # marketable on arrival: takes
                slipped = pricing.slip(op, sgn)
                entry = min(limit_price, slipped) if side > 0 else max(limit_price, slipped)
                entry_taker = True
            else:
                entry = min(limit_price, op) if side > 0 else max(limit_price, op)
                entry_taker = False
        elif last + 1 >= n:
            return Label(OPEN, nan, -1, nan, -1, nan, nan, -1)
        elif pricing.market_on_expiry:
            j = last + 1
            entry, entry_taker = pricing.slip(float(o[j]), sgn), True
        else:
            return Label(UNFILLED, nan, -1, nan, -1, nan, nan, int(ts[last]) + NS_PER_MINUTE)
    risk = abs(entry - stop)
    fee_in = pricing.fee(entry, entry_taker)
    # ---- exit: bars j+1 .. j+horizon
    a, b = j + 1, min(j + horizon + 1, n)
    if side > 0:
        stop_hit, target_hit = lo[a:b] <= stop, h[a:b] > target
    else:
        stop_hit, target_hit = h[a:b] >= stop, lo[a:b] < target
    any_hit = stop_hit | target_hit
    if any_hit.any():
        k = a + int(np.argmax(any_hit))
        op = float(o[k])
        s_hit, t_hit = bool(stop_hit[k - a]), bool(target_hit[k - a])
        stop_at_open = op <= stop if side > 0 else op >= stop
        target_at_open = op > target if side > 0 else op < target
        stop_wins = s_hit and not (t_hit and target_at_open and not stop_at_open)
        if stop_wins:
            base = min(stop, op) if side > 0 else max(stop, op)
            exit_price, exit_taker, outcome = pricing.slip(base, -sgn), True, STOP
        else:
            exit_price = max(target, op) if side > 0 else min(target, op)
            exit_taker, outcome = False, TARGET
    elif j + horizon < n:
        k = j + horizon
        exit_price, exit_taker, outcome = pricing.slip(float(c[k]), -sgn), True, TIMEOUT
    else:
        return Label(OPEN, nan, j, entry, -1, nan, nan, -1)
    pnl = sgn * (exit_price - entry) - fee_in - pricing.fee(exit_price, exit_taker)
    r = pnl / risk if risk > 0 else nan
    if outcome == TARGET:
        label = 1.0
    elif outcome == STOP:
        label = 0.0
    else:
        label = 1.0 if r > 0 else 0.0
    return Label(outcome, label, j, entry, k, exit_price, r, int(ts[k]) + NS_PER_MINUTE)
