"""`scalper run --resume RUN_ID`: a live run that continues an earlier run's books.

Run 1 is a LiveExecutionService driven minute by minute against the local exchange, ended as
the runtime ends a run (`orders.cancel_all(..., "shutdown")`, then the run directory with
`write_trading`). Run 2 is what `scalper run --mode live --resume run1` does before its actors
start: `reconcile_at_start` on a copy of run 1's ledger, then a service built from it
(`feed.ccxt.resume_ledger`). The exchange's clock is the test's (`Clock`).
"""

from __future__ import annotations

import msgspec
import pytest
from exchange.live import MIN, T0, bar, decision, live_cfg, posted

from actors.live import START_LEDGER, reconcile_at_start
from scalper.execution.live import LiveExecutionService
from scalper.ledger import Ledger
from scalper.pipeline import write_trading
from scalper.reconcile import ReconcileError
from scalper.risk import RiskState
from scalper.types import OrderStatus, OrderType

T = T0 * 10**9


def run1(market, clock, tmp_path, brackets: str, shutdown: bool = True) -> LiveExecutionService:
    """Buys 0.5 at 100 (stop 95, target 110), trades one more minute, ends, writes runs/run1."""
    cfg = live_cfg(market, tmp_path, brackets)
    svc = LiveExecutionService(cfg)
    svc.on_minute([bar(clock.after(T))])
    svc.submit([decision("sc-x1", T)])
    svc.on_minute([bar(clock.after(T + MIN))])
    if shutdown:
        svc.orders.cancel_all(T + 2 * MIN, "shutdown")
    run_dir = tmp_path / "runs" / "run1"
    run_dir.mkdir(parents=True)
    write_trading(svc, RiskState.initial(cfg.risk.starting_equity), run_dir, cfg, 1.0)
    return svc


def resumed(market, tmp_path, brackets: str) -> tuple[str, LiveExecutionService]:
    text, cfg = reconcile_at_start(live_cfg(market, tmp_path, brackets), "run1", "run2")
    assert cfg.feed.ccxt.resume_ledger == str((tmp_path / "runs" / "run2" / "state" / START_LEDGER).resolve())
    return text, LiveExecutionService(cfg)


@pytest.mark.parametrize("brackets", ["service", "exchange"])
def test_a_resumed_run_takes_over_the_open_position_and_its_stop_closes_it_without_resending(
    market, clock, tmp_path, keys, brackets
):
    run1(market, clock, tmp_path, brackets)
    before = posted(market)
    text, svc = resumed(market, tmp_path, brackets)
    assert "resuming run run1" in text and "reconciliation: OK" in text
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.5)  # the books continue
    assert [o.status for o in svc.orders.legs("sc-x1")] == [OrderStatus.ACCEPTED] * 2
    if brackets == "exchange":  # the OCO left resting by run 1 is followed, not placed again
        assert set(svc.working) == {"sc-x1-sl", "sc-x1-tp"}
        market.add_trade("BTCUSDT", 94.0, 1.0)
    svc.on_minute([bar(clock.after(T + 3 * MIN), low=94.0)])
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)
    [trade] = svc.trades  # run 1's entry, run 2's exit: one round trip
    assert (trade.entry_order_id, trade.exit_reason, trade.entry_price) == ("sc-x1", "stop_loss", 100.0)
    sent = posted(market)
    assert max(sent.values()) == 1  # no client id went out twice over the two runs
    assert {c: n for c, n in sent.items() if c not in before} == (
        {"sc-x1-sl": 1} if brackets == "service" else {}
    )

    # run 2's ledger carries the whole history: a third run would start flat
    run_dir = tmp_path / "runs" / "run2"
    write_trading(svc, RiskState.initial(svc.cfg.risk.starting_equity), run_dir, svc.cfg, 1.0)
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        assert ledger.rebuild_positions()["BTCUSDT"].quantity == pytest.approx(0.0)
        assert ledger.order("sc-x1").status == OrderStatus.FILLED


def test_a_target_filled_on_the_exchange_while_nobody_ran_is_recorded_at_resume(
    market, clock, tmp_path, keys
):
    run1(market, clock, tmp_path, "exchange")
    market.add_trade("BTCUSDT", 111.0, 1.0)  # between the runs: the resting OCO's target fills
    text, svc = resumed(market, tmp_path, "exchange")
    assert (
        "[apply] missed_fill BTCUSDT sc-x1-tp" in text
        and "[apply] closed_on_exchange BTCUSDT sc-x1-sl" in text
    )
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)  # the fee's dust closed too
    assert [t.exit_reason for t in svc.trades] == ["take_profit"]
    assert svc.working == {} and svc.orders.open_orders() == []
    svc.on_minute([bar(clock.after(T + 3 * MIN))])
    assert max(posted(market).values()) == 1 and len(market.order_lists) == 1


def test_an_entry_still_working_from_the_earlier_run_is_canceled_at_resume(market, clock, tmp_path, keys):
    cfg = live_cfg(market, tmp_path, "service")
    svc = LiveExecutionService(cfg)
    svc.on_minute([bar(clock.after(T))])
    svc.submit([decision("sc-l1", T, qty=1.0, otype=OrderType.LIMIT, limit_price=97.0)])
    run_dir = tmp_path / "runs" / "run1"
    run_dir.mkdir(parents=True)
    write_trading(svc, RiskState.initial(cfg.risk.starting_equity), run_dir, cfg, 1.0)  # no shutdown
    assert market.order_by_client_id("sc-l1").status == "NEW"
    _, svc2 = resumed(market, tmp_path, "service")
    assert market.order_by_client_id("sc-l1").status == "CANCELED"  # its signal is stale
    assert svc2.orders.get("sc-l1").reason == "stale_at_resume"
    assert svc2.orders.open_orders() == [] and svc2.working == {}


def test_resume_refuses_when_the_exchange_holds_more_than_the_ledger(market, clock, tmp_path, keys):
    run1(market, clock, tmp_path, "service")
    market.free["BTC"] += type(market.free["BTC"])("0.3")  # coins bought by hand between the runs
    with pytest.raises(ReconcileError, match=r"position BTCUSDT: ledger 0\.5 vs exchange 0\.7995"):
        reconcile_at_start(live_cfg(market, tmp_path, "service"), "run1", "run2")
    assert not (tmp_path / "runs" / "run2").exists()


def run_cli(cfg, tmp_path, *flags: str) -> int:
    from scalper.cli import main

    path = tmp_path / "config.json"
    path.write_bytes(msgspec.json.encode(cfg))
    return main(["run", "--mode", "live", "--config", str(path), "-q", "--sandbox", *flags])


def test_resume_of_a_run_without_a_ledger_is_refused_naming_the_file(market, tmp_path, keys, capsys):
    assert run_cli(live_cfg(market, tmp_path), tmp_path, "--resume", "nope") == 4
    assert "runs/nope/ledger.sqlite does not exist" in capsys.readouterr().err
    assert market.requests_to("POST", "/api/v3/order") == []


def test_resume_into_the_same_run_id_or_as_a_dry_run_is_refused(market, tmp_path, keys, capsys):
    cfg = live_cfg(market, tmp_path)
    assert run_cli(cfg, tmp_path, "--resume", "run1", "--run-id", "run1") == 3
    assert run_cli(cfg, tmp_path, "--resume", "run1", "--dry-run") == 3
    assert market.requests == []
