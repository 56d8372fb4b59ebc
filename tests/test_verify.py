"""`scalper verify`: a clean run agrees; each kind of tampering is caught by the right check."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from scalper import backtest as bt
from scalper.cli_report import EXIT_BAD_RUN_DIR, EXIT_MISMATCH, after_run, register
from scalper.config import Config, default_document
from scalper.run_dir import RunDirError, write_backtest
from scalper.types import NS_PER_MINUTE
from scalper.verify import verify_run


def make_run(out: Path, **overrides) -> Path:
    """A one-day synthetic backtest of two symbols written as a run directory with its bars."""
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["synthetic"]["minutes"] = 1440
    for section, values in overrides.items():
        doc[section].update(values)
    cfg = msgspec.convert(doc, Config)
    bars = bt.load_bars(cfg, synthetic=True)
    data = {s: bt.prepare(s, b, cfg) for s, b in bars.items()}
    engine = bt.Backtest(cfg)
    result = engine.run(data)
    write_backtest(out, engine, result, data)
    return out


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("verify") / "run")


@pytest.fixture
def run_copy(clean_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    return out


def signals(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "signals.parquet")


def write_signals(run: Path, df: pd.DataFrame) -> None:
    df.to_parquet(run / "signals.parquet", index=False)


def sql(run: Path, statement: str, params=()) -> list:
    with sqlite3.connect(run / "ledger.sqlite") as conn:
        rows = conn.execute(statement, params).fetchall()
        conn.commit()
    return rows


def found(report, check: str) -> list:
    return [m for m in report.mismatches if m.check == check]


# ------------------------------------------------------------------------------------ clean


def test_a_clean_backtest_run_verifies_with_no_mismatch_and_checks_every_signal_and_fill(clean_run):
    report = verify_run(clean_run)
    assert report.ok, report.mismatches[:5]
    assert report.mismatches == []
    logged = len(signals(clean_run))
    n_fills = sql(clean_run, "SELECT COUNT(*) FROM fills")[0][0]
    assert logged > 50 and n_fills > 50  # the run has something to check
    assert report.signals_logged == logged
    assert report.signals_expected == logged  # every bar where the rules hold has its signal
    assert report.checked["signal"] == logged
    assert report.checked["fill"] == report.checked["fee"] == n_fills
    assert report.checked["trade"] == len(pd.read_parquet(clean_run / "trades.parquet"))
    assert report.checked["indicator"] == 2 * 11  # every stored indicator column of both symbols


def test_partial_fills_expiry_to_market_and_tick_slippage_verify_clean(tmp_path):
    """The fill model's other paths (rest of a triggered stop at the open, E-mkt orders, a
    volume cap) are what verify expects too: no false alarms."""
    run = make_run(
        tmp_path / "run",
        execution={"max_volume_participation": 0.02, "limit_expiry_action": "market", "slippage_ticks": 1},
    )
    partial = sql(
        run,
        "SELECT COUNT(*) FROM orders WHERE client_order_id IN "
        "(SELECT client_order_id FROM fills GROUP BY client_order_id HAVING COUNT(*) > 1)",
    )[0][0]
    assert partial > 0  # the cap did split orders over several bars
    report = verify_run(run)
    assert report.ok, report.mismatches[:5]


# ------------------------------------------------------------------------------------ tampered


def test_a_fill_outside_its_bars_range_is_reported(run_copy):
    fill_id, sym, ts = sql(run_copy, "SELECT fill_id, symbol, ts FROM fills ORDER BY seq LIMIT 1")[0]
    bars = pd.read_parquet(run_copy / "bars_with_indicators.parquet")
    bar = bars[(bars["symbol"] == sym) & (bars["timestamp"].astype("int64") == ts)].iloc[0]
    sql(run_copy, "UPDATE fills SET price = ? WHERE fill_id = ?", (float(bar["high"]) + 5.0, fill_id))
    report = verify_run(run_copy)
    assert not report.ok
    assert [m.subject for m in found(report, "fill_range")] == [fill_id]


def test_a_signal_whose_conditions_do_not_hold_at_its_bar_is_reported(run_copy):
    df = signals(run_copy)
    i = df.index[(df["strategy"] == "breakout") & ~df["approved"]][0]
    df.loc[i, "side"] = "sell" if df.loc[i, "side"] == "buy" else "buy"  # the other side's rule
    write_signals(run_copy, df)
    report = verify_run(run_copy)
    ts = int(df.loc[i, "ts"])
    cond = [m for m in found(report, "condition") if m.ts == ts]
    assert cond and all(m.subject.startswith("breakout") for m in cond)
    assert any("previous 20-bar" in m.expected for m in cond)


def test_a_crossing_signal_one_bar_late_is_reported_as_a_crossing_that_already_held(run_copy):
    df = signals(run_copy)
    sym_bars = pd.read_parquet(run_copy / "bars_with_indicators.parquet")
    mom = df[(df["strategy"] == "momentum") & ~df["approved"]]
    # a refused cross whose next bar exists and has no momentum signal of its own
    taken = set(zip(df["symbol"], df["ts"], df["strategy"], strict=True))
    bar_ts = set(zip(sym_bars["symbol"], sym_bars["timestamp"].astype("int64"), strict=True))
    i = next(
        k
        for k, r in mom.iterrows()
        if (r.symbol, r.ts + NS_PER_MINUTE) in bar_ts
        and (r.symbol, r.ts + NS_PER_MINUTE, "momentum") not in taken
    )
    df.loc[i, "ts"] = int(df.loc[i, "ts"]) + NS_PER_MINUTE
    write_signals(run_copy, df)
    report = verify_run(run_copy)
    late = [m for m in found(report, "crossing") if m.ts == int(df.loc[i, "ts"])]
    assert len(late) == 1 and "one bar earlier" in late[0].expected
    # and the bar it was taken from now misses its signal
    assert [m.ts for m in found(report, "missing_signal")] == [int(df.loc[i, "ts"]) - NS_PER_MINUTE]


def test_a_stop_at_the_wrong_atr_multiple_is_reported_with_the_multiple_it_implies(run_copy):
    df = signals(run_copy)
    i = df.index[(df["strategy"] == "momentum") & ~df["approved"]][0]
    close = json.loads(df.loc[i, "values"])["close"]
    df.loc[i, "stop_loss"] = close - 2.0 * (close - df.loc[i, "stop_loss"])  # 3 x ATR instead of 1.5
    write_signals(run_copy, df)
    report = verify_run(run_copy)
    assert {m.check for m in report.mismatches} == {"stop"}
    (m,) = report.mismatches
    assert m.ts == int(df.loc[i, "ts"])
    assert m.detail.startswith("3 x ATR") and "config says 1.5" in m.detail


def test_a_signal_that_should_have_fired_but_is_not_logged_is_listed(run_copy):
    df = signals(run_copy)
    i = df.index[~df["approved"]][0]
    write_signals(run_copy, df.drop(index=i))
    report = verify_run(run_copy)
    assert [(m.check, m.symbol, m.ts) for m in report.mismatches] == [
        ("missing_signal", df.loc[i, "symbol"], int(df.loc[i, "ts"]))
    ]
    assert report.mismatches[0].subject == f"{df.loc[i, 'strategy']} {df.loc[i, 'side']}"


def test_a_fill_without_its_fee_is_reported(run_copy):
    fill_id, fee = sql(run_copy, "SELECT fill_id, fee FROM fills WHERE fee > 0 ORDER BY seq LIMIT 1")[0]
    sql(run_copy, "UPDATE fills SET fee = 0 WHERE fill_id = ?", (fill_id,))
    report = verify_run(run_copy)
    (m,) = found(report, "fee")
    assert m.subject == fill_id and float(m.expected) == pytest.approx(fee) and float(m.found) == 0.0


def test_trade_pnl_that_disagrees_with_the_ledgers_fills_is_reported(run_copy):
    trades = pd.read_parquet(run_copy / "trades.parquet")
    trades.loc[3, "pnl"] += 100.0
    trades.to_parquet(run_copy / "trades.parquet", index=False)
    report = verify_run(run_copy)
    assert [m.subject for m in found(report, "trade")] == [f"{trades.loc[3, 'entry_order_id']} pnl"]
    assert len(found(report, "summary")) == 1  # the summary's net P&L no longer adds up either


def _edit_csv(run: Path, edit) -> pd.DataFrame:
    """trades.csv read as text (written back exactly as read, but for `edit`)."""
    df = pd.read_csv(run / "trades.csv", dtype=str, keep_default_na=False)
    edit(df)
    df.to_csv(run / "trades.csv", index=False)
    return df


def _set(column: str, value):
    """An edit of trades.csv's third row: `column` set to value(old text)."""

    def edit(df: pd.DataFrame) -> None:
        df.loc[2, column] = value(df.loc[2, column])

    return edit


