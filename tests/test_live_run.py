"""Live trading end to end against the local Binance exchange on 127.0.0.1.

LiveExecutionService (the trading service's domain object on a real broker) is driven minute
by minute as the TradingService actor drives it; `scalper run --mode live` is run through the
CLI: refused by the guards and by reconciliation, and a dry run on Ray over the exchange's feed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import msgspec
import pytest
from exchange import LocalExchange
from exchange.live import ENV, MIN, bar, decision, live_cfg

from scalper.config import Config, with_overrides
from scalper.execution.live import BROKER_UNAVAILABLE, LiveExecutionService, make_execution
from scalper.trading import ExecutionService
from scalper.types import OrderStatus, OrderType


def this_minute() -> int:
    """The minute that has just closed, in event time (the exchange's clock is the wall
    clock): decisions at its close fill in the current minute, as they do live. Waits out
    the end of a minute so a test does not straddle two."""
    if time.time_ns() % MIN > 50 * 10**9:
        time.sleep(11 - (time.time_ns() % MIN) / 1e9 + 50)
    now = time.time_ns()
    return now - now % MIN - MIN


def exchange_orders(ex: LocalExchange) -> list[str]:
    return sorted(o.client_order_id for o in ex.orders.values())


def test_make_execution_is_paper_unless_the_broker_is_ccxt_and_not_a_dry_run(ex, tmp_path, keys):
    assert type(make_execution(live_cfg(ex, tmp_path, **{"execution.broker": "paper"}))) is ExecutionService
    assert type(make_execution(live_cfg(ex, tmp_path, **{"feed.ccxt.dry_run": True}))) is ExecutionService
    assert type(make_execution(live_cfg(ex, tmp_path))) is LiveExecutionService


def test_market_entry_fills_on_the_exchange_and_the_stop_exits_with_a_market_order(ex, tmp_path, keys):
    svc = LiveExecutionService(live_cfg(ex, tmp_path))
    t = this_minute()
    svc.on_minute([bar(t)])
    recs = svc.submit([decision("sc-e1", t)])
    assert recs[0].approved
    entry = svc.orders.get("sc-e1")
    assert entry.status == OrderStatus.FILLED and entry.filled_qty == pytest.approx(0.5)
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.5)
    legs = {o.client_order_id: o for o in svc.orders.legs("sc-e1")}
    assert set(legs) == {"sc-e1-sl", "sc-e1-tp"}
    assert exchange_orders(ex) == ["sc-e1"]  # the legs are the service's, not resting on the exchange

    svc.on_minute([bar(t + MIN)])  # the fill's minute: the legs are not active yet
    assert exchange_orders(ex) == ["sc-e1"]
    svc.on_minute([bar(t + 2 * MIN, low=94.0)])  # the stop (95) is reached
    assert exchange_orders(ex) == ["sc-e1", "sc-e1-sl"]
    sent = ex.order_by_client_id("sc-e1-sl")
    # all the coins held: the entry's 0.1% fee was paid in BTC
    assert (sent.side, sent.type, float(sent.orig_qty)) == ("SELL", "MARKET", 0.4995)
    assert legs["sc-e1-sl"].status == OrderStatus.FILLED
    assert legs["sc-e1-tp"].status == OrderStatus.CANCELED  # OCO
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)
    assert [t.exit_reason for t in svc.trades] == ["stop_loss"]


def test_a_replayed_journal_re_attaches_to_the_exchange_orders_and_sends_none_again(ex, tmp_path, keys):
    cfg = live_cfg(ex, tmp_path)
    t = this_minute()
    calls = [
        ("minute", [bar(t)]),
        ("submit", [decision("sc-r1", t)]),
        ("minute", [bar(t + MIN)]),
        ("minute", [bar(t + 2 * MIN, high=111.0)]),  # the target is reached
    ]
    first = LiveExecutionService(cfg)
    for kind, payload in calls:
        first.on_minute(payload) if kind == "minute" else first.submit(payload)
    posts = len(ex.requests_to("POST", "/api/v3/order"))
    assert exchange_orders(ex) == ["sc-r1", "sc-r1-tp"]

    replayed = LiveExecutionService(cfg)  # the TradingService after a crash
    for kind, payload in calls:
        replayed.on_minute(payload) if kind == "minute" else replayed.submit(payload)
    assert len(ex.requests_to("POST", "/api/v3/order")) == posts  # nothing sent again
    assert exchange_orders(ex) == ["sc-r1", "sc-r1-tp"]
    assert [(o.client_order_id, o.status, o.filled_qty) for o in replayed.orders.orders] == [
        (o.client_order_id, o.status, o.filled_qty) for o in first.orders.orders
    ]
    assert replayed.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)


def test_limit_entry_partial_fills_are_followed_and_the_rest_is_canceled_on_the_exchange_at_expiry(
    ex, tmp_path, keys
):
    svc = LiveExecutionService(live_cfg(ex, tmp_path))
    t = this_minute()
    svc.on_minute([bar(t)])
    svc.submit([decision("sc-l1", t, qty=1.0, otype=OrderType.LIMIT, limit_price=98.0, expiry_bars=2)])
    assert ex.order_by_client_id("sc-l1").status == "NEW"  # resting (the last trade is at 100)
    ex.fill("sc-l1", 0.4, 98.0)
    svc.on_minute([bar(t + MIN, low=97.0)])
    entry = svc.orders.get("sc-l1")
    assert entry.status == OrderStatus.PARTIALLY_FILLED and entry.filled_qty == pytest.approx(0.4)
    assert svc.orders.legs("sc-l1")[0].quantity == pytest.approx(0.4)
    svc.on_minute([bar(t + 2 * MIN)])  # expires at this close: canceled on the exchange first
    assert ex.order_by_client_id("sc-l1").status == "CANCELED"
    assert entry.status == OrderStatus.EXPIRED
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.4)


def test_exchange_rejection_is_recorded_and_nothing_opens(ex, tmp_path, keys):
    svc = LiveExecutionService(live_cfg(ex, tmp_path))
    t = this_minute()
    svc.on_minute([bar(t)])
    recs = svc.submit([decision("sc-big", t, qty=500.0)])  # 50,000 USDT > 10,000
    assert not recs[0].approved and "insufficient balance" in recs[0].reason
    assert svc.orders.get("sc-big").status == OrderStatus.CANCELED
    assert svc.orders.open_orders() == [] and exchange_orders(ex) == []


def test_broker_unavailable_refuses_new_entries_until_the_unknown_order_is_found(ex, tmp_path, keys):
    svc = LiveExecutionService(live_cfg(ex, tmp_path))
    t = this_minute()
    svc.on_minute([bar(t)])
    ex.fault("POST", "/api/v3/order", status=500, times=1)
    ex.fault("GET", "/api/v3/order", status=500, times=10)  # the lookups fail too
    svc.submit([decision("sc-u1", t)])
    assert svc.unavailable is not None and "sc-u1" in svc.unknown
    recs = svc.submit([decision("sc-u2", t)])
    assert not recs[0].approved and recs[0].reason == BROKER_UNAVAILABLE
    assert ex.order_by_client_id("sc-u2") is None

    ex.faults.clear()
    svc.on_minute([bar(t + MIN)])  # the exchange answers: sc-u1 never arrived
    assert svc.unavailable is None
    assert svc.orders.get("sc-u1").status == OrderStatus.CANCELED
    assert svc.orders.get("sc-u1").reason == "never_sent"
    assert svc.submit([decision("sc-u3", t + MIN)])[0].approved
    assert exchange_orders(ex) == ["sc-u3"]


def test_cancel_all_at_the_end_cancels_working_orders_on_the_exchange(ex, tmp_path, keys):
    svc = LiveExecutionService(live_cfg(ex, tmp_path))
    t = this_minute()
    svc.on_minute([bar(t)])
    svc.submit([decision("sc-c1", t, qty=1.0, otype=OrderType.LIMIT, limit_price=97.0)])
    assert ex.order_by_client_id("sc-c1").status == "NEW"
    assert [o.client_order_id for o in svc.orders.cancel_all(t + MIN, "shutdown")] == ["sc-c1"]
    assert ex.order_by_client_id("sc-c1").status == "CANCELED"


# ------------------------------------------------------------------------------ the command


def run_cli(cfg: Config, tmp_path: Path, *flags: str) -> int:
    from scalper.cli import main

    path = tmp_path / "config.json"
    path.write_bytes(msgspec.json.encode(cfg))
    return main(["run", "--mode", "live", "--config", str(path), "-q", *flags])


def test_real_money_without_the_confirmation_is_refused_before_anything_is_sent(
    ex, tmp_path, keys, monkeypatch, capsys
):
    monkeypatch.delenv("SCALPER_LIVE_CONFIRM", raising=False)
    assert run_cli(live_cfg(ex, tmp_path), tmp_path) == 4
    out = capsys.readouterr()
    assert "REAL MONEY" in out.out and "was not confirmed" in out.err
    assert ex.requests == []  # not even the markets were loaded


def test_sandbox_run_refuses_with_the_report_when_the_exchange_holds_an_unknown_position(
    tmp_path, keys, capsys
):
    with LocalExchange(balances={"USDT": 10_000.0, "BTC": 0.5}) as ex:
        ex.add_trade("BTCUSDT", 100.0, 1.0)
        assert run_cli(live_cfg(ex, tmp_path), tmp_path, "--sandbox") == 4
        assert ex.requests_to("POST", "/api/v3/order") == []
    err = capsys.readouterr().err
    assert "reconciliation: REFUSED" in err and "position BTCUSDT: ledger 0 vs exchange 0.5" in err
    assert not (tmp_path / "runs").exists()  # refused before the run started


def test_missing_keys_refuse_the_run_naming_the_variable(ex, tmp_path, monkeypatch, capsys):
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    assert run_cli(live_cfg(ex, tmp_path), tmp_path, "--sandbox") == 4
    assert "SCALPER_BINANCE_API_KEY" in capsys.readouterr().err


@pytest.mark.ray
def test_dry_run_trades_the_exchange_feed_on_ray_until_ctrl_c_and_writes_the_run(ray_cluster, tmp_path):
    with LocalExchange(balances={"USDT": 10_000.0}) as ex:
        ex.add_trade("BTCUSDT", 100.0, 1.0)
        stop = threading.Event()

        def trade() -> None:  # a trade every 0.2 s until the run is stopped
            price = 100.0
            while not stop.is_set():
                price += 0.01
                ex.add_trade("BTCUSDT", round(price, 2), 0.1)
                time.sleep(0.2)

        def ctrl_c() -> None:  # once a minute has closed, or 20 s after the start, as a user would
            while not (tmp_path / "runs" / "dry" / "state").exists():
                time.sleep(0.2)
            deadline = time.time() + 20
            while time.time() < deadline and not list((tmp_path / "runs").glob("*/bars/symbol=BTCUSDT")):
                time.sleep(0.5)
            stop.set()
            os.kill(os.getpid(), signal.SIGINT)

        threads = [threading.Thread(target=trade, daemon=True), threading.Thread(target=ctrl_c, daemon=True)]
        for th in threads:
            th.start()
        cfg = live_cfg(ex, tmp_path, **{"feed.ccxt.batch_ms": 200, "feed.ccxt.watermark_lag_ms": 100})
        code = run_cli(cfg, tmp_path, "--dry-run", "--run-id", "dry")
        stop.set()
        assert ex.requests_to("POST", "/api/v3/order") == []  # a dry run sends nothing
    assert code == 0
    run_dir = tmp_path / "runs" / "dry"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["runtime"]["interrupted"] is True
    assert json.loads((run_dir / "config.json").read_text())["execution"]["broker"] == "paper"
    assert summary["mode"] == "dry-run"
    assert (run_dir / "ledger.sqlite").exists() and (run_dir / "report.html").exists()


def test_a_run_bounded_by_duration_stops_the_feed_once(monkeypatch):
    """`--duration`: the driver's progress callback stops the feed actor (as Ctrl-C does) once
    the wall time is reached, and says why. (`--minutes` is the feed's own limit:
    test_runtime_ray's test_a_minute_limit_trades_exactly_that_many_minutes_every_time.)"""
    import actors.paper as paper

    stops: list[str] = []

    class Feed:
        class stop:  # stands in for the actor method
            @staticmethod
            def remote() -> None:
                stops.append("stop")

    monkeypatch.setattr(paper.ray, "get_actor", lambda name, namespace: Feed)
    by_time = paper._StopAfter(0.05)
    watch = by_time.watching(None)
    watch({"minutes": 0})
    assert stops == [] and by_time.reason is None
    time.sleep(0.06)
    watch({"minutes": 0})
    watch({"minutes": 1})
    assert stops == ["stop"] and by_time.reason == "duration"
    assert paper._StopAfter(None).watching(None) is None  # unbounded: no callback at all


def test_a_fast_simulation_clock_is_refused_on_a_real_exchange(ex, tmp_path):
    from scalper.config import ConfigError

    with pytest.raises(ConfigError, match="clock_speed: expected 1 on a real exchange"):
        with_overrides(Config(), {"feed.ccxt.clock_speed": 60.0})
    cfg = live_cfg(ex, tmp_path, **{"feed.ccxt.clock_speed": 60.0})  # a local exchange: allowed
    assert cfg.feed.ccxt.clock_speed == 60.0
