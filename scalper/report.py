"""Backtest statistics: trade table, equity curve figures, and a fingerprint of the trades.

Everything here is a pure function of the trades and the 1-minute equity curve, so a
summary can be recomputed from a run directory's files alone.

Per strategy and per symbol (`group_stats`) the equity is REALISED: the starting equity plus
the group's closed trades' P&L, each counted at the close of the bar its exit filled in, on
the overall curve's 1-minute grid; exposure is the share of that time with one of the group's
trades open. The overall figures are MARKED (open positions at each bar's close). With one
strategy and one symbol, the group's trades, net P&L and exposure are the overall ones; its
return is too when nothing is open at the end; its drawdown, Sharpe and Sortino are the
realised curve's (open trades' swings are not in it), so they can differ from the overall.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

NS_PER_DAY = 86_400 * 1_000_000_000
NS_PER_MINUTE = 60 * 1_000_000_000


class Trade(msgspec.Struct, frozen=True):
    """One closed round trip (entry fill(s) to exit fill(s)) of one entry order."""

    symbol: str
    strategy: str
    side: str  # "long" | "short"
    quantity: float
    entry_ts: int
    entry_price: float
    exit_ts: int
    exit_price: float
    fees: float
    pnl: float  # net of fees, in account currency (multiplier applied)
    # pnl / the risk planned at sizing: quantity filled x |planned entry - stop| x multiplier
    # (planned entry: the limit price, or the market order's decision close); NaN if unknown
    r_multiple: float
    exit_reason: str  # "stop_loss" | "take_profit" | "exit" | ...
    entry_order_id: str = ""


TRADE_COLUMNS = tuple(
    msgspec.structs.fields(Trade)[i].name for i in range(len(msgspec.structs.fields(Trade)))
)


def fingerprint(trades: Iterable[Trade]) -> str:
    """sha256 over the closed trades in a canonical form: equal for equal trades.

    Prices and quantities are rounded to 1e-9 so that the same decisions reached through
    different float paths (backtest vs live replay) hash the same.
    """
    h = hashlib.sha256()
    rows = sorted(
        (
            t.symbol,
            t.strategy,
            t.side,
            t.entry_ts,
            t.exit_ts,
            round(t.quantity, 9),
            round(t.entry_price, 9),
            round(t.exit_price, 9),
            t.exit_reason,
        )
        for t in trades
    )
    for row in rows:
        h.update(repr(row).encode())
    return h.hexdigest()


def _ratio(num: float, den: float) -> float | None:
    if den == 0 or not math.isfinite(den):
        return None
    value = num / den
    return value if math.isfinite(value) else None


def trade_stats(trades: Sequence[Trade], days: float) -> dict[str, Any]:
    """Win rate, profit factor, expectancy, average R... of a set of closed trades."""
    n = len(trades)
    pnl = np.array([t.pnl for t in trades], dtype=np.float64)
    wins = pnl[pnl > 0]
    losses = pnl[pnl < 0]
    r = np.array([t.r_multiple for t in trades], dtype=np.float64)
    r = r[np.isfinite(r)]
    return {
        "trades": n,
        "net_pnl": float(pnl.sum()) if n else 0.0,
        "fees": float(sum(t.fees for t in trades)),
        "win_rate": _ratio(len(wins), n),
        "profit_factor": _ratio(float(wins.sum()), float(-losses.sum())) if n else None,
        "expectancy": float(pnl.mean()) if n else None,
        "avg_r_multiple": float(r.mean()) if len(r) else None,
        "avg_win": float(wins.mean()) if len(wins) else None,
        "avg_loss": float(losses.mean()) if len(losses) else None,
        "trades_per_day": _ratio(n, days),
        "exit_reasons": dict(sorted(_count(t.exit_reason for t in trades).items())),
    }


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def equity_stats(equity: np.ndarray, starting_equity: float, periods_per_year: int) -> dict[str, Any]:
    """Return, Sharpe and Sortino of 1-minute equity returns (annualised), max drawdown."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size == 0:
        return {
            "final_equity": starting_equity,
            "return_pct": 0.0,
            "sharpe": None,
            "sortino": None,
            "max_drawdown_pct": 0.0,
        }
    curve = np.concatenate(([starting_equity], equity))
    rets = np.diff(curve) / curve[:-1]
    mean = float(rets.mean())
    std = float(rets.std(ddof=1)) if rets.size > 1 else 0.0
    downside = rets[rets < 0]
    # Sortino: downside deviation over ALL periods (zeros for non-negative returns)
    dd_dev = float(np.sqrt((np.minimum(rets, 0.0) ** 2).mean())) if rets.size else 0.0
    ann = math.sqrt(periods_per_year)
    peak = np.maximum.accumulate(curve)
    drawdown = (curve - peak) / peak
    return {
        "final_equity": float(curve[-1]),
        "return_pct": float((curve[-1] / starting_equity - 1.0) * 100.0),
        "sharpe": _ratio(mean * ann, std) if std > 0 else None,
        "sortino": _ratio(mean * ann, dd_dev) if dd_dev > 0 and downside.size else None,
        "max_drawdown_pct": float(0.0 - drawdown.min() * 100.0),  # a curve that never falls: 0.0, not -0.0
    }


