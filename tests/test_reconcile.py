"""Start-up reconciliation of the ledger with the (local) exchange after a restart."""

from __future__ import annotations

import msgspec
import pytest
from exchange import API_KEY, SECRET, LocalExchange

from scalper.config import Config, with_overrides
from scalper.execution.ccxt import CcxtBroker
from scalper.ledger import Ledger
from scalper.reconcile import ReconcileError, reconcile
from scalper.types import Order, OrderRole, OrderStatus, OrderType, Side

ENV = {"SCALPER_BINANCE_API_KEY": API_KEY, "SCALPER_BINANCE_SECRET": SECRET}
NOW = 1_700_000_000 * 10**9


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as led:
        led.set_meta("starting_cash", 10_000.0)
        yield led


def make_broker(ex: LocalExchange, policy: str = "refuse") -> CcxtBroker:
    cfg = with_overrides(
        Config(),
        {
            "symbols": ["BTCUSDT"],
            "feed.ccxt.urls": ex.ccxt_urls(),
            "feed.ccxt.unknown_orders": policy,
            "feed.ccxt.backoff_initial_s": 0.01,
        },
    )
    broker = CcxtBroker(cfg, env=ENV)
    broker.connect()
    return broker


def limit_buy(cid: str, qty: float, price: float, status=OrderStatus.ACCEPTED, role=OrderRole.ENTRY) -> Order:
    return Order(
        client_order_id=cid,
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=qty,
        limit_price=price,
        role=role,
        status=status,
        created_ts=NOW - 60 * 10**9,
        updated_ts=NOW - 60 * 10**9,
    )


def placed_before_the_crash(ex, ledger, cid: str, qty: float, price: float) -> Order:
    """Session 1: the order is recorded, sent, accepted; then the service dies."""
    broker = make_broker(ex)
    order = limit_buy(cid, qty, price)
    ledger.record_order(order)
    assert broker.submit(order).status == OrderStatus.ACCEPTED
    broker.close()
    return order


def test_clean_start_has_nothing_to_do(ex, ledger):
    broker = make_broker(ex)
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert report.ok and report.findings == []
    assert report.positions == {"BTCUSDT": (0.0, 0.0)}
    assert report.balances == {"USDT": 10_000.0}


def test_fills_missed_while_down_are_recorded_and_positions_agree(ex, ledger):
    placed_before_the_crash(ex, ledger, "sc-r1", 0.4, 95.0)
    ex.fill("sc-r1", 0.1, 95.0)  # while the service was down
    broker = make_broker(ex)
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert [f.kind for f in report.findings] == ["missed_fill"]
    stored = ledger.order("sc-r1")
    assert stored.status == OrderStatus.PARTIALLY_FILLED
    assert stored.filled_qty == pytest.approx(0.1)
    assert ledger.rebuild_positions()["BTCUSDT"].quantity == pytest.approx(0.1)
    ours, theirs = report.positions["BTCUSDT"]
    assert ours == pytest.approx(0.1) and theirs == pytest.approx(0.0999)  # the fee was paid in BTC
    # a second start finds nothing new: the fill is not applied twice
    again = reconcile(ledger, broker, broker.cfg, now_ts=NOW + 1)
    assert again.findings == [] and len(ledger.fills()) == 1


def test_an_order_canceled_on_the_exchange_is_closed_in_the_ledger(ex, ledger):
    placed_before_the_crash(ex, ledger, "sc-r2", 0.1, 90.0)
    make_broker(ex).cancel("sc-r2", "BTCUSDT")  # e.g. by hand on the web site
    broker = make_broker(ex)
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert [f.kind for f in report.findings] == ["closed_on_exchange"]
    assert ledger.order("sc-r2").status == OrderStatus.CANCELED


def test_an_order_recorded_but_never_sent_is_rejected(ex, ledger):
    ledger.record_order(limit_buy("sc-r3", 0.1, 90.0, status=OrderStatus.NEW))
    broker = make_broker(ex)
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert [f.kind for f in report.findings] == ["never_sent"]
    assert ledger.order("sc-r3").status == OrderStatus.REJECTED
    assert ledger.order("sc-r3").reason == "never_sent"


def test_service_managed_bracket_legs_are_not_expected_on_the_exchange(ex, ledger):
    leg = limit_buy("sc-r4-tp", 0.1, 120.0, role=OrderRole.TAKE_PROFIT)
    ledger.record_order(leg)
    broker = make_broker(ex)
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert report.findings == []
    assert ledger.order("sc-r4-tp").status == OrderStatus.ACCEPTED


