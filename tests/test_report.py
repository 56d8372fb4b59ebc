"""Backtest statistics and the trade fingerprint."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalper.report import Trade, equity_stats, fingerprint, trade_stats

MIN = 60_000_000_000


def trade(pnl: float, i: int = 0, **kw) -> Trade:
    base = dict(
        symbol="ES",
        strategy="momentum",
        side="long",
        quantity=2.0,
        entry_ts=i * MIN,
        entry_price=100.0,
        exit_ts=(i + 5) * MIN,
        exit_price=100.0 + pnl / 2,
        fees=1.0,
        pnl=pnl,
        r_multiple=pnl / 100.0,
        exit_reason="take_profit" if pnl > 0 else "stop_loss",
    )
    base.update(kw)
    return Trade(**base)


def test_fingerprint_is_equal_for_equal_trades_in_any_order():
    a = [trade(100, 0), trade(-50, 10), trade(30, 20)]
    assert fingerprint(a) == fingerprint(list(reversed(a)))
    assert fingerprint(a) == fingerprint([trade(100, 0), trade(-50, 10), trade(30, 20)])


def test_fingerprint_changes_when_any_decision_changes():
    a = [trade(100, 0), trade(-50, 10)]
    base = fingerprint(a)
    assert fingerprint([trade(100, 0), trade(-50, 11)]) != base  # later entry
    assert fingerprint([trade(100, 0, quantity=3.0), trade(-50, 10)]) != base
    assert fingerprint([trade(100, 0, exit_reason="exit"), trade(-50, 10)]) != base
    assert fingerprint(a[:1]) != base


def test_fingerprint_ignores_float_noise_below_1e9():
    assert fingerprint([trade(100, 0)]) == fingerprint([trade(100, 0, entry_price=100.0 + 1e-12)])


def test_trade_stats_on_hand_built_trades():
    s = trade_stats([trade(100, 0), trade(-50, 10), trade(30, 20), trade(-30, 30)], days=2.0)
    assert s["trades"] == 4
    assert s["net_pnl"] == 50
    assert s["win_rate"] == 0.5
    assert s["profit_factor"] == pytest.approx(130 / 80)
    assert s["expectancy"] == 12.5
    assert s["trades_per_day"] == 2.0
    assert s["exit_reasons"] == {"stop_loss": 2, "take_profit": 2}


def test_trade_stats_without_trades_has_no_ratios():
    s = trade_stats([], days=1.0)
    assert s["trades"] == 0 and s["win_rate"] is None and s["profit_factor"] is None


def test_equity_stats_drawdown_and_return():
    s = equity_stats(np.array([110.0, 99.0, 120.0]), 100.0, 525_600)
    assert s["return_pct"] == pytest.approx(20.0)
    assert s["max_drawdown_pct"] == pytest.approx(10.0)
    assert s["sharpe"] is not None and math.isfinite(s["sharpe"])


def test_flat_equity_has_no_sharpe():
    s = equity_stats(np.full(10, 100.0), 100.0, 525_600)
    assert s["sharpe"] is None and s["sortino"] is None and s["max_drawdown_pct"] == 0.0


def test_a_curve_that_never_falls_has_a_max_drawdown_of_plus_zero_not_minus_zero():
    dd = equity_stats(np.array([100_000.0, 100_000.0, 100_500.0]), 100_000.0, 525_600)["max_drawdown_pct"]
    assert dd == 0.0 and math.copysign(1.0, dd) == 1.0  # printed "0.000", never "-0.000"
