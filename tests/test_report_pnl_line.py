"""The end-of-run P&L words (report.pnl_line): realised and marked figures apart, open positions listed."""

from __future__ import annotations

from scalper.report import pnl_line


def summary(**overall) -> dict:
    return {
        "starting_equity": 100_000.0,
        "open_positions_at_end": {"ES": -4.0},
        "overall": {
            "trades": 12,
            "net_pnl": -628.68,
            "final_equity": 99_530.0,
            "return_pct": -0.47,
            **overall,
        },
    }


def test_the_pnl_line_says_realised_on_the_starting_equity_then_marked_equity_and_the_open_positions():
    assert pnl_line(summary()) == (
        "trades 12, realised P&L -628.68 (-0.63% of the starting equity), "
        "final equity 99,530.00 marked (-0.47%), open at the end: ES -4"
    )


def test_the_pnl_line_says_none_open_and_na_for_a_missing_figure():
    s = summary(final_equity=None)
    s["open_positions_at_end"] = {}
    assert pnl_line(s).endswith("final equity n/a marked (-0.47%), open at the end: none")
    s["open_positions_at_end"] = {"BTCUSDT": 0.4995, "ES": -1.0}
    assert pnl_line(s).endswith("open at the end: BTCUSDT +0.4995, ES -1")