def realised_curve(trades: Sequence[Trade], starting_equity: float, equity_ts: np.ndarray) -> np.ndarray:
    """Equity at each of `equity_ts` (bar closes, sorted) from closed trades only: each trade's
    P&L counts from the close of the bar its exit filled in (the last bar opening at or before
    its exit time: a paper exit sits on a bar's open, a live one inside the minute), as the
    overall curve counts a fill. An exit before the first bar counts from the first."""
    closes = np.asarray(equity_ts, dtype=np.int64)
    step = np.zeros(closes.shape[0], dtype=np.float64)
    if closes.size and trades:
        exits = np.array([t.exit_ts for t in trades], dtype=np.int64)
        at = np.maximum(np.searchsorted(closes - NS_PER_MINUTE, exits, side="right") - 1, 0)
        np.add.at(step, at, np.array([t.pnl for t in trades], dtype=np.float64))
    return starting_equity + np.cumsum(step)


def time_in_market_pct(trades: Sequence[Trade], equity_ts: np.ndarray) -> float:
    """% of the curve's span (first bar's open to last bar's close) with one of `trades` open:
    the union of their entry-to-exit intervals (overlapping trades count once)."""
    closes = np.asarray(equity_ts, dtype=np.int64)
    if not closes.size:
        return 0.0
    total = int(closes[-1] - closes[0]) + NS_PER_MINUTE
    held, end = 0, None
    for a, b in sorted((t.entry_ts, t.exit_ts) for t in trades):
        if end is not None and a < end:
            held += max(0, b - end)
            end = max(end, b)
        else:
            held += max(0, b - a)
            end = b
    return round(100.0 * min(held, total) / total, 4) if total > 0 else 0.0


def group_stats(
    trades: Sequence[Trade],
    days: float,
    starting_equity: float,
    equity_ts: np.ndarray,
    periods_per_year: int,
) -> dict[str, Any]:
    """One strategy's or symbol's figures: `trade_stats`, and return (on the starting equity),
    max drawdown, Sharpe and Sortino (annualised as the overall ones) of its realised curve
    (`realised_curve`), and its exposure (`time_in_market_pct`). See the module docstring for
    how they compare with the overall, marked figures."""
    curve = equity_stats(
        realised_curve(trades, starting_equity, equity_ts), starting_equity, periods_per_year
    )
    del curve["final_equity"]  # a group has no equity of its own: the account's is overall
    return {**trade_stats(trades, days), **curve, "exposure_pct": time_in_market_pct(trades, equity_ts)}


def pnl_line(summary: Mapping[str, Any]) -> str:
    """The end-of-run P&L words from a (trading) summary: the closed trades' REALISED P&L and its
    % of the starting equity, then the final MARKED equity and return (open positions at the last
    close), then what is still open, so that the two figures are never read as one."""
    o = summary["overall"]
    start = summary.get("starting_equity")
    net = o.get("net_pnl")
    pct = _ratio(100.0 * net, float(start)) if net is not None and start else None
    held = summary.get("open_positions_at_end") or {}
    opened = ", ".join(f"{sym} {float(q):+.10g}" for sym, q in held.items()) or "none"
    return (
        f"trades {o['trades']:,}, realised P&L {_num(net)} ({_num(pct, '.2f', '%')} of the starting equity), "
        f"final equity {_num(o.get('final_equity'))} marked ({_num(o.get('return_pct'), '.2f', '%')}), "
        f"open at the end: {opened}"
    )


def _num(x: float | None, fmt: str = ",.2f", unit: str = "") -> str:
    return "n/a" if x is None else format(x, fmt) + unit