def test_unknown_open_order_is_adopted_per_config(ex, ledger):
    ex.place_foreign_order("BTCUSDT", "BUY", 0.2, 80.0, "manual-1")
    broker = make_broker(ex, "adopt")
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert report.adopted == ["manual-1"]
    adopted = ledger.order("manual-1")
    assert adopted.status == OrderStatus.ACCEPTED and adopted.strategy == "adopted"
    assert [o.client_order_id for o in ledger.open_orders()] == ["manual-1"]
    assert ex.order_by_client_id("manual-1").status == "NEW"  # still working on the exchange


def test_unknown_open_order_is_canceled_per_config(ex, ledger):
    ex.place_foreign_order("BTCUSDT", "BUY", 0.2, 80.0, "manual-2")
    broker = make_broker(ex, "cancel")
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert report.canceled == ["manual-2"]
    assert ex.order_by_client_id("manual-2").status == "CANCELED"
    assert ledger.orders() == []


def test_unknown_open_order_refuses_the_start_by_default_and_changes_nothing(ex, ledger):
    ex.place_foreign_order("BTCUSDT", "BUY", 0.2, 80.0, "manual-3")
    broker = make_broker(ex)
    with pytest.raises(ReconcileError, match="unknown_order BTCUSDT manual-3") as err:
        reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert not err.value.report.ok
    assert ex.order_by_client_id("manual-3").status == "NEW"
    assert ledger.orders() == []


def test_a_position_the_ledger_does_not_know_refuses_the_start(ex, ledger):
    ex.free["BTC"] = ex.free.get("BTC", 0) + type(ex.free["USDT"])("0.5")  # coins bought elsewhere
    placed_before_the_crash(ex, ledger, "sc-r5", 0.1, 90.0)
    ex.fill("sc-r5", 0.05, 90.0)  # a missed fill that WOULD be applied...
    broker = make_broker(ex)
    with pytest.raises(ReconcileError, match=r"position BTCUSDT: ledger 0.05 vs exchange 0.54995") as err:
        reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert err.value.report.positions["BTCUSDT"][1] == pytest.approx(0.54995)
    # ...but nothing is written when the start is refused
    assert ledger.fills() == [] and ledger.order("sc-r5").status == OrderStatus.ACCEPTED


def test_dry_run_reports_without_writing(ex, ledger):
    placed_before_the_crash(ex, ledger, "sc-r6", 0.4, 95.0)
    ex.fill("sc-r6", 0.4, 95.0)
    broker = make_broker(ex)
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW, apply=False)
    assert not report.applied and [f.kind for f in report.findings] == ["missed_fill"]
    assert ledger.fills() == [] and ledger.order("sc-r6").status == OrderStatus.ACCEPTED


def test_an_order_closed_in_the_ledger_but_open_on_the_exchange_is_canceled_there(ex, ledger):
    placed_before_the_crash(ex, ledger, "sc-r7", 0.1, 90.0)
    # the run ended and closed it here, but its cancel never reached the exchange
    ledger.record_transition(NOW - 1, "sc-r7", OrderStatus.ACCEPTED, OrderStatus.CANCELED, "shutdown")
    broker = make_broker(ex)
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert [(f.kind, f.action) for f in report.findings] == [("open_on_exchange", "cancel")]
    assert ex.order_by_client_id("sc-r7").status == "CANCELED"


def test_an_exit_filled_on_the_exchange_short_by_the_fee_dust_closes_the_whole_leg(ex, ledger):
    """A spot sell is capped at the coins held (the entry's fee was paid in them): filled, it
    closes the leg as the trading service counts it, so the position agrees (flat)."""
    entry = limit_buy("sc-r8", 0.5, 100.0)
    ledger.record_order(entry)
    broker = make_broker(ex)
    broker.submit(entry)
    # marketable at the last price (100): filled at once; 0.4995 BTC held after the fee
    report = broker.order_status("sc-r8", "BTCUSDT")
    for fill in broker.new_fills(entry, report):
        ledger.record_fill(fill)
    ledger.record_transition(NOW - 2, "sc-r8", OrderStatus.ACCEPTED, OrderStatus.FILLED)
    leg = Order(
        client_order_id="sc-r8-tp",
        symbol="BTCUSDT",
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        quantity=0.5,
        limit_price=100.0,
        role=OrderRole.TAKE_PROFIT,
        status=OrderStatus.ACCEPTED,
        parent_id="sc-r8",
    )
    ledger.record_order(leg)
    broker.submit(msgspec.structs.replace(leg, quantity=0.4995))  # the sell as sent: capped
    report = reconcile(ledger, broker, broker.cfg, now_ts=NOW)
    assert [f.kind for f in report.findings] == ["missed_fill"]
    assert ledger.order("sc-r8-tp").status == OrderStatus.FILLED
    assert report.positions["BTCUSDT"] == (pytest.approx(0.0), pytest.approx(0.0))