@pytest.mark.parametrize(
    ("edit", "subject"),
    [
        (_set("exit_price", lambda old: repr(float(old) + 0.25)), "exit_price"),
        (_set("fees", lambda old: "0.0"), "fees"),
        (
            _set("exit_reason", lambda old: "take_profit" if old != "take_profit" else "stop_loss"),
            "exit_reason",
        ),
    ],
    ids=["exit_price", "fee_zeroed", "exit_reason"],
)
def test_a_changed_field_in_trades_csv_is_reported(run_copy, edit, subject):
    df = _edit_csv(run_copy, edit)
    report = verify_run(run_copy)
    assert [(m.check, m.subject) for m in report.mismatches] == [
        ("trades_csv", f"{df.loc[2, 'entry_order_id']} {subject}")
    ]


def test_a_trade_row_deleted_from_trades_csv_is_reported(run_copy):
    df = _edit_csv(run_copy, lambda df: None)
    gone = df.loc[4, "entry_order_id"]
    df.drop(index=4).to_csv(run_copy / "trades.csv", index=False)
    report = verify_run(run_copy)
    assert [(m.check, m.subject, m.found) for m in report.mismatches] == [("trades_csv", gone, "none")]


def test_a_trade_row_added_to_trades_csv_is_reported(run_copy):
    df = _edit_csv(run_copy, lambda df: None)
    extra = df.iloc[[0]].assign(entry_order_id="sc-made-up")
    pd.concat([df, extra]).to_csv(run_copy / "trades.csv", index=False)
    report = verify_run(run_copy)
    assert [(m.check, m.subject, m.found) for m in report.mismatches] == [
        ("trades_csv", "sc-made-up", "a row")
    ]


