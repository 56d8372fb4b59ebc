"""Per strategy and per symbol figures (report.group_stats): the realised curve of a group's
closed trades on the overall 1-minute grid, its return, drawdown, Sharpe, Sortino, exposure."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from scalper import backtest as bt
from scalper.config import Config, default_document
from scalper.report import Trade, group_stats, realised_curve, time_in_market_pct

M = 60 * 10**9
START = 10_000.0
CLOSES = np.array([1, 2, 3, 4], dtype=np.int64) * M  # the bars opening at minutes 0..3


def trade(symbol: str, strategy: str, entry: float, exit_: float, pnl: float) -> Trade:
    """A trade entered / exited at `entry` / `exit_` minutes (fractions: a live fill's time)."""
    return Trade(
        symbol, strategy, "long", 1.0, int(entry * M), 100.0, int(exit_ * M), 101.0, 0.0, pnl, 1.0, "exit"
    )


T1 = trade("AAA", "momentum", 0, 1, 100.0)  # exits in bar 1: counted at its close (minute 2)
T2 = trade("AAA", "momentum", 2, 3.5, -50.0)  # a live exit inside bar 3: counted at minute 4
T4 = trade("AAA", "breakout", 0.5, 2, 20.0)  # overlaps both momentum trades


def test_a_groups_curve_adds_each_trades_pnl_at_the_close_of_its_exits_bar():
    assert realised_curve([T1, T2], START, CLOSES).tolist() == [10_000.0, 10_100.0, 10_100.0, 10_050.0]
    assert realised_curve([T1, T2, T4], START, CLOSES).tolist() == [10_000.0, 10_100.0, 10_120.0, 10_070.0]
    assert realised_curve([], START, CLOSES).tolist() == [START] * 4


def test_group_figures_by_hand():
    st = group_stats([T1, T2], days=1.0, starting_equity=START, equity_ts=CLOSES, periods_per_year=4)
    # curve from the starting equity: 10000, 10000, 10100, 10100, 10050
    r = [0.0, 0.01, 0.0, -50 / 10_100]
    mean = sum(r) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 3)
    downside = math.sqrt((50 / 10_100) ** 2 / 4)
    assert st["trades"] == 2 and st["net_pnl"] == 50.0
    assert st["return_pct"] == pytest.approx(0.5)
    assert st["max_drawdown_pct"] == pytest.approx(100 * 50 / 10_100)
    assert st["sharpe"] == pytest.approx(mean * 2 / std)  # annualised: sqrt(4 periods a year)
    assert st["sortino"] == pytest.approx(mean * 2 / downside)
    assert st["exposure_pct"] == pytest.approx(100 * 2.5 / 4)  # 1 + 1.5 of the 4 minutes
    assert "final_equity" not in st


def test_a_groups_exposure_counts_overlapping_trades_once():
    # AAA: minutes 0..1, 0.5..2 and 2..3.5 -> 0..3.5 of 4
    assert time_in_market_pct([T1, T2, T4], CLOSES) == pytest.approx(100 * 3.5 / 4)
    assert time_in_market_pct([], CLOSES) == 0.0


def test_with_one_strategy_and_symbol_the_group_has_the_overall_trades_return_and_exposure():
    doc = default_document()
    doc["symbols"] = ["AAA"]
    doc["feed"]["synthetic"]["minutes"] = 1440
    for name in ("momentum", "mean_reversion"):
        doc["strategies"][name]["enabled"] = False
    cfg = msgspec.convert(doc, Config)
    data = {s: bt.prepare(s, b, cfg) for s, b in bt.load_bars(cfg, synthetic=True).items()}
    result = bt.Backtest(cfg).run(data)
    summary = bt.summarize(result)
    overall, days = summary["overall"], summary["days"]
    st = group_stats(
        result.trades, days, cfg.risk.starting_equity, result.equity_ts, cfg.backtest.periods_per_year
    )
    assert st["trades"] == overall["trades"] > 3
    assert st["net_pnl"] == pytest.approx(overall["net_pnl"])
    assert st["exposure_pct"] == pytest.approx(overall["exposure_pct"])  # one position at a time
    assert st["return_pct"] == pytest.approx(100 * overall["net_pnl"] / cfg.risk.starting_equity)
    assert not result.open_positions  # nothing open at the end: realised = marked
    assert st["return_pct"] == pytest.approx(overall["return_pct"])
