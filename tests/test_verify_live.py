"""`scalper verify` on a live run: fills stamped with the exchange's times, inside a minute.

The run is made by LiveExecutionService against the local Binance exchange (127.0.0.1) on a
clock the test moves (tests/exchange), then written as `scalper run` writes a run directory.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
from exchange.live import MIN, T0, bar, decision, live_cfg

from scalper import backtest as bt
from scalper.execution.live import LiveExecutionService
from scalper.ledger import Ledger
from scalper.risk import RiskManager
from scalper.run_dir import write_bars
from scalper.verify import verify_run

T = T0 * 10**9  # the first minute (ns)
FILL_CHECKS = ("fill_bar", "fill_range", "fill_time", "fill_price", "fee", "order")
BOOK_CHECKS = ("position", "cash", "trade", "equity", "summary", "trades_csv", "orders_file")


def live_run_dir(market, clock, tmp_path: Path) -> Path:
    """Entry decided at minute T's close fills 5 s into minute T+1 on the exchange; its bracket
    rests there as one OCO; a trade at 111 fills the target 5 s into minute T+2."""
    cfg = live_cfg(market, tmp_path, "exchange")
    svc = LiveExecutionService(cfg)
    bars = [bar(clock.after(T))]
    svc.on_minute(bars[-1:])
    assert svc.submit([decision("sc-v1", T)])[0].approved
    bars.append(bar(clock.after(T + MIN)))
    svc.on_minute(bars[-1:])
    market.add_trade("BTCUSDT", 111.0, 1.0)  # the exchange fills the resting target
    bars.append(bar(clock.after(T + 2 * MIN), high=111.0))
    svc.on_minute(bars[-1:])
    assert [t.exit_reason for t in svc.trades] == ["take_profit"]
    out = tmp_path / "run"
    result = svc.result()
    config_json = msgspec.json.format(msgspec.json.encode(cfg), indent=2)
    bt.write_run(result, str(out), config_json)
    bt.write_ledger(svc, result, str(out / "ledger.sqlite"), config_json.decode(), RiskManager(cfg).state)
    frame = pd.DataFrame(
        {
            "timestamp": np.array([b.ts for b in bars], dtype=np.int64),
            **{c: [getattr(b, c) for b in bars] for c in ("open", "high", "low", "close", "volume", "vwap")},
            "trades": [b.trades for b in bars],
        }
    )
    write_bars(out, {"BTCUSDT": frame}, cfg)
    return out


def test_verify_finds_each_live_fills_bar_by_the_minute_that_holds_its_time(market, clock, tmp_path, keys):
    run = live_run_dir(market, clock, tmp_path)
    fills = pd.read_parquet(run / "trades.parquet")
    # the exchange's times: inside the minutes, not on a bar's open
    assert (fills["entry_ts"] % MIN != 0).all() and (fills["exit_ts"] % MIN != 0).all()
    report = verify_run(run)
    assert report.fills == 2 and report.trades == 1
    wrong = [m for m in report.mismatches if m.check in FILL_CHECKS + BOOK_CHECKS]
    assert wrong == []
    assert report.checked["fill"] == 2 and report.checked["trade"] == 1
    assert any("live fills" in n for n in report.notes)


def test_the_ledger_books_a_live_fills_cash_at_the_close_of_the_minute_holding_it(
    market, clock, tmp_path, keys
):
    """The entry fills 5 s into minute T+1, the exit 5 s into T+2: the ledger's cash after each
    belongs to those minutes' closes (T+2 and T+3 minutes), not a minute later."""
    run = live_run_dir(market, clock, tmp_path)
    ledger = Ledger(str(run / "ledger.sqlite"))
    try:
        curve = ledger.equity_curve()
        start = float(ledger.get_meta("starting_cash"))
    finally:
        ledger.close()
    assert [ts for ts, _c, _e in curve] == [T + 2 * MIN, T + 3 * MIN]
    (_, cash_in, _), (_, cash_out, equity_out) = curve
    assert cash_in < start  # the long entry is paid by the close of T+1
    assert cash_out == equity_out > start  # flat after the take-profit at the close of T+2
    assert [m for m in verify_run(run).mismatches if m.check == "cash"] == []


def test_a_live_fill_outside_its_minutes_range_or_in_a_minute_without_a_bar_is_reported(
    market, clock, tmp_path, keys
):
    import sqlite3

    run = live_run_dir(market, clock, tmp_path)
    with sqlite3.connect(run / "ledger.sqlite") as conn:
        (entry,) = conn.execute("SELECT fill_id FROM fills WHERE client_order_id = 'sc-v1'").fetchone()
        (exit_,) = conn.execute("SELECT fill_id FROM fills WHERE client_order_id = 'sc-v1-tp'").fetchone()
        # the target's fill moved into minute T+1, whose bar tops out at 101: outside its range
        conn.execute("UPDATE fills SET ts = ? WHERE fill_id = ?", (T + MIN + 30 * 10**9, exit_))
        # the entry's fill moved to a minute the run has no bar of
        conn.execute("UPDATE fills SET ts = ? WHERE fill_id = ?", (T + 5 * MIN + 10**9, entry))
    report = verify_run(run)
    assert [m.subject for m in report.mismatches if m.check == "fill_bar"] == [entry]
    assert [m.subject for m in report.mismatches if m.check == "fill_range"] == [exit_]