def test_a_changed_fill_price_in_orders_parquet_is_reported(run_copy):
    orders = pd.read_parquet(run_copy / "orders.parquet")
    k = int(orders.index[orders["filled_qty"] > 0][0])
    orders.loc[k, "avg_fill_price"] += 0.5
    orders.to_parquet(run_copy / "orders.parquet", index=False)
    report = verify_run(run_copy)
    assert [(m.check, m.subject) for m in report.mismatches] == [
        ("orders_file", f"{orders.loc[k, 'client_order_id']} avg_fill_price")
    ]


def test_an_order_deleted_from_orders_parquet_is_reported(run_copy):
    orders = pd.read_parquet(run_copy / "orders.parquet")
    gone = orders.loc[3, "client_order_id"]
    orders.drop(index=3).to_parquet(run_copy / "orders.parquet", index=False)
    report = verify_run(run_copy)
    assert [(m.check, m.subject, m.found) for m in report.mismatches] == [("orders_file", gone, "none")]


def test_a_trade_whose_strategy_is_not_its_entry_orders_is_reported(run_copy):
    trades = pd.read_parquet(run_copy / "trades.parquet")
    trades.loc[1, "strategy"] = "momentum" if trades.loc[1, "strategy"] != "momentum" else "breakout"
    trades.to_parquet(run_copy / "trades.parquet", index=False)
    report = verify_run(run_copy)
    # trades.parquet disagrees with the ledger's entry order, and trades.csv with trades.parquet
    assert sorted((m.check, m.subject.split()[-1]) for m in report.mismatches) == [
        ("trade", "strategy"),
        ("trades_csv", "strategy"),
    ]


