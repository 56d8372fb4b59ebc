"""summary.json's per-strategy and per-symbol figures, and the lines `scalper backtest` prints."""

from __future__ import annotations

import msgspec
import pytest

from scalper import backtest as bt
from scalper.config import Config, default_document
from scalper.report import group_stats, time_in_market_pct


@pytest.fixture(scope="module")
def two_symbols():
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["synthetic"]["minutes"] = 2 * 1440
    doc["risk"].update(max_drawdown_pct=90.0, daily_loss_limit_pct=90.0, max_open_positions=2)
    cfg = msgspec.convert(doc, Config)
    bars = bt.load_bars(cfg, synthetic=True)
    result = bt.Backtest(cfg).run({s: bt.prepare(s, b, cfg) for s, b in bars.items()})
    return cfg, result, bt.summarize(result)


def test_each_strategy_and_symbol_has_return_drawdown_sharpe_sortino_and_exposure(two_symbols):
    cfg, result, summary = two_symbols
    assert len(result.trades) > 20 and {t.symbol for t in result.trades} == {"AAA", "BBB"}
    for group, key in (("by_strategy", "strategy"), ("by_symbol", "symbol")):
        for name, figures in summary[group].items():
            mine = [t for t in result.trades if getattr(t, key) == name]
            expected = group_stats(
                mine,
                summary["days"],
                cfg.risk.starting_equity,
                result.equity_ts,
                cfg.backtest.periods_per_year,
            )
            for field in ("return_pct", "max_drawdown_pct", "sharpe", "sortino", "exposure_pct"):
                assert figures[field] == pytest.approx(expected[field], nan_ok=True), (group, name, field)
            assert figures["return_pct"] == pytest.approx(
                100 * sum(t.pnl for t in mine) / cfg.risk.starting_equity
            )


def test_overall_exposure_counts_overlapping_trades_on_two_symbols_once(two_symbols):
    _, result, summary = two_symbols
    union = time_in_market_pct(result.trades, result.equity_ts)
    assert summary["overall"]["exposure_pct"] == pytest.approx(union, abs=1e-4)
    per_symbol = [summary["by_symbol"][s]["exposure_pct"] for s in ("AAA", "BBB")]
    assert max(per_symbol) <= union + 1e-9 <= sum(per_symbol) + 1e-9


def test_the_printed_summary_separates_realised_from_marked_and_never_prints_minus_zero(two_symbols):
    _, _, summary = two_symbols
    flat = {**summary, "overall": {**summary["overall"], "max_drawdown_pct": -0.0001}}
    text = bt.format_summary(flat, "runs/x")
    assert "realised P&L" in text and "marked" in text and "open at the end" in text
    assert "max drawdown 0.00%" in text and "-0.00" not in text


def test_a_run_without_orders_writes_orders_with_their_columns_and_verifies(
    tmp_path, rules_only_config, capsys
):
    from scalper import cli

    out = tmp_path / "quiet"
    window = ["--from", "2013-09-02T00:00", "--to", "2013-09-02T00:05", "--strategies", "breakout"]
    assert cli.main(["backtest", "--config", rules_only_config, *window, "--out", str(out)]) == 0
    import pandas as pd

    orders = pd.read_parquet(out / "orders.parquet")
    assert len(orders) == 0 and "client_order_id" in orders.columns
    assert "everything agrees" in capsys.readouterr().out
