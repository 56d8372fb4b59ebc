"""Backtest statistics: trade table, equity curve figures, and a fingerprint of the trades.

Everything here is a pure function of the trades and the 1-minute equity curve, so a
summary can be recomputed from a run directory's files alone.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np

NS_PER_DAY = 86_400 * 1_000_000_000


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
        "max_drawdown_pct": float(-drawdown.min() * 100.0),
    }