def test_the_clean_runs_trades_csv_and_orders_parquet_are_checked_row_by_row(clean_run):
    report = verify_run(clean_run)
    assert report.checked["trades_csv"] == len(pd.read_parquet(clean_run / "trades.parquet"))
    assert report.checked["orders_file"] == sql(clean_run, "SELECT COUNT(*) FROM orders")[0][0]


def test_a_ledger_position_that_disagrees_with_the_fills_is_reported(run_copy):
    sql(run_copy, "UPDATE positions SET realized_pnl = realized_pnl + 1 WHERE symbol = 'AAA'")
    report = verify_run(run_copy)
    assert [(m.check, m.symbol, m.subject) for m in report.mismatches] == [
        ("position", "AAA", "realized_pnl")
    ]


def test_a_stored_indicator_that_is_not_the_batch_value_is_reported(run_copy):
    path = run_copy / "bars_with_indicators.parquet"
    wide = pd.read_parquet(path)
    row = wide.index[(wide["symbol"] == "BBB")][500]
    wide.loc[row, "rsi_14"] += 0.5
    wide.to_parquet(path, index=False)
    report = verify_run(run_copy)
    (m,) = found(report, "indicator")
    assert (m.symbol, m.subject, m.ts) == ("BBB", "rsi_14", int(wide.loc[row, "timestamp"].value))


def test_a_strategy_bug_is_caught_because_verify_derives_the_rules_itself(tmp_path, monkeypatch):
    """A breakout rule that forgets its volume test: its extra signals fail verify's own rule."""
    from scalper.strategies.breakout import Breakout

    original = Breakout.__init__

    def buggy(self, cfg):
        original(self, cfg)
        self.k = 0.0  # the bug: volume_multiple ignored

    monkeypatch.setattr(Breakout, "__init__", buggy)
    report = verify_run(make_run(tmp_path / "run"))
    bad = found(report, "condition")
    assert bad, "the buggy strategy produced no signal on a light-volume bar on this data"
    assert {m.expected for m in bad} == {"volume > 1.5 x volume_sma_20"}
    assert all(m.subject.startswith("breakout") for m in bad)


# ------------------------------------------------------------------------------------ bad dirs


def test_a_run_directory_without_stored_bars_is_refused_with_a_reason(run_copy):
    shutil.rmtree(run_copy / "bars")
    (run_copy / "bars_with_indicators.parquet").unlink()
    with pytest.raises(RunDirError, match="no stored bars"):
        verify_run(run_copy)


def test_verify_reads_bars_with_indicators_when_the_bar_store_is_missing(run_copy):
    shutil.rmtree(run_copy / "bars")
    assert verify_run(run_copy).ok


def test_a_path_that_is_not_a_run_directory_is_refused(tmp_path):
    with pytest.raises(RunDirError, match="not a directory"):
        verify_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match=r"no summary\.json"):
        verify_run(tmp_path / "empty")


# ------------------------------------------------------------------------------------ command


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scalper")
    common = argparse.ArgumentParser(add_help=False)
    register(parser.add_subparsers(dest="command"), common)
    args = parser.parse_args(argv)
    return args.func(args)


def test_verify_command_exits_0_on_a_clean_run(clean_run, capsys):
    assert run_cli(["verify", str(clean_run)]) == 0
    assert "everything agrees" in capsys.readouterr().out


def test_verify_command_prints_the_mismatches_and_exits_1(run_copy, capsys, tmp_path):
    sql(run_copy, "UPDATE fills SET fee = 0 WHERE seq = (SELECT MIN(seq) FROM fills WHERE fee > 0)")
    out_json = tmp_path / "verify.json"
    assert run_cli(["verify", str(run_copy), "--json", str(out_json)]) == EXIT_MISMATCH
    printed = capsys.readouterr().out
    assert "verify: mismatches" in printed and "fee" in printed and "MISMATCHES" in printed
    doc = json.loads(out_json.read_text())
    assert doc["ok"] is False and any(m["check"] == "fee" for m in doc["mismatches"])


def test_verify_command_exits_3_for_a_missing_run_directory(tmp_path, capsys):
    assert run_cli(["verify", str(tmp_path / "missing")]) == EXIT_BAD_RUN_DIR
    assert "not a directory" in capsys.readouterr().err


def test_after_run_verifies_writes_the_report_and_prints_both(run_copy, capsys):
    assert after_run(str(run_copy)) == 0
    printed = capsys.readouterr().out
    assert "everything agrees" in printed and f"report: {run_copy / 'report.html'}" in printed
    assert json.loads((run_copy / "verify.json").read_text())["ok"] is True
    sql(run_copy, "UPDATE fills SET fee = 0 WHERE seq = (SELECT MIN(seq) FROM fills WHERE fee > 0)")
    assert after_run(str(run_copy)) == EXIT_MISMATCH


def test_write_bars_stores_the_bar_store_layout_and_the_indicator_table(clean_run):
    from scalper.store import BarStore

    store = BarStore(str(clean_run / "bars"))
    assert store.symbols() == ["AAA", "BBB"]
    wide = pd.read_parquet(clean_run / "bars_with_indicators.parquet")
    aaa = wide[wide["symbol"] == "AAA"]
    stored = store.read("AAA")
    assert len(stored) == len(aaa) == 1440
    np.testing.assert_array_equal(stored["close"].to_numpy(), aaa["close"].to_numpy())
    assert {"ema_9", "atr_14", "session_vwap", "bb_upper"} <= set(wide.columns)


def test_verify_puts_a_price_on_the_tick_grid_as_the_engine_and_ccxt_do_near_half_a_tick():
    """94.79499999999999 is a hair below half a tick: ccxt's price_to_precision (and the
    engine's round_to_tick, tested against it) give 94.79; verify gave 94.80 and reported a
    take-profit 'not on the signal's price' in a clean run."""
    from scalper.execution.orders import round_to_tick
    from scalper.verify import _on_tick

    assert _on_tick(94.79499999999999, 0.01) == round_to_tick(94.79499999999999, 0.01) == 94.79
    rng = np.random.default_rng(5)
    for tick in (0.01, 0.25, 0.5, 0.1, 0.05):
        k = rng.integers(1, 10**6, 2_000)
        for price in (k + 0.5) * tick + rng.choice([-1e-12, -1e-9, 0.0, 1e-12, 1e-9], k.size) * tick:
            assert _on_tick(float(price), tick) == round_to_tick(float(price), tick), (price, tick)


def test_a_rules_only_synthetic_backtest_of_three_symbols_verifies_clean(tmp_path, rules_only_config, capsys):
    """The README's `backtest --synthetic --symbols AAA BBB CCC` with the rules alone: its own
    recheck agrees (one take-profit near half a tick made it exit 1)."""
    from scalper import cli

    out = tmp_path / "syn"
    args = ["--config", rules_only_config, "backtest", "--synthetic", "--symbols", "AAA", "BBB", "CCC"]
    assert cli.main([*args, "--out", str(out)]) == 0, capsys.readouterr().out[-2000:]
    assert json.loads((out / "verify.json").read_text())["ok"] is True
